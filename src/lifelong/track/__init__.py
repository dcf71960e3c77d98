"""Experiment trackers: log each run of `results.json` to MLflow, TensorBoard, Neptune or
Weights & Biases.

    from lifelong.track import get_tracker, log_results
    with get_tracker("mlflow", tracking_uri="sqlite:///mlflow.db") as tracker:
        log_results("runs/compare-x/results.json", tracker)

Each tracker's package is imported only when the tracker is created (`pip install
lifelong[mlflow]`, `[tensorboard]`, `[neptune]`, `[wandb]`). What is logged for a run is
described in `lifelong.track.base`.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

from lifelong.track.base import Tracker

#: tracker name -> (module, class, pip extra)
TRACKERS: dict[str, tuple[str, str, str]] = {
    "mlflow": ("lifelong.track.mlflow_tracker", "MLflowTracker", "mlflow"),
    "tensorboard": ("lifelong.track.tensorboard_tracker", "TensorBoardTracker", "tensorboard"),
    "neptune": ("lifelong.track.neptune_tracker", "NeptuneTracker", "neptune"),
    "wandb": ("lifelong.track.wandb_tracker", "WandbTracker", "wandb"),
}


def get_tracker(name: str, **options: Any) -> Tracker:
    """Create tracker `name` (mlflow, tensorboard, neptune, wandb) with its `options`.

    A missing package is reported with the extra that installs it.
    """
    if name not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r}; expected one of {', '.join(sorted(TRACKERS))}")
    module, cls_name, extra = TRACKERS[name]
    try:
        cls = getattr(importlib.import_module(module), cls_name)
        tracker: Tracker = cls(**options)
    except ModuleNotFoundError as e:
        raise ValueError(
            f"the {name} tracker needs the package {e.name!r}: pip install 'lifelong[{extra}]'"
        ) from e
    return tracker


def log_results(results: str | os.PathLike[str], tracker: Tracker) -> int:
    """Log every run of a `results.json` file (or of the folder holding one); return how many
    rows it holds. Every tracker skips rows it already logged (MLflow by searching its store,
    the others by a `Ledger` file beside their output), so calling this twice (or after a
    sweep with `--tracker ...`) logs each run once."""
    path = Path(results)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise ValueError(f"no results file at {str(path)!r}; expected a results.json")
    data = json.loads(path.read_text())
    header = {k: v for k, v in data.items() if k != "runs"}
    for row in data.get("runs", []):
        tracker.log_run(row, header)
    return len(data.get("runs", []))


__all__ = ["TRACKERS", "Tracker", "get_tracker", "log_results"]
