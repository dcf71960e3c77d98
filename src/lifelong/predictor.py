"""A trained model as a product: `lifelong.load(RUN_DIR)` returns a `Predictor`.

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
import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience, Stream, TensorSet
from lifelong.serialize import CheckpointError, find_state_dir, read_state_dir, require
from lifelong.strategies.base import Strategy

ArrayLike = Tensor | np.ndarray | Sequence[Any]


class Predictor:
    """A trained model and its strategies, ready to predict class ids.

    Attributes: `scenario`, `input_shape`, `dtype` (of the features), `n_classes` (size of
    the label space), `classes` (the class ids it was trained on), `class_names` (or None),
    `tasks` (task id -> its classes), `info` (the stream's recorded info), `config` (the
    run's config as a dict).
    """

    def __init__(
        self,
        model: nn.Module,
        strategies: list[Strategy],
        payload: dict[str, Any],
        device: torch.device,
    ) -> None:
        meta = payload["stream"]
        self.model, self.strategies, self.device = model.eval(), strategies, device
        self.config: dict[str, Any] = payload["config"]
        self.scenario: str = meta["scenario"]
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in meta["input_shape"])
        self.dtype: torch.dtype = _dtype(meta["dtype"])
        self.n_classes: int = int(meta["n_classes"])
        self.tasks: dict[int, tuple[int, ...]] = {}
        for e in meta["experiences"]:
            known = set(self.tasks.get(int(e["task"]), ())) | set(e["classes"])
            self.tasks[int(e["task"])] = tuple(sorted(known))
        self.classes: tuple[int, ...] = tuple(sorted({c for cs in self.tasks.values() for c in cs}))
        self.info: dict[str, Any] = dict(meta["info"])
        names = self.info.get("class_names")
        self.class_names: list[str] | dict[int, str] | None = None
        if isinstance(names, dict) and all(str(k).lstrip("-").isdigit() for k in names):
            self.class_names = {int(k): str(v) for k, v in names.items()}
        elif isinstance(names, (list, tuple)):
            self.class_names = [str(v) for v in names]

    def class_name(self, c: int) -> str | None:
        """The name of class id `c`, or None when the stream had no class names."""
        names = self.class_names
        if isinstance(names, dict):
            return names.get(c)
        if isinstance(names, list) and 0 <= c < len(names):
            return names[c]
        return None

    @torch.no_grad()
    def predict(
        self, x: ArrayLike, task: int | ArrayLike | None = None, batch_size: int = 1024
    ) -> Tensor:
        """Predicted class ids (a CPU LongTensor) for inputs `x` of shape `(N, *input_shape)`.

        `task` (an int, or one id per sample) is required in the task scenario and refused
        in the others.
        """
        from lifelong.train import predict

        xs = self._inputs(x)
        return predict(
            self.model, self.strategies, xs, self._tasks(task, len(xs)), batch_size
        ).cpu()

    @torch.no_grad()
    def predict_proba(
        self, x: ArrayLike, task: int | ArrayLike | None = None, batch_size: int = 1024
    ) -> Tensor:
        """Class probabilities `(N, n_outputs)` (softmax of the model's outputs; column `c`
        is class id `c`). Refused when a strategy replaces prediction (e.g. nearest-mean)."""
        from lifelong.train import forward

        owners = [s.name for s in self.strategies if s.overrides("predict")]
        if owners:
            raise ValueError(
                f"strategy {owners[0]!r} replaces prediction, so the model's outputs are not "
                "its class probabilities; use predict()"
            )
        xs = self._inputs(x)
        ts = self._tasks(task, len(xs))
        parts = [
            torch.softmax(forward(self.model, xs[i : i + batch_size], ts[i : i + batch_size]), 1)
            for i in range(0, len(xs), batch_size)
        ]
        return torch.cat(parts).cpu() if parts else torch.empty(0, self.n_classes)

    def _inputs(self, x: ArrayLike) -> Tensor:
        if not isinstance(x, Tensor):
            arr = np.asarray(x)
            if arr.dtype.kind not in "fiu":
                raise ValueError(f"inputs must be numbers, got an array of dtype {arr.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(arr))
        if x.dtype == torch.bool or x.is_complex() or not (x.is_floating_point() or _is_int(x)):
            raise ValueError(f"inputs must be real numbers, got dtype {x.dtype}")
        if tuple(x.shape[1:]) != self.input_shape or x.dim() != len(self.input_shape) + 1:
            shape = ", ".join(["N", *map(str, self.input_shape)])
            raise ValueError(
                f"inputs must have shape ({shape}) like the training stream's features, "
                f"got {tuple(x.shape)}"
            )
        return x.to(self.device, self.dtype)

    def _tasks(self, task: int | ArrayLike | None, n: int) -> Tensor:
        known = ", ".join(map(str, sorted(self.tasks)))
        if self.scenario != "task":
            if task is not None:
                raise ValueError(
                    f"this model was trained in the {self.scenario!r} scenario: it takes no "
                    f"task id (got task={task!r})"
                )
            return torch.zeros(n, dtype=torch.long, device=self.device)
        if task is None:
            raise ValueError(
                "this model was trained in the 'task' scenario: pass task=<id> (an int, or "
                f"one id per sample); known tasks: {known}"
            )
        if isinstance(task, (int, np.integer)) and not isinstance(task, bool):
            t = torch.full((n,), int(task), dtype=torch.long)
        else:
            t = task if isinstance(task, Tensor) else torch.as_tensor(np.asarray(task))
            if t.shape != (n,) or not _is_int(t):
                raise ValueError(
                    f"task must be an int or {n} integer ids (one per input), got "
                    f"{t.dtype} of shape {tuple(t.shape)}"
                )
        unknown = sorted(set(t.unique().tolist()) - set(self.tasks))
        if unknown:
            raise ValueError(f"unknown task id(s) {unknown}; the model knows tasks {known}")
        return t.to(self.device, torch.long)


def _is_int(t: Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _dtype(name: str) -> torch.dtype:
    dt = getattr(torch, str(name), None)
    if not isinstance(dt, torch.dtype):
        raise CheckpointError(f"unknown feature dtype {name!r} in the saved model")
    return dt


def _skeleton(meta: dict[str, Any]) -> Stream:
    """A stream with the saved shape, classes and tasks but no data (to rebuild the model)."""
    x = torch.empty((0, *[int(d) for d in meta["input_shape"]]), dtype=_dtype(meta["dtype"]))
    empty = TensorSet(x, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))
    exps = tuple(
        Experience(i, empty, empty, tuple(int(c) for c in e["classes"]), int(e["task"]))
        for i, e in enumerate(meta["experiences"])
    )
    return Stream(
        meta["name"],
        meta["scenario"],
        exps,
        int(meta["n_classes"]),
        int(meta["n_tasks"]),
        info=dict(meta["info"]),
    )


def load(path: str | os.PathLike[str], device: str = "cpu") -> Predictor:
    """Load the model a run saved (`RUN_DIR`, or `RUN_DIR/model`, or a checkpoint dir).

    The global RNG is left as it was. Raises `CheckpointError` (a `ValueError`) when
    there is no saved model or it is corrupted.
    """
    from lifelong.checkpoint import restore_model
    from lifelong.experiment.run import model_spec, resolve_device
    from lifelong.models import build_model
    from lifelong.strategies.registry import build_strategies

    root = Path(path)
    where = find_state_dir(root / "model") or find_state_dir(root)
    if where is None:
        raise CheckpointError(
            f"no saved model in {root} (expected {root / 'model' / 'meta.json'}); "
            "models are saved by runs given a run_dir"
        )
    dev = resolve_device(device)
    payload = read_state_dir(where, dev)
    require(payload, ("config", "stream", "model", "frozen", "strategies"), where)
    stream = _skeleton(payload["stream"])
    config = payload["config"]
    name, params = model_spec(config["model"])
    with torch.random.fork_rng(devices=[]):
        model = build_model(name, stream, head=config["head"], **params)
        strategies = build_strategies(config["strategy"])
        model = restore_model(model, strategies, stream.experiences, payload, dev)
    return Predictor(model, strategies, payload, dev)


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
    if (
        x.ndim == 2
        and len(predictor.input_shape) > 1
        and x.shape[1] == math.prod(predictor.input_shape)
    ):
        x = x.reshape(len(x), *predictor.input_shape)
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
