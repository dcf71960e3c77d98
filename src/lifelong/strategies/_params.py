"""Parameter utilities shared by the regularization strategies (EWC, online EWC, SI, MAS).

* `QuadraticRegularizer`: the penalty `scale * (sum_i w_i (theta_i - a_i)^2 + offset)` with
  an importance `w`, an anchor `a` and a constant `offset`, computed in a few fused
  `torch._foreach` kernels with a hand-written backward (`2 * scale * w * (theta - a)`), so
  its per-step cost does not depend on how many experiences came before.
* `per_sample_grad_stats`: `sum_n |d objective_n / d theta|^power` over samples, from exact
  per-sample gradients: `nn.Linear` layers use the closed form `|delta|^p.T @ |input|^p`
  (a per-sample gradient of a linear layer is the outer product `delta_n input_n^T`); every
  other parameter (task heads, convolutions) uses `torch.func` (`vmap` of `grad`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from lifelong.data.experience import TensorSet
from lifelong.strategies.base import Batch, Strategy
from lifelong.train import forward, trainable

#: per-sample objective: `(logits [B, C], labels [B]) -> [B]`
Objective = Callable[[Tensor, Tensor], Tensor]


def snapshot(params: list[nn.Parameter] | list[Tensor]) -> list[Tensor]:
    """Detached copies of `params` (never views that would follow later updates)."""
    return [p.detach().clone() for p in params]


def subsample(data: TensorSet, n: int) -> TensorSet:
    """At most `n` samples of `data`, drawn without replacement with torch's global RNG."""
    if n >= len(data):
        return data
    return data[torch.randperm(len(data))[:n].to(data.x.device)]


class _Quadratic(torch.autograd.Function):
    """`sum_i (g_i . (theta_i - a_i)) / 2` with `g = w2 * (theta - a)`, given `w2 = 2 w`.

    The forward pass already computes the gradient `g` (and puts it in `sink`, for SI); the
    backward pass hands it back: three element-wise passes and one accumulation per step,
    whatever the history.
    """

    @staticmethod
    def forward(
        ctx: Any,
        w2: list[Tensor],
        anchors: list[Tensor],
        sink: list[Tensor] | None,
        *params: Tensor,
    ) -> Tensor:
        diff = torch._foreach_sub(list(params), anchors)
        ctx.g = torch._foreach_mul(diff, w2)
        if sink is not None:
            sink[:] = ctx.g
        dots = [torch.vdot(g.flatten(), d.flatten()) for g, d in zip(ctx.g, diff)]
        return torch.stack(dots).sum() / 2

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        g = ctx.g
        del ctx.g  # let autograd accumulate into these tensors instead of copying them
        if grad_out.device.type != "cpu" or grad_out.item() != 1.0:  # 1 in the loop: skip
            g = torch._foreach_mul(g, grad_out)
        return (None, None, None, *g)


class QuadraticRegularizer(Strategy):
    """Base of the anchored quadratic penalties: `scale * (sum w (theta - a)^2 + offset)`.

    Subclasses fill `importance_` (w), `anchor_` (a) and `offset_` in `end` and say what
    `penalty_scale` is. The penalty is zero until `importance_` exists (first experience).
    The trainable parameters must keep their shapes across experiences, except a classifier
    that grows with new classes (`head="grow"`): its new rows start with zero importance.
    """

    compile_safe = True  # same results as eager on CPU (a graph break at the penalty)
    importance_: list[Tensor] | None
    anchor_: list[Tensor] | None
    offset_: float
    _weights: list[Tensor] | None = None
    _param_ids: list[int] = []
    #: whether `_penalty_grad` should keep the latest penalty's gradient (SI needs it)
    keeps_penalty_grad: ClassVar[bool] = False
    _penalty_grad: list[Tensor] = []

    def penalty_scale(self) -> float:
        """The factor in front of the quadratic form (e.g. `lambda / 2` for EWC)."""
        raise NotImplementedError

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        self._penalty_grad = []
        if self.importance_ is None or self.anchor_ is None:
            return out.new_zeros(())
        params = trainable(model)
        ids = [id(p) for p in params]
        if self._weights is None or ids != self._param_ids:  # new parameters: a grown head
            self._weights, self._param_ids = self._prepare(params), ids
        sink = self._penalty_grad if self.keeps_penalty_grad else None
        value = _Quadratic.apply(self._weights, self.anchor_, sink, *params)
        return value + self.penalty_scale() * self.offset_

    def _prepare(self, params: list[nn.Parameter]) -> list[Tensor]:
        assert self.importance_ is not None and self.anchor_ is not None
        self.match_params(params)
        check_shapes(self.name, self.importance_, params)
        return list(torch._foreach_mul(self.importance_, 2 * self.penalty_scale()))

    def match_params(self, params: list[nn.Parameter]) -> None:
        """Put the learned tensors on the parameters' device (e.g. after loading a CPU
        checkpoint) and follow a growing head: rows a parameter gained along its first
        dimension (new classes) get zero importance, so they are not held anywhere."""
        device = params[0].device
        if self.importance_ is not None and len(self.importance_) != len(params):
            return  # not a growing head: `check_shapes` names the change
        if self.importance_ is not None:
            self.importance_ = [grown(w.to(device), p) for w, p in zip(self.importance_, params)]
        if self.anchor_ is not None:
            self.anchor_ = [grown(a.to(device), p) for a, p in zip(self.anchor_, params)]

    def invalidate(self) -> None:
        """Forget the cached scaled importance (after the importance or anchor changed)."""
        self._weights = None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.invalidate()


