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
from lifelong.strategies._params import QuadraticRegularizer, eager, named_trainable, snapshot
from lifelong.strategies.base import Batch
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


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
    Learned state: `importance_` (Omega), `anchor_` and `names_`; the running path
    integral restarts at each experience's first step.
    """

    keeps_penalty_grad = True
    _names: list[str] | None = None  # the parameters the path integral follows (by name)
    _params: list[nn.Parameter] = []

    ranges = {"lambda_": Range(ge=0), "xi": Range(gt=0)}

    def __init__(self, lambda_: float = 10.0, xi: float = 0.1) -> None:
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
        self._names = None  # the path integral starts at the experience's first step
        return model

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        if self._names is None:
            self._track(model)
        return super().penalty(model, batch, out)

    @eager
    def _track(self, model: nn.Module) -> None:
        """Start the path integral of the parameters trained now. Done at the first step,
        not in `begin`, so that a strategy whose `begin` runs later and changes the model
        (adapters) is seen whatever the hybrid's order."""
        named = named_trainable(model)
        self._names, self._params = [n for n, _ in named], [p for _, p in named]
        self._start, self._prev = snapshot(self._params), snapshot(self._params)
        self._path = [torch.zeros_like(p) for p in self._start]

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        params = self._params
        stepped = [i for i, p in enumerate(params) if p.grad is not None]
        cur: list[Tensor] = [params[i] for i in stepped]
        prev = [self._prev[i] for i in stepped]
        path = [self._path[i] for i in stepped]
        torch._foreach_sub_(prev, cur)  # prev now holds -delta (no new tensors per step)
        grads = [p.grad for p in cur if p.grad is not None]
        torch._foreach_addcmul_(path, grads, prev)  # w += -g * delta
        if self._penalty_grad:  # count the task loss's gradient only, not SI's own penalty
            at = {i: k for k, i in enumerate(stepped)}  # the penalty's `_used` -> `stepped`
            held = [(at[i], g) for i, g in zip(self._used, self._penalty_grad) if i in at]
            if held:
                torch._foreach_addcmul_(
                    [path[k] for k, _ in held],
                    [g for _, g in held],
                    [prev[k] for k, _ in held],
                    value=-1.0,
                )
            self._penalty_grad = []
        torch._foreach_copy_(prev, cur)

    @torch.no_grad()
    def end(self, model: nn.Module, experience: Experience) -> None:
        if self._names is None:  # no step this experience: nothing moved
            self._track(model)
        n = self.align(list(zip(self._names or [], self._params)))
        theta = snapshot(self._params)
        omega = [
            (w / ((t - s).square() + self.xi)).clamp_min(0)
            for w, t, s in zip(self._path, theta, self._start)
        ]
        if self.importance_ is None or self.anchor_ is None:
            self.importance_, kept = omega, []
        else:  # parameters not trained now keep what they have
            old = self.importance_
            self.importance_ = [a + o for a, o in zip(old[:n], omega)] + old[n:]
            kept = self.anchor_[n:]
        self.anchor_ = theta + kept
        self.invalidate()
