"""DER++: Dark Experience Replay plus cross-entropy on a second memory batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.strategies.base import Batch
from lifelong.strategies.der import DER, IGNORE
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register
from lifelong.strategies.replay import append_rows

LABELS = "derpp.labels"


@register("derpp")
class DERpp(DER):
    """DER++ (Buzzega et al. 2020, "Dark Experience for General Continual Learning: a
    Strong, Simple Baseline").

    DER's loss `CE(stream) + alpha * MSE(model(x_mem), stored logits)` plus
    `beta * CE(model(x_mem2), y_mem2)` on a second, independently drawn memory batch,
    which corrects stored logits that were wrong or stale. Both memory batches ride in the
    stream batch's forward, labelled `IGNORE` so the plain cross-entropy (the stream term)
    skips them; their labels sit in `batch.extras`.

    When: as DER; usually the stronger of the two, most of all in class-incremental streams.

    Hyper-parameters:
    * `mem_size` (500): samples kept (reservoir); 0 means no memory.
    * `replay_batch_size` (32): rows in each of the two memory batches.
    * `alpha` (0.5): weight of the logit-matching term.
    * `beta` (1.0): weight of the cross-entropy on the second memory batch.
    """

    ranges = {"beta": Range(ge=0)}

    def __init__(
        self,
        mem_size: int = 500,
        replay_batch_size: int = 32,
        alpha: float = 0.5,
        beta: float = 1.0,
    ) -> None:
        super().__init__(mem_size, replay_batch_size, alpha)
        self.beta = beta

    def batch(self, batch: Batch) -> Batch:
        batch = super().batch(batch)
        rows = self.buffer_.sample(self.replay_batch_size)
        if rows is None:
            return batch
        start = int(batch.x.shape[0])
        out = append_rows(batch, rows, torch.full_like(rows.y, IGNORE))
        out.extras[LABELS] = rows.y.to(batch.y.device)
        out.extras["derpp.rows"] = torch.arange(start, start + len(rows), device=batch.x.device)
        return out

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        loss = super().penalty(model, batch, out)
        if LABELS in batch.extras:
            mem_out = out[batch.extras["derpp.rows"]]
            loss = loss + self.beta * F.cross_entropy(mem_out, batch.extras[LABELS])
        return loss
