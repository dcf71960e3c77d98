"""Joint: offline training on the whole stream at once, the upper bound."""

from __future__ import annotations

from collections.abc import Sequence

from lifelong.data.experience import Experience, TensorSet
from lifelong.strategies.base import Strategy
from lifelong.strategies.registry import register


@register("joint")
class Joint(Strategy):
    """Offline training on the whole stream at once: the upper bound (sees the future).

    It trains once, at the first experience, on every experience's training data; later
    experiences train on nothing. Its accuracy matrix is therefore one row repeated, so the
    metrics stay defined (forgetting 0). Not a continual method: it sees the future.
    No hyper-parameters."""

    uses_past_data = True

    sees_whole_stream = True
    compile_safe = True

    def train_data(self, experience: Experience, seen: Sequence[Experience]) -> TensorSet:
        if experience.index == seen[0].index:
            return TensorSet.concat([e.train for e in seen])
        return experience.train[:0]
