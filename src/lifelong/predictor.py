"""A trained model as a product: `lifelong.load(RUN_DIR)` returns a `Learner`.

A run given a `run_dir` saves its final model in `RUN_DIR/model/` (see
`lifelong.checkpoint`): weights, each strategy's state, and what prediction needs (the
scenario, input shape and dtype, the classes and tasks it was trained on, class names when
the stream had them). `Predictor.predict` uses a strategy's own prediction where it has
one (e.g. iCaRL's nearest-mean classifier), exactly as the evaluation of the run did.

Inputs take the same form as the stream's features during training; a DataFrame's columns
are matched to the training table's by name (`lifelong.data.columns`), and `predict_file`
reads what training reads (`lifelong.data.newdata`). Where a benchmark standardized its
features, `predictor.info["standardized"]` holds its `(mean, std)`: apply
`(x - mean) / std` to raw inputs first. `export` writes a model for prediction only: no
training samples.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from torch import Tensor

from lifelong.checkpoint import read_learner
from lifelong.data.newdata import read_new_data
from lifelong.learner import Learner
from lifelong.serialize import META_FILE

ArrayLike = Tensor | np.ndarray | Sequence[Any]


#: a trained model ready to predict is a `Learner` (it can also go on learning)
Predictor = Learner


def load(path: str | os.PathLike[str], device: str = "cpu") -> Learner:
    """Load a saved learner or the model a run saved (`RUN_DIR`, `RUN_DIR/model`, a
    checkpoint folder or a folder written by `Learner.save`): a `Learner` that predicts
    and can go on learning. The global RNG is left as it was. Raises `CheckpointError` (a
    `ValueError`) when there is no saved model or it is corrupted."""
    return Learner.load(path, device=device)


def export(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the model saved at `source` (a run folder or saved learner) to folder `out`
    for prediction only (`Learner.save(out, for_prediction=True)`): it predicts the same
    but holds no training samples. Returns `path` and what was `left_out` that held
    training samples. An existing `out` must be an earlier save (it is replaced)."""
    dest = Path(out)
    if dest.exists() and not (dest / META_FILE).is_file():
        if not dest.is_dir() or any(dest.iterdir()):
            raise ValueError(f"{dest} exists and is not a saved model: choose another --out")
    learner = load(source)
    _, where = read_learner(source)
    if dest.resolve() == where.resolve():
        raise ValueError(f"{dest} is the model being exported: choose another --out")
    left_out = list(learner.state()["manifest"]["training_samples"])
    path = learner.save(dest, for_prediction=True)
    return {"path": path, "left_out": left_out}


def predict_file(
    predictor: Predictor, data: str | os.PathLike[str], out: TextIO, task: int | None = None
) -> int:
    """Predict every row (or image) of `data`; write a CSV (`[file,]prediction[,class_name]`)
    to `out`. `data` is read as the training data was (`lifelong.data.newdata`): a table's
    named columns are matched by name, its label column left out; an image folder's images
    take the training images' mode and size. Returns the number of predictions."""
    new = read_new_data(data, predictor.info, predictor.input_shape)
    tasks: int | np.ndarray | None = task if task is not None else new.tasks
    if predictor.scenario != "task" and task is None:
        tasks = None  # task ids in a file are only used by task-scenario models
    preds = predictor.predict(new.x, task=tasks).tolist()
    named = predictor.class_names is not None
    w = csv.writer(out, lineterminator="\n")
    w.writerow((["file"] if new.rows else []) + ["prediction"] + (["class_name"] if named else []))
    for i, c in enumerate(preds):
        w.writerow(
            ([new.rows[i]] if new.rows else [])
            + [c]
            + ([predictor.class_name(c) or ""] if named else [])
        )
    return len(preds)


__all__ = ["Predictor", "export", "load", "predict_file"]
