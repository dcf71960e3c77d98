"""ER-ACE: experience replay with an asymmetric cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.models.heads import MASKED_LOGIT
from lifelong.strategies.base import Batch
from lifelong.strategies.registry import register
from lifelong.strategies.replay import Replay


def masked_ce(logits: Tensor, y: Tensor, allowed: Tensor) -> Tensor:
    """Cross-entropy over the classes in `allowed` (a bool mask over columns) only, averaged
    over the rows whose label is not `ignore_index` (0 when there is none)."""
    logits = logits.masked_fill(~allowed[: logits.shape[1]], MASKED_LOGIT)
    total = F.cross_entropy(logits, y, reduction="sum")
    return total / (y != -100).sum().clamp(min=1)


@register("er-ace")
class ERACE(Replay):
    """ER-ACE (Caccia et al. 2022, "New Insights on Reducing Abrupt Representation Change
    in Online Continual Learning"): experience replay whose loss is asymmetric.

    The incoming batch's cross-entropy only covers the classes present in that batch (the
    other logits are masked), so new classes do not push the logits of old ones down and
    the old classes' features are not disrupted when new classes arrive; memory rows get
    the ordinary cross-entropy over every class seen so far. Memory: reservoir, mixed into
    each batch as `replay` does.

    When: class-incremental (also online) streams, where the abrupt change of the
    representation at a task switch dominates forgetting; also runs in domain and task
    scenarios.

    Hyper-parameters:
    * `mem_size` (500): samples kept (reservoir); 0 means no memory.
    * `replay_batch_size` (32): memory rows appended to each stream batch.
    """

    def __init__(self, mem_size: int = 500, replay_batch_size: int = 32) -> None:
        super().__init__(mem_size, replay_batch_size, "reservoir")
        self.seen_: Tensor = torch.zeros(0, dtype=torch.bool)

    def loss(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        n, width = batch.n_stream, int(out.shape[1])
        y_stream = batch.y[:n]
        present = torch.zeros(width, dtype=torch.bool, device=out.device)
        present[y_stream] = True
        seen = self.seen_.to(out.device)
        if seen.numel() < width:
            seen = torch.cat([seen, seen.new_zeros(width - seen.numel())])
        self.seen_ = seen | present
        loss = masked_ce(out[:n], y_stream, present)
        if out.shape[0] > n:
            loss = loss + masked_ce(out[n:], batch.y[n:], self.seen_)
        return loss
