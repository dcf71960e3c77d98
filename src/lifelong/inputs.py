"""What a `Learner` accepts as data, checked before anything changes.

`LabelMap` turns the user's labels (integer ids, or strings such as "cat") into class ids
and back. `to_tensorset` turns tensors, NumPy arrays, a `TensorSet`, a torch `Dataset` or
an `Experience` into one `TensorSet`, refusing, with a message that names the value, an
empty batch, non-numeric or non-finite features, a feature shape other than the learner's,
labels of another kind than before, and task ids outside the task scenario.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lifelong.data.experience import Experience, TensorSet

ArrayLike = Tensor | np.ndarray | Sequence[Any]


@dataclass
class LabelMap:
    """Labels -> class ids. `kind` is "int" (labels are the ids) or "str" (names get ids
    in order of arrival, sorted within a batch); None until the first labels arrive."""

    kind: str | None = None
    names: list[str] = field(default_factory=list)

    def encode(self, y: Any, n: int) -> tuple[Tensor, str, list[str]]:
        """Class ids for labels `y` (N of them), their kind and the names this call adds.
        Changes nothing: call `add` with the names once the data is accepted."""
        arr = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
        if arr.shape != (n,):
            raise ValueError(f"labels must be one per sample ({n}), got shape {arr.shape}")
        kind = "str" if arr.dtype.kind in "USO" else "int" if arr.dtype.kind in "iu" else None
        if kind is None:
            raise ValueError(
                f"labels must be integers or strings, got dtype {arr.dtype}"
                + (f" (e.g. {arr[0]!r})" if len(arr) else "")
            )
        if self.kind is not None and kind != self.kind:
            raise ValueError(
                f"labels are {'strings' if kind == 'str' else 'integers'} ({arr.dtype}) but "
                f"this learner was given {'strings' if self.kind == 'str' else 'integers'} "
                "before; use one kind of label"
            )
        if kind == "int":
            if arr.size and arr.min() < 0:
                raise ValueError(f"labels must be >= 0, got {int(arr.min())}")
            return torch.as_tensor(arr.astype(np.int64)), kind, []
        text = [str(v) for v in arr.tolist()]
        new = sorted(set(text) - set(self.names))
        index = {name: i for i, name in enumerate([*self.names, *new])}
        return torch.tensor([index[v] for v in text], dtype=torch.long), kind, new

    def add(self, kind: str, new: list[str]) -> None:
        self.kind = self.kind or kind
        self.names.extend(new)


def real_tensor(x: Any, what: str) -> Tensor:
    """`x` (a tensor or anything NumPy reads) as a tensor of real numbers; `what` names
    it in the error ("features", "inputs")."""
    if isinstance(x, Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"{what} must be numbers, got an array of dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{what} must be real numbers, got dtype {t.dtype}")
    return t


def _features(x: Any) -> Tensor:
    t = real_tensor(x, "features")
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def _from_dataset(data: torch.utils.data.Dataset[Any]) -> tuple[Tensor, Tensor, Tensor | None]:
    items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
    if not items:
        raise ValueError("the dataset is empty: nothing to learn from")
    if not isinstance(items[0], (tuple, list)) or len(items[0]) not in (2, 3):
        raise ValueError("a Dataset must yield (x, y) or (x, y, task) items")
    xs = torch.stack([torch.as_tensor(it[0]) for it in items])
    ys = torch.as_tensor([int(it[1]) for it in items])
    ts = torch.as_tensor([int(it[2]) for it in items]) if len(items[0]) == 3 else None
    return xs, ys, ts


def split_input(data: Any, y: Any, task: Any) -> tuple[Any, Any, Any]:
    """(features, labels, tasks) from any accepted form of data."""
    if isinstance(data, Experience):
        data = data.train
    if isinstance(data, TensorSet):
        if y is not None:
            raise ValueError("pass labels inside the TensorSet or Experience, not as y")
        return data.x, data.y, data.t if task is None else task
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, Tensor):
        x, labels, t = _from_dataset(data)
        return x, labels if y is None else y, t if task is None else task
    if y is None:
        raise ValueError("labels are missing: learn(x, y) needs one label per sample")
    return data, y, task


def task_ids(task: Any, n: int, scenario: str) -> Tensor:
    """Per-sample task ids: an int or one id per sample in the task scenario, zeros in the
    others (where a task id is refused)."""
    if scenario != "task":
        if task is not None and not (isinstance(task, Tensor) and not task.any()):
            raise ValueError(
                f"this learner is in the {scenario!r} scenario: it takes no task id "
                f"(got task={task!r}); use scenario='task' for task-incremental learning"
            )
        return torch.zeros(n, dtype=torch.long)
    if task is None:
        raise ValueError("the 'task' scenario needs task=<id> (an int, or one id per sample)")
    if isinstance(task, (int, np.integer)) and not isinstance(task, bool):
        t = torch.full((n,), int(task), dtype=torch.long)
    else:
        t = task.detach().cpu() if isinstance(task, Tensor) else torch.as_tensor(np.asarray(task))
        if t.shape != (n,) or t.is_floating_point() or t.dtype == torch.bool:
            raise ValueError(
                f"task must be an int or {n} integer ids, got {t.dtype} of shape {tuple(t.shape)}"
            )
        t = t.long()
    return t


def check_features(x: Tensor, input_shape: tuple[int, ...] | None) -> None:
    """Refuse an empty batch, a shape other than `input_shape`, NaN or infinity."""
    if x.dim() == 0 or len(x) == 0:
        raise ValueError(f"empty batch (features of shape {tuple(x.shape)}): nothing to learn")
    if input_shape is not None and tuple(x.shape[1:]) != input_shape:
        shape = ", ".join(["N", *map(str, input_shape)])
        raise ValueError(
            f"features must have shape ({shape}) like the learner's first data, "
            f"got {tuple(x.shape)}"
        )
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite)[0].tolist()
        raise ValueError(
            f"features must be finite: sample {bad[0]} holds {x[tuple(bad)].item()} "
            f"at position {tuple(bad[1:])}"
        )


def to_tensorset(
    data: Any,
    y: Any,
    task: Any,
    *,
    scenario: str,
    input_shape: tuple[int, ...] | None,
    labels: LabelMap,
) -> tuple[TensorSet, str, list[str]]:
    """The accepted batch as a CPU `TensorSet`, the label kind and the new label names.
    Raises `ValueError` naming the problem; changes nothing."""
    raw_x, raw_y, raw_t = split_input(data, y, task)
    x = _features(raw_x)
    check_features(x, input_shape)
    ids, kind, new = labels.encode(raw_y, len(x))
    t = task_ids(raw_t, len(x), scenario)
    if len(t) and int(t.min()) < 0:
        raise ValueError(f"task ids must be >= 0, got {int(t.min())}")
    return TensorSet(x.cpu(), ids, t), kind, new


def resolve_device(device: str | torch.device) -> torch.device:
    """`cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available) -> a `torch.device`."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or auto")
    return torch.device(device)


def prediction_inputs(x: Any, input_shape: tuple[int, ...]) -> Tensor:
    """Inputs to predict: real numbers of shape `(N, *input_shape)`."""
    x = real_tensor(x, "inputs")
    if x.dim() != len(input_shape) + 1 or tuple(x.shape[1:]) != input_shape:
        shape = ", ".join(["N", *map(str, input_shape)])
        raise ValueError(
            f"inputs must have shape ({shape}) like the training features, got {tuple(x.shape)}"
        )
    return x


def prediction_tasks(task: Any, n: int, scenario: str, known: tuple[int, ...]) -> Tensor:
    """Task ids to predict with: required in the task scenario (and known), refused in
    the others."""
    names = ", ".join(map(str, known))
    if scenario == "task" and task is None:
        raise ValueError(
            "this model was trained in the 'task' scenario: pass task=<id> (an int, or "
            f"one id per sample); known tasks: {names}"
        )
    if scenario != "task" and task is not None:
        raise ValueError(
            f"this model was trained in the {scenario!r} scenario: it takes no "
            f"task id (got task={task!r})"
        )
    t = task_ids(task, n, scenario)
    unknown = sorted(set(t.unique().tolist()) - set(known)) if scenario == "task" else []
    if unknown:
        raise ValueError(f"unknown task id(s) {unknown}; the model knows tasks {names}")
    return t
