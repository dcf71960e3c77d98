"""Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017).

After each experience k, EWC estimates how much each parameter matters for it, the
diagonal of the Fisher information `F_k`, and from then on adds one quadratic penalty per
past experience:

    (lambda / 2) * sum_k sum_i F_k,i (theta_i - theta*_k,i)^2

where `theta*_k` are the parameters at the end of experience k.

Cost. The sum over past experiences is kept as running sums, so a step costs the same at
experience 5 as at experience 2 (one fused quadratic form over the parameters):

    sum_k F_k (theta - theta*_k)^2 = A (theta - m)^2 + c,
    A = sum_k F_k,   m = (sum_k F_k theta*_k) / A,   c = sum_k F_k (theta*_k - m)^2

(the same as keeping `A`, `B = sum_k F_k theta*_k` and `C = sum_k F_k theta*_k^2`, but
free of the float32 cancellation in `A theta^2 - 2 B theta + C`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data.experience import Experience, TensorSet
from lifelong.strategies._params import (
    QuadraticRegularizer,
    named_trainable,
    per_sample_grad_stats,
    snapshot,
    subsample,
)
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


def nll(out: Tensor, y: Tensor) -> Tensor:
    """Per-sample negative log-likelihood of the true labels (the empirical Fisher's)."""
    return F.cross_entropy(out, y, reduction="none")


@register("ewc")
class EWC(QuadraticRegularizer):
    """Elastic Weight Consolidation: a quadratic penalty per past experience, weighted by
    the diagonal Fisher information (Kirkpatrick et al. 2017, "Overcoming catastrophic
    forgetting in neural networks").

    When to use it: no data may be stored and experiences are few, in domain- and
    task-incremental streams. Like every pure regularizer, it does little in
    class-incremental streams (one head must learn to tell apart classes never seen together).

    Hyper-parameters:
    * `lambda_` (`lambda` in specs, default 50): strength of the penalty. With plain SGD
      the penalty's curvature `lr * lambda * F` must stay below `2 (1 + momentum)`, or
      training diverges: lower `lambda` (or the learning rate) if it does.
    * `fisher_samples` (default 256): training samples of the experience (drawn at random)
      whose per-sample gradients of the true label's log-likelihood estimate the Fisher;
      more samples give a better estimate at a higher end-of-experience cost.

    Learned state: `importance_` (A, the sum of the Fishers), `anchor_` (m, the
    Fisher-weighted mean of the anchors), `names_` (the parameter of each), `offset_` (c,
    summed over parameters) and `n_experiences_` (how many penalties the sum holds).
    """

    ranges = {"lambda_": Range(ge=0), "fisher_samples": Range(ge=1)}

    def __init__(self, lambda_: float = 50.0, fisher_samples: int = 256) -> None:
        self.lambda_ = lambda_
        self.fisher_samples = fisher_samples
        self.importance_: list[Tensor] | None = None
        self.anchor_: list[Tensor] | None = None
        self.offset_ = 0.0
        self.n_experiences_ = 0

    def penalty_scale(self) -> float:
        return self.lambda_ / 2

    def fisher(self, model: nn.Module, data: TensorSet) -> list[Tensor]:
        """Diagonal empirical Fisher: mean over `data` of squared per-sample gradients of
        the true label's log-likelihood, one tensor per trainable parameter."""
        stats = per_sample_grad_stats(model, data, nll, power=2)
        return [s / max(len(data), 1) for s in stats]

    def end(self, model: nn.Module, experience: Experience) -> None:
        named = named_trainable(model)
        n = self.align(named)
        fisher = self.fisher(model, subsample(experience.train, self.fisher_samples))
        theta = snapshot([p for _, p in named])
        if self.importance_ is not None and self.anchor_ is not None:  # frozen now: no change
            fisher += [torch.zeros_like(a) for a in self.importance_[n:]]
            theta += self.anchor_[n:]
        self.consolidate(fisher, theta)
        self.n_experiences_ += 1
        self.invalidate()

    @torch.no_grad()
    def consolidate(self, fisher: list[Tensor], theta: list[Tensor]) -> None:
        """Add the penalty `F (theta' - theta)^2` of one experience to the running sums."""
        if self.importance_ is None or self.anchor_ is None:
            self.importance_, self.anchor_, self.offset_ = fisher, theta, 0.0
            return
        extra = 0.0
        importance, anchor = [], []
        for a, m, f, t in zip(self.importance_, self.anchor_, fisher, theta):
            a_new = a + f
            m_new = torch.where(a_new > 0, (a * m + f * t) / a_new.clamp_min(1e-38), t)
            # parallel-axis rule: A (x-m)^2 + F (x-t)^2 = A'(x-m')^2 + A(m-m')^2 + F(t-m')^2
            extra += float((a * (m - m_new).square() + f * (t - m_new).square()).sum())
            importance.append(a_new)
            anchor.append(m_new)
        self.importance_, self.anchor_ = importance, anchor
        self.offset_ += extra
