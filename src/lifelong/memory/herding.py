"""Herding selection of exemplars (Rebuffi et al. 2017, iCaRL, Algorithm 4).

Herding picks, one at a time, the sample whose addition brings the mean of the chosen
L2-normalised features closest to the mean of all of them. The order matters: every prefix
of the selection is itself a herding selection, so iCaRL shrinks an exemplar set by keeping
its first `m` rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def herding_select(features: Tensor, n: int) -> Tensor:
    """Indices (`LongTensor`, in selection order) of `n` rows of `features` chosen by herding.

    `features` is `[N, D]` (any further dimensions are flattened); rows are L2-normalised
    first and compared with their mean `mu`. Step `k` picks, among the rows not yet chosen,
    the row `i` minimising `||mu - (s + f_i) / k||` where `s` sums the rows chosen so far.
    Each step is one vectorised distance computation over all rows, on `features`' device.
    """
    if features.dim() < 2:
        raise ValueError(f"features must be [N, D], got shape {tuple(features.shape)}")
    total = int(features.shape[0])
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= total:
        raise ValueError(f"n must be an integer in [0, {total}] (the number of rows), got {n!r}")
    f = F.normalize(features.detach().flatten(1).to(torch.float64), dim=1)
    mu = f.mean(0)
    chosen = torch.empty(n, dtype=torch.long, device=f.device)
    taken = torch.zeros(total, dtype=torch.bool, device=f.device)
    running = torch.zeros_like(mu)
    for k in range(1, n + 1):
        dist = ((mu - (running + f) / k) ** 2).sum(1)
        dist = dist.masked_fill(taken, float("inf"))
        i = dist.argmin()
        chosen[k - 1] = i
        taken[i] = True
        running = running + f[i]
    return chosen
