"""What a `Learner`'s predictions and evaluations are made of: the model's outputs in eval
mode, batch by batch, with classes never learned masked out; the test sets that
`Learner.evaluate` accepts, as `(x, y, task)` triples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience, Stream, TensorSet
from lifelong.models.functional import forward
from lifelong.models.heads import MASKED_LOGIT


def masked_logits(
    model: nn.Module,
    xs: Tensor,
    ts: Tensor,
    batch_size: int,
    n_classes: int,
    learned: Sequence[int] | None,
) -> Tensor:
    """The model's outputs for `xs` (task ids `ts`) in eval mode, `batch_size` rows at a
    time; columns not in `learned` masked out (None: none masked, e.g. task heads, which
    mask their own classes). No rows: an empty `(0, max(n_classes, 1))` tensor."""
    was = model.training
    model.eval()
    try:
        parts = [
            forward(model, xs[i : i + batch_size], ts[i : i + batch_size])
            for i in range(0, len(xs), batch_size)
        ]
    finally:
        model.train(was)
    out = torch.cat(parts) if parts else torch.empty(0, max(n_classes, 1))
    if learned is not None:
        known = torch.zeros(out.shape[1], dtype=torch.bool, device=out.device)
        known[[c for c in learned if c < out.shape[1]]] = True
        out = out.masked_fill(~known, MASKED_LOGIT)
    return out


def scored_sets(test_sets: Stream | Sequence[Any], with_tasks: bool) -> list[tuple[Any, ...]]:
    """`(x, y, task)` of each test set: a `Stream`'s experiences' test sets, or a list of
    `TensorSet`s, `Experience`s (their test sets) or `(x, y[, task])` tuples. A tensor
    set's task ids are used only `with_tasks` (the task scenario); else task is None."""
    sets = [e.test for e in test_sets] if isinstance(test_sets, Stream) else list(test_sets)
    out: list[tuple[Any, ...]] = []
    for item in sets:
        if isinstance(item, Experience):
            item = item.test
        if isinstance(item, TensorSet):
            out.append((item.x, item.y, item.t if with_tasks else None))
        else:
            out.append((item[0], item[1], item[2] if len(item) > 2 else None))
    return out
