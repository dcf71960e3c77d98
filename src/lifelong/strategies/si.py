"""Synaptic Intelligence (Zenke, Poole & Ganguli, ICML 2017).

SI measures, online and for free, how much each parameter contributed to lowering the
loss along its training trajectory: after every optimizer step it adds

    w_i += -g_i * (theta_i(after step) - theta_i(before step))

(the path integral of the gradient `g` of the loss without SI's own penalty, as in the
paper's reference code: `p.grad` after the step, minus the penalty's gradient, which is
known in closed form). At the end of an experience the importance grows by
`Omega_i += max(0, w_i / (Delta_i^2 + xi))`, `Delta` the parameter's total move during
the experience, and the penalty becomes

    lambda * sum_i Omega_i (theta_i - theta*_i)^2,   theta* the latest parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience
from lifelong.strategies._params import QuadraticRegularizer, snapshot
from lifelong.strategies.registry import register
from lifelong.train import trainable


@register("si")
class SI(QuadraticRegularizer):
    """Synaptic Intelligence: importance from the path integral of the loss along training
    (Zenke et al. 2017, "Continual Learning Through Synaptic Intelligence").

    When to use it: like EWC (no stored data, domain- and task-incremental streams), when
    an extra pass over the data at the end of each experience is unwelcome; its
    bookkeeping is a few element-wise operations per step.

    Hyper-parameters:
    * `lambda_` (`lambda` in specs, default 10; `c` in the paper): penalty strength.
    * `xi` (default 0.1): damping of `w / (Delta^2 + xi)` for parameters that barely moved.

    Importances of one experience are clipped at zero, as in the reference code (a
    negative path integral, possible with momentum, would reward drifting away).
    Learned state: `importance_` (Omega) and `anchor_`; the running path integral is
    reset at each experience's `begin`.
    """

    keeps_penalty_grad = True

    def __init__(self, lambda_: float = 10.0, xi: float = 0.1) -> None:
        if not lambda_ >= 0:
            raise ValueError(f"si: lambda must be >= 0, got {lambda_}")
        if not xi > 0:
            raise ValueError(f"si: xi must be > 0, got {xi}")
        self.lambda_ = lambda_
        self.xi = xi
        self.importance_: list[Tensor] | None = None
        self.anchor_: list[Tensor] | None = None
        self.offset_ = 0.0
        self._start: list[Tensor] = []  # parameters at the start of the experience
        self._prev: list[Tensor] = []  # parameters after the previous step (cloned)
        self._path: list[Tensor] = []  # running path integral w

    def penalty_scale(self) -> float:
        return self.lambda_

    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        params = trainable(model)
        self._start, self._prev = snapshot(params), snapshot(params)
        self._path = [torch.zeros_like(p) for p in params]
        return model

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        params = trainable(model)
        stepped = [i for i, p in enumerate(params) if p.grad is not None]
        cur: list[Tensor] = [params[i] for i in stepped]
        prev = [self._prev[i] for i in stepped]
        path = [self._path[i] for i in stepped]
        torch._foreach_sub_(prev, cur)  # prev now holds -delta (no new tensors per step)
        grads = [p.grad for p in cur if p.grad is not None]
        torch._foreach_addcmul_(path, grads, prev)  # w += -g * delta
        if self._penalty_grad:  # count the task loss's gradient only, not SI's own penalty
            torch._foreach_addcmul_(
                path, [self._penalty_grad[i] for i in stepped], prev, value=-1.0
            )
            self._penalty_grad = []
        torch._foreach_copy_(prev, cur)

    @torch.no_grad()
    def end(self, model: nn.Module, experience: Experience) -> None:
        params = trainable(model)
        self.match_params(params)
        theta = snapshot(params)
        omega = [
            (w / ((t - s).square() + self.xi)).clamp_min(0)
            for w, t, s in zip(self._path, theta, self._start)
        ]
        if self.importance_ is None:
            self.importance_ = omega
        else:
            self.importance_ = [a + o for a, o in zip(self.importance_, omega)]
        self.anchor_ = theta
        self.invalidate()
