"""The small tuning budget of `lifelong advise --verify`: each shortlisted method with a
strength to choose gets a few Optuna trials on validation splits of the training data
only (the protocol of `lifelong tune`; test sets stay withheld), and is verified with the
best setting. Memory sizes are never tuned: they stay at what the constraints allow."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Any

from lifelong.advise.constraints import Constraints
from lifelong.advise.rules import Entry

#: the one hyper-parameter searched per method (`lifelong tune --param` syntax)
SPACES = {
    "ewc": "lambda=log:1:10000",
    "online-ewc": "lambda=log:1:10000",
    "si": "lambda=log:0.01:100",
    "mas": "lambda=log:0.01:100",
    "lwf": "alpha=log:0.1:10",
    "der": "alpha=0.05:1",
    "derpp": "alpha=0.05:1",
}


def tunable(spec: str) -> str | None:
    """The search space of a single-method spec, or None (hybrids, nothing to choose)."""
    return None if "+" in spec else SPACES.get(spec.partition("(")[0].strip())


def tune_entries(
    entries: list[Entry],
    c: Constraints,
    source: dict[str, Any],
    out: str,
    trials: int,
    epochs: int,
    model: str,
) -> tuple[list[Entry], list[str]]:
    """The entries with their tuned specs, and one line per tuned method."""
    if trials < 1:
        return entries, []
    if importlib.util.find_spec("optuna") is None:
        return entries, ["no tuning: optuna is not installed (pip install 'lifelong[tune]')"]
    from lifelong.config import TrainConfig
    from lifelong.experiment.run import RunConfig
    from lifelong.experiment.tune import TuneConfig, parse_param, tune

    tuned, lines = [], []
    for e in entries:
        space = tunable(e.spec)
        if space is None:
            tuned.append(e)
            continue
        run = RunConfig(strategy=e.spec, scenario=c.scenario, model=c.backbone or model,
                        train=TrainConfig(epochs=epochs), threads=1, **source)  # fmt: skip
        folder = Path(out) / f"tune-{e.spec.partition('(')[0]}"
        cfg = TuneConfig(run=run, params=(parse_param(space),), trials=trials, out=str(folder),
                         pruner_startup_trials=trials)  # fmt: skip
        best = tune(cfg)
        lines.append(
            f"tuned {e.spec}: {best['spec']} (validation accuracy "
            f"{best['validation_accuracy']:.3f}, {trials} trials, {space})"
        )
        tuned.append(replace(e, spec=best["spec"]))
    return tuned, lines
