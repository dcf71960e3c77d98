"""The units of a continual-learning stream: `TensorSet`, `Experience` and `Stream`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

Scenario = Literal["class", "domain", "task"]
SCENARIOS: tuple[str, ...] = ("class", "domain", "task")


@dataclass(frozen=True)
class TensorSet:
    """Inputs `x`, integer labels `y` and per-sample task ids `t`, held as tensors.

    All three share their first dimension. `t` is all zeros outside the task scenario.
    Indexing with a tensor of indices returns a new `TensorSet` (a gather, no Python loop).
    """

    x: Tensor
    y: Tensor
    t: Tensor

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.y.shape != (n,) or self.t.shape != (n,):
            raise ValueError(
                f"TensorSet needs x, y, t with the same first dimension and 1-D y, t; got "
                f"x {tuple(self.x.shape)}, y {tuple(self.y.shape)}, t {tuple(self.t.shape)}"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, idx: Tensor | slice) -> TensorSet:
        return TensorSet(self.x[idx], self.y[idx], self.t[idx])

    def batches(self, order: Tensor, batch_size: int) -> Iterator[TensorSet]:
        """Yield the samples in `order`, `batch_size` at a time, by indexing the tensors.

        Disk-backed sets implement the same method with a `DataLoader` instead; the
        training loop only relies on this method, `len()` and `to()`.
        """
        order = order.to(self.x.device)
        for start in range(0, len(order), batch_size):
            yield self[order[start : start + batch_size]]

    def to(self, device: torch.device | str) -> TensorSet:
        """Return a copy on `device` (the same object when it already lives there)."""
        if self.x.device == torch.device(device):
            return self
        return TensorSet(self.x.to(device), self.y.to(device), self.t.to(device))

    @staticmethod
    def concat(parts: Sequence[TensorSet]) -> TensorSet:
        """Concatenate several sets (all on one device, same feature shape)."""
        if not parts:
            raise ValueError("TensorSet.concat needs at least one set")
        if len(parts) == 1:
            return parts[0]
        if not any(isinstance(p, TensorSet) for p in parts):  # disk-backed sets stay on disk
            return type(parts[0]).concat(parts)
        return TensorSet(
            torch.cat([p.x for p in parts]),
            torch.cat([p.y for p in parts]),
            torch.cat([p.t for p in parts]),
        )


@dataclass(frozen=True)
class Experience:
    """One chunk of the stream: its train/test data, its classes, its task id and index.

    `valid` is a validation split carved from the training data (see
    `lifelong.data.with_validation`); it is `None` unless asked for.
    """

    index: int
    train: TensorSet
    test: TensorSet
    classes: tuple[int, ...]
    task: int = 0
    valid: TensorSet | None = None

    def to(self, device: torch.device | str) -> Experience:
        """Return this experience with every tensor on `device`."""
        return replace(
            self,
            train=self.train.to(device),
            test=self.test.to(device),
            valid=None if self.valid is None else self.valid.to(device),
        )


@dataclass(frozen=True)
class Stream:
    """A sequence of experiences plus what the scenario is and how many classes/tasks exist.

    `online=True` asks the training loop for a single pass in small batches (each sample
    seen once). `input_shape` is the shape of one input without the batch dimension.
    """

    name: str
    scenario: Scenario
    experiences: tuple[Experience, ...]
    n_classes: int
    n_tasks: int = 1
    online: bool = False
    info: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.experiences)

    def __iter__(self) -> Iterator[Experience]:
        return iter(self.experiences)

    def __getitem__(self, i: int) -> Experience:
        return self.experiences[i]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample (without the batch dimension)."""
        train = self.experiences[0].train
        shape = getattr(train, "sample_shape", None)  # disk-backed sets know it without reading
        return tuple(shape) if shape is not None else tuple(train.x.shape[1:])

    def to(self, device: torch.device | str) -> Stream:
        """Return the stream with every experience's tensors on `device`."""
        return replace(self, experiences=tuple(e.to(device) for e in self.experiences))