def grown(stored: Tensor, param: Tensor) -> Tensor:
    """`stored` padded with zeros to `param`'s shape when `param` only grew along its first
    dimension (a classifier that gained classes); otherwise `stored` unchanged."""
    if stored.shape == param.shape or stored.dim() != param.dim() or stored.dim() == 0:
        return stored
    if stored.shape[1:] != param.shape[1:] or stored.shape[0] > param.shape[0]:
        return stored
    pad = stored.new_zeros((param.shape[0] - stored.shape[0], *stored.shape[1:]))
    return torch.cat([stored, pad])


def check_shapes(owner: str, stored: list[Tensor], params: list[nn.Parameter]) -> None:
    """Refuse a model whose trainable parameters changed in number or shape."""
    have = [tuple(p.shape) for p in params]
    want = [tuple(s.shape) for s in stored]
    if have != want:
        raise ValueError(
            f"{owner}: the model's trainable parameters changed from {want} to {have}; "
            "this regularizer needs parameters that keep their shapes (a growing head is fine)"
        )


def per_sample_grad_stats(
    model: nn.Module, data: TensorSet, objective: Objective, power: float, chunk: int = 256
) -> list[Tensor]:
    """`sum_n |grad_theta objective(model(x_n), y_n)|^power` for each trainable parameter.

    Evaluated in eval mode (no dropout; samples must not interact, as in batch norm's
    training mode). Returns tensors shaped like `trainable(model)`.
    """
    params = trainable(model)
    stats = [torch.zeros_like(p) for p in params]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(data), chunk):
            part = data[start : start + chunk]
            done = _linear_stats(model, part, objective, power, params, stats)
            rest = [i for i, p in enumerate(params) if id(p) not in done]
            if rest:
                _func_stats(model, part, objective, power, rest, stats, max(1, chunk // 8))
    finally:
        model.train(was_training)
    return stats


def _linear_stats(
    model: nn.Module,
    part: TensorSet,
    objective: Objective,
    power: float,
    params: list[nn.Parameter],
    stats: list[Tensor],
) -> set[int]:
    """Closed-form per-sample statistics of `nn.Linear` layers called once on 2-D inputs."""
    calls: dict[nn.Module, list[tuple[Tensor, Tensor]]] = {}

    def hook(mod: nn.Module, inp: tuple[Tensor, ...], out: Tensor) -> None:
        calls.setdefault(mod, []).append((inp[0], out))

    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.weight.requires_grad]
    handles = [m.register_forward_hook(hook) for m in linears]
    try:
        losses = objective(forward(model, part.x, part.t), part.y)
    finally:
        for h in handles:
            h.remove()
    # a parameter registered twice (tied weights) sums several outer products: not this path
    owners = [id(p) for _, p in model.named_parameters(remove_duplicate=False)]
    ok = [
        m
        for m in linears
        if len(calls.get(m, ())) == 1
        and calls[m][0][0].dim() == 2
        and owners.count(id(m.weight)) == 1
        and (m.bias is None or owners.count(id(m.bias)) == 1)
    ]
    if not ok:
        return set()
    deltas = torch.autograd.grad(losses.sum(), [calls[m][0][1] for m in ok], allow_unused=True)
    index = {id(p): i for i, p in enumerate(params)}
    done: set[int] = set()
    for m, delta in zip(ok, deltas):
        done.update(id(p) for p in (m.weight, m.bias) if p is not None)
        if delta is None:  # the layer does not reach the objective: zero gradients
            continue
        d, a = delta.abs().pow(power), calls[m][0][0].detach().abs().pow(power)
        stats[index[id(m.weight)]] += d.t() @ a
        if m.bias is not None and m.bias.requires_grad:
            stats[index[id(m.bias)]] += d.sum(0)
    return done


def _func_stats(
    model: nn.Module,
    part: TensorSet,
    objective: Objective,
    power: float,
    which: list[int],
    stats: list[Tensor],
    chunk: int,
) -> None:
    """Per-sample statistics of the parameters at positions `which`, with `torch.func`."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    chosen = {names[i] for i in which}
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in chosen}
    fixed.update(dict(model.named_buffers()))
    takes_task = getattr(model, "takes_task", False)

    def one(free: dict[str, Tensor], x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        args = (x[None], t[None]) if takes_task else (x[None],)
        out = functional_call(model, {**fixed, **free}, args)
        return objective(out, y[None]).sum()

    per_sample = vmap(grad(one), in_dims=(None, 0, 0, 0))
    free = {n: p.detach() for n, p in model.named_parameters() if n in chosen}
    for start in range(0, len(part), chunk):
        sl = slice(start, start + chunk)
        g = per_sample(free, part.x[sl], part.t[sl], part.y[sl])
        for i in which:
            stats[i] += g[names[i]].abs().pow(power).sum(0)
