"""Turn user data (torch tensors, numpy arrays, any torch `Dataset`) into a `TensorSet`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from lifelong.data.experience import TensorSet


def _to_tensor(a: Any, what: str) -> Tensor:
    if isinstance(a, Tensor):
        return a
    if isinstance(a, np.ndarray):
        if a.dtype == object:
            raise TypeError(f"{what} is a numpy array of dtype object; expected numbers")
        return torch.from_numpy(np.ascontiguousarray(a))
    if isinstance(a, (list, tuple)):
        return torch.as_tensor(np.asarray(a))
    raise TypeError(f"{what} must be a torch.Tensor or numpy array, got {type(a).__name__}")


def _labels(y: Any, what: str = "labels") -> Tensor:
    y = _to_tensor(y, what)
    if y.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {tuple(y.shape)}")
    if y.is_floating_point():
        if not torch.isfinite(y).all() or not torch.equal(y, y.round()):
            bad = y[~torch.isfinite(y) | (y != y.round())][:3].tolist()
            raise ValueError(f"{what} must be whole numbers (class ids); found {bad}")
    elif y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{what} must be integer class ids, got dtype {y.dtype}")
    y = y.long()
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{what} must be non-negative class ids; found {int(y.min())}")
    return y


def _features(x: Any) -> Tensor:
    x = _to_tensor(x, "features")
    if x.ndim < 1:
        raise ValueError("features must have a batch dimension")
    if x.dtype == torch.float64:
        x = x.float()
    elif not (x.is_floating_point() or x.dtype == torch.uint8):
        x = x.float()
    return x


def as_tensorset(x: Any, y: Any | None = None, t: Any | None = None) -> TensorSet:
    """Build a `TensorSet` from tensors, numpy arrays or a torch `Dataset`.

    * `as_tensorset(x, y)` with `x` of shape `[N, ...]` and `y` of shape `[N]`;
    * `as_tensorset(dataset)` for any map-style torch `Dataset` whose items are `(x, y)`;
      the items are stacked in memory.

    float64 features become float32; uint8 features stay uint8 (compact); labels become
    int64. `t` gives per-sample task ids (zeros when omitted).
    """
    if y is None:
        if not isinstance(x, torch.utils.data.Dataset):
            raise TypeError(
                "as_tensorset needs (features, labels) or a torch Dataset of (x, y) items; "
                f"got a single {type(x).__name__}"
            )
        xs, ys = _stack_dataset(x)
        x, y = xs, ys
    xt, yt = _features(x), _labels(y)
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(
            f"features and labels disagree on the number of samples: "
            f"{xt.shape[0]} features, {yt.shape[0]} labels"
        )
    tt = torch.zeros_like(yt) if t is None else _labels(t, "task ids")
    if tt.shape != yt.shape:
        raise ValueError(f"task ids must have one entry per sample ({yt.shape[0]}), got {tt.shape}")
    return TensorSet(xt, yt, tt)


def _stack_dataset(ds: Any) -> tuple[Tensor, Tensor]:
    n = len(ds)
    if n == 0:
        raise ValueError("the dataset is empty")
    xs, ys = [], []
    for i in range(n):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(f"dataset item {i} must be an (x, y) pair, got {type(item).__name__}")
        xs.append(_features(item[0]) if not isinstance(item[0], Tensor) else item[0])
        ys.append(int(item[1]))
    return torch.stack([torch.as_tensor(v) for v in xs]), torch.tensor(ys)
