"""Cumulative: retrain on all the data seen so far at every experience."""

from __future__ import annotations

from collections.abc import Sequence

from lifelong.data.experience import Experience, TensorSet
from lifelong.strategies.base import Strategy
from lifelong.strategies.registry import register


@register("cumulative")
class Cumulative(Strategy):
    """Retrain on the union of all experiences seen so far (replay with unlimited memory).

    At experience i it trains on experiences 0..i; its cost grows with the stream.
    No hyper-parameters."""

    uses_past_data = True

    compile_safe = True

    def train_data(self, experience: Experience, seen: Sequence[Experience]) -> TensorSet:
        return TensorSet.concat([e.train for e in seen])
