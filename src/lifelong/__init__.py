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


def _subpackages() -> list[str]:
    """The subpackages (`lifelong.deploy`, ...), found without importing them."""
    import pkgutil

    return [m.name for m in pkgutil.iter_modules(__path__) if m.ispkg]


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if not name.startswith("_") and name in _subpackages():
        return importlib.import_module(f"lifelong.{name}")  # `lifelong.deploy` on first use
    raise AttributeError(f"module 'lifelong' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API (loaded lazily) and the subpackages, for `dir(lifelong)` and tab
    completion; nothing is imported to list them."""
    return sorted({*__all__, *_subpackages()})
