"""A trained model as a product: `lifelong.load(RUN_DIR)` returns a `Learner`.

A run given a `run_dir` saves its final model in `RUN_DIR/model/` (see
`lifelong.checkpoint`): weights, each strategy's state, and what prediction needs (the
scenario, input shape and dtype, the classes and tasks it was trained on, class names when
the stream had them). `Predictor.predict` uses a strategy's own prediction where it has
one (e.g. iCaRL's nearest-mean classifier), exactly as the evaluation of the run did.

Inputs take the same form as the stream's features during training. Where a benchmark
standardized its features, `predictor.info["standardized"]` holds its `(mean, std)`:
apply `(x - mean) / std` to raw inputs first.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from torch import Tensor

from lifelong.learner import Learner

ArrayLike = Tensor | np.ndarray | Sequence[Any]


#: a trained model ready to predict is a `Learner` (it can also go on learning)
Predictor = Learner


def load(path: str | os.PathLike[str], device: str = "cpu") -> Learner:
    """Load a saved learner or the model a run saved (`RUN_DIR`, `RUN_DIR/model`, a
    checkpoint folder or a folder written by `Learner.save`): a `Learner` that predicts
    and can go on learning. The global RNG is left as it was. Raises `CheckpointError` (a
    `ValueError`) when there is no saved model or it is corrupted."""
    return Learner.load(path, device=device)


def read_inputs(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (and task ids, if the file has them) from `.npz` (arrays `x`, optional
    `t`), `.npy` or `.csv` (numeric columns, an optional header; a `task` column holds
    task ids)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such data file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if "x" not in z:
                raise ValueError(f"{p}: expected an array named 'x', found {sorted(z.files)}")
            return z["x"], (z["t"] if "t" in z else None)
    if suffix == ".npy":
        return np.load(p, allow_pickle=False), None
    if suffix != ".csv":
        raise ValueError(f"{p}: unknown data file type {suffix!r}; expected .npz, .npy or .csv")
    with open(p, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if rows and not all(_is_number(c) for c in rows[0]):
        header, rows = [h.strip() for h in rows[0]], rows[1:]
    else:
        header = []
    try:
        data = np.array([[float(c) for c in r] for r in rows], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{p}: every column must be numeric ({e})") from None
    if len({len(r) for r in rows}) > 1:
        raise ValueError(f"{p}: rows have different numbers of columns")
    if "task" in header:
        k = header.index("task")
        return np.delete(data, k, axis=1), data[:, k].astype(np.int64)
    return data, None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def predict_file(
    predictor: Predictor, data: str | os.PathLike[str], out: TextIO, task: int | None = None
) -> int:
    """Predict every row of file `data`; write a CSV (`prediction[,class_name]`) to `out`.

    Flat rows (CSV) are reshaped to the model's input shape. Returns the number of rows.
    """
    x, t = read_inputs(data)
    shape = predictor.input_shape or ()
    if x.ndim == 2 and len(shape) > 1 and x.shape[1] == math.prod(shape):
        x = x.reshape(len(x), *shape)
    tasks: int | np.ndarray | None = task if task is not None else t
    if predictor.scenario != "task" and task is None:
        tasks = None  # task ids in a file are only used by task-scenario models
    preds = predictor.predict(x, task=tasks).tolist()
    named = predictor.class_names is not None
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["prediction", "class_name"] if named else ["prediction"])
    for c in preds:
        w.writerow([c, predictor.class_name(c) or ""] if named else [c])
    return len(preds)


__all__ = ["Predictor", "load", "predict_file", "read_inputs"]
