"""Cross-entropy that leaves the classes of earlier experiences alone: the training trick
of L2P (Wang et al., CVPR 2022, "Learning to Prompt for Continual Learning", its code's
`train_mask`), shared by `adapter` and `prompt`.

In a class-incremental stream the cross-entropy over every class pushes the logits of the
classes not in the batch down at every step: the shared head learns that old classes are
never the answer (its recency bias), which is most of what a head on a frozen or barely
changing backbone forgets. Masking the logits of the old classes that are not in the
current experience (`MASKED_LOGIT`) before the cross-entropy leaves their head rows without
gradient: the new classes are learned against each other. L2P masks every class outside
the current task and, at test time, the classes not seen yet; here the classes never seen
stay in the cross-entropy instead (pushed down, as plain training does), so that the rows
of a fixed-width head's future classes cannot win a prediction before they are learned.
Rows appended to the batch by another strategy (`replay`'s memory, after `batch.n_stream`)
keep the cross-entropy over every class, since they hold old classes on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lifelong.data.experience import Experience
from lifelong.models.heads import MASKED_LOGIT
from lifelong.strategies.base import Batch


def old_classes(seen: Sequence[int], experience: Experience) -> tuple[list[int], list[int]]:
    """`(old, seen_now)`: the classes of earlier experiences (`seen`) that `experience`
    does not bring, to be masked while training on it, and `seen` with its classes."""
    current = set(experience.classes)
    old = sorted(set(seen) - current)
    return old, sorted(set(seen) | current)


def masked_old_loss(out: Tensor, batch: Batch, old: Sequence[int] | None) -> Tensor:
    """Mean cross-entropy of `out` on `batch.y` where the stream rows do not score the
    classes `old` (nor ever mask their own label); appended rows score every class.
    `None` or no old class: the plain cross-entropy."""
    width, n = int(out.shape[1]), batch.n_stream
    cols = [c for c in old or () if 0 <= c < width]
    if not cols:
        return F.cross_entropy(out, batch.y)
    masked = torch.zeros(width, dtype=torch.bool, device=out.device)
    masked[cols] = True
    masked[batch.y[:n]] = False  # a stream label is never a masked target
    stream = torch.arange(out.shape[0], device=out.device) < n
    drop = masked.unsqueeze(0) & stream.unsqueeze(1)
    return F.cross_entropy(out.masked_fill(drop, MASKED_LOGIT), batch.y)
