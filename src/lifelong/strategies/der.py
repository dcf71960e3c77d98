"""Dark Experience Replay (DER): replay past samples with the logits they had when stored."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lifelong.models.heads import MASKED_LOGIT
from lifelong.strategies.base import Batch
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register
from lifelong.strategies.replay import MemoryStrategy, append_rows

#: Label of rows that take no part in the plain cross-entropy (PyTorch's `ignore_index`):
#: DER appends its memory rows with it, so one forward serves the stream and the memory.
IGNORE = -100
LOGITS = "der.logits"


def logit_distance(out: Tensor, stored: Tensor) -> Tensor:
    """Mean squared error between current and stored logits (DER's dark-knowledge term).

    Compares the stored columns only (a growing head may have gained classes since) and
    averages over the entries that were not masked out when stored (other tasks' heads
    hold `MASKED_LOGIT`); with a single head that is the plain mean.
    """
    width = int(stored.shape[1])
    valid = stored > MASKED_LOGIT / 2
    diff = (out[:, :width] - stored.to(out.dtype)).masked_fill(~valid, 0.0)
    return diff.pow(2).sum() / valid.sum().clamp(min=1)


@register("der")
class DER(MemoryStrategy):
    """Dark Experience Replay (Buzzega et al. 2020, "Dark Experience for General Continual
    Learning: a Strong, Simple Baseline").

    A reservoir memory stores each stream sample with the logits the model gave it while
    training; the loss adds `alpha * MSE(model(x_mem), stored logits)` on a memory batch
    (no cross-entropy on memory rows, as in the paper). The memory rows ride in the same
    forward as the stream batch, labelled `IGNORE` so the plain cross-entropy skips them.

    When: class-, domain- or task-incremental streams where a small memory is allowed and
    soft targets help (no task boundaries needed: the memory fills online).

    Hyper-parameters:
    * `mem_size` (500): samples kept (reservoir); 0 means no memory.
    * `replay_batch_size` (32): memory rows per step.
    * `alpha` (1.0): weight of the logit-matching term.
    """

    compile_safe = True

    ranges = {"mem_size": Range(ge=0), "replay_batch_size": Range(ge=1), "alpha": Range(ge=0)}

    def __init__(
        self, mem_size: int = 500, replay_batch_size: int = 32, alpha: float = 1.0
    ) -> None:
        self.mem_size = mem_size
        self.replay_batch_size = replay_batch_size
        self.alpha = alpha
        self._init_memory(mem_size, "reservoir")

    def batch(self, batch: Batch) -> Batch:
        rows = self.buffer_.sample(self.replay_batch_size)
        if rows is None:
            return batch
        start = int(batch.x.shape[0])
        out = append_rows(batch, rows, torch.full_like(rows.y, IGNORE))
        out.extras[LOGITS] = rows.extras["logits"].to(batch.x.device)
        out.extras["der.rows"] = torch.arange(start, start + len(rows), device=batch.x.device)
        return out

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        loss = out.new_zeros(())
        if LOGITS in batch.extras:
            mem_out = out[batch.extras["der.rows"]]
            loss = loss + self.alpha * logit_distance(mem_out, batch.extras[LOGITS])
        self._store(batch, out)
        return loss

    def _store(self, batch: Batch, out: Tensor) -> None:
        """Offer the stream rows, with their current logits, to the reservoir (at every
        step of every epoch, as in the paper: later epochs store better logits)."""
        n = batch.n_stream
        if n == 0 or self.mem_size == 0:
            return
        logits = out[:n].detach()
        self.buffer_.widen("logits", int(logits.shape[1]), MASKED_LOGIT)
        self.buffer_.add(batch.x[:n], batch.y[:n], batch.t[:n], {"logits": logits})
