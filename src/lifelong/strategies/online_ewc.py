"""Online EWC (Schwarz et al., ICML 2018, "Progress & Compress").

Instead of one penalty per past experience, online EWC keeps a single running Fisher
that decays old experiences' importance,

    F <- gamma * F + F_new,

anchored at the parameters reached at the end of the latest experience:

    (lambda / 2) * sum_i F_i (theta_i - theta*_i)^2.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lifelong.strategies.ewc import EWC
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


@register("online-ewc")
class OnlineEWC(EWC):
    """Online EWC: one decayed running Fisher, anchored at the latest parameters
    (Schwarz et al. 2018, "Progress & Compress: A scalable framework for continual
    learning").

    When to use it: long streams, where EWC's one-penalty-per-experience over-constrains
    the model and `gamma < 1` lets it forget the oldest experiences gracefully.

    Hyper-parameters:
    * `lambda_` (`lambda` in specs, default 50): strength of the penalty.
    * `gamma` (default 1.0): decay of the running Fisher in [0, 1] (1: no decay).
    * `fisher_samples` (default 256): samples per experience for the Fisher estimate.

    Learned state: `importance_` (the running Fisher), `anchor_` (the latest parameters).
    """

    ranges = {"gamma": Range(ge=0, le=1)}

    def __init__(
        self, lambda_: float = 50.0, gamma: float = 1.0, fisher_samples: int = 256
    ) -> None:
        super().__init__(lambda_=lambda_, fisher_samples=fisher_samples)
        self.gamma = gamma

    @torch.no_grad()
    def consolidate(self, fisher: list[Tensor], theta: list[Tensor]) -> None:
        """`F <- gamma F + F_new`; the anchor moves to the latest parameters."""
        if self.importance_ is None:
            self.importance_ = fisher
        else:
            self.importance_ = [self.gamma * a + f for a, f in zip(self.importance_, fisher)]
        self.anchor_ = theta
        self.offset_ = 0.0
