"""lifelong: continual learning for PyTorch models.

    import lifelong
    learner = lifelong.Learner("mlp", "replay(mem_size=200)")
    learner.learn(x_day1, y_day1)          # tensors or arrays; new classes are welcome
    learner.predict(x_new)
    learner.save("models/today")           # lifelong.Learner.load(...) continues exactly

    row = lifelong.run(lifelong.RunConfig(strategy="cumulative"))   # a run of a benchmark

Heavy parts are imported on first use, so `import lifelong` stays cheap.
"""

from __future__ import annotations

from typing import Any

from lifelong._version import __version__

_LAZY = {
    "Experience": "lifelong.data",
    "Stream": "lifelong.data",
    "TensorSet": "lifelong.data",
    "get_benchmark": "lifelong.data",
    "Strategy": "lifelong.strategies",
    "Batch": "lifelong.strategies",
    "build_strategies": "lifelong.strategies",
    "register": "lifelong.strategies",
    "RunConfig": "lifelong.experiment.run",
    "run": "lifelong.experiment.run",
    "TrainConfig": "lifelong.config",
    "Learner": "lifelong.learner",
    "Result": "lifelong.learner",
    "train_experience": "lifelong.train",
    "build_model": "lifelong.models",
    "load": "lifelong.predictor",
    "Predictor": "lifelong.predictor",
    "run_learner": "lifelong.experiment.run",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lifelong' has no attribute {name!r}")
