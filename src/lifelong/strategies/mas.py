"""Memory Aware Synapses (Aljundi et al., ECCV 2018).

MAS asks how sensitive the learned function is to each parameter, without labels: the
importance of parameter i is the mean, over the experience's inputs, of the magnitude of
the gradient of the squared L2 norm of the model's outputs,

    Omega_i += mean_n | d ||f(x_n)||_2^2 / d theta_i |,

accumulated over experiences; the penalty anchors at the latest parameters:

    lambda * sum_i Omega_i (theta_i - theta*_i)^2.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience, TensorSet
from lifelong.models.heads import MASKED_LOGIT
from lifelong.strategies._params import (
    QuadraticRegularizer,
    named_trainable,
    per_sample_grad_stats,
    snapshot,
    subsample,
)
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


def squared_norm(out: Tensor, y: Tensor) -> Tensor:
    """Per-sample squared L2 norm of the outputs (masked task-head logits count as 0)."""
    return torch.where(out > MASKED_LOGIT, out, 0.0).square().sum(1)


@register("mas")
class MAS(QuadraticRegularizer):
    """Memory Aware Synapses: unsupervised importance from the output's sensitivity to
    each parameter (Aljundi et al. 2018, "Memory Aware Synapses: Learning what (not) to
    forget").

    When to use it: as EWC, and when the importance should not depend on labels (it may
    be estimated on unlabelled data from the deployment).

    Hyper-parameters:
    * `lambda_` (`lambda` in specs, default 0.01): penalty strength (the
      importance scales with the logits' size; 0.01 suits MNIST-sized MLPs).
    * `samples` (default 256): inputs of the experience (drawn at random) whose
      per-sample gradient magnitudes are averaged into the importance.

    Learned state: `importance_` (Omega, summed over experiences), `anchor_`, `names_`.
    """

    ranges = {"lambda_": Range(ge=0), "samples": Range(ge=1)}

    def __init__(self, lambda_: float = 0.01, samples: int = 256) -> None:
        self.lambda_ = lambda_
        self.samples = samples
        self.importance_: list[Tensor] | None = None
        self.anchor_: list[Tensor] | None = None
        self.offset_ = 0.0

    def penalty_scale(self) -> float:
        return self.lambda_

    def importance(self, model: nn.Module, data: TensorSet) -> list[Tensor]:
        """Mean over `data` of per-sample |gradient| of the outputs' squared L2 norm."""
        stats = per_sample_grad_stats(model, data, squared_norm, power=1)
        return [s / max(len(data), 1) for s in stats]

    def end(self, model: nn.Module, experience: Experience) -> None:
        named = named_trainable(model)
        n = self.align(named)  # parameters not trained now keep what they have
        omega = self.importance(model, subsample(experience.train, self.samples))
        if self.importance_ is None or self.anchor_ is None:
            self.importance_, kept = omega, []
        else:
            old = self.importance_
            self.importance_ = [a + o for a, o in zip(old[:n], omega)] + old[n:]
            kept = self.anchor_[n:]
        self.anchor_ = snapshot([p for _, p in named]) + kept
        self.invalidate()
