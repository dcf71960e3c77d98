"""The test-set guard of `lifelong tune`: tuning sees training and validation data only.

`guard_stream` replaces every experience's test set by a `WithheldTestSet`, which raises
`TestSetAccessError` on any use, so no test data can reach a tuning objective; the
objective is scored on each experience's validation split (`validation_sets`,
`validation_accuracy`). See `lifelong.experiment.tune` for the whole protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch-free at import time, so `lifelong --help` stays quick
    from torch import nn

    from lifelong.data.experience import Stream, TensorSet
    from lifelong.strategies.base import Strategy


class TestSetAccessError(RuntimeError):
    """Raised when tuning code touches a test set (tuning must see validation data only)."""

    __test__ = False  # not a pytest test class


class WithheldTestSet:
    """Stands in for an experience's test set while tuning: any use of it raises."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        object.__setattr__(self, "index", index)

    def _refuse(self, what: str) -> TestSetAccessError:
        return TestSetAccessError(
            f"the test set of experience {self.index} was accessed ({what}) during tuning; "
            "tuning may use training and validation data only"
        )

    def __getattr__(self, name: str) -> Any:
        raise self._refuse(f"attribute {name!r}")

    def __len__(self) -> int:
        raise self._refuse("len()")

    def __getitem__(self, idx: Any) -> Any:
        raise self._refuse("indexing")

    def __iter__(self) -> Any:
        raise self._refuse("iteration")

    def __bool__(self) -> bool:
        raise self._refuse("truth value")

    def __repr__(self) -> str:
        return f"<test set of experience {self.index}: withheld while tuning>"


def guard_stream(stream: Stream) -> Stream:
    """The stream with every experience's test set replaced by a `WithheldTestSet`."""
    exps = tuple(replace(e, test=WithheldTestSet(e.index)) for e in stream.experiences)  # type: ignore[arg-type]
    return replace(stream, experiences=exps)


def validation_sets(stream: Stream) -> list[TensorSet]:
    """The data the objective is scored on: each experience's validation split."""
    sets = [e.valid for e in stream.experiences]
    if any(s is None for s in sets):
        raise ValueError("the tuning stream has experiences without a validation split")
    return [s for s in sets if s is not None]


def validation_accuracy(model: nn.Module, strategies: Sequence[Strategy], data: TensorSet) -> float:
    """Accuracy of the model (with the strategies' `predict`) on one validation set."""
    from lifelong.train import predict

    pred = predict(model, strategies, data.x, data.t)
    return float((pred == data.y).double().mean())
