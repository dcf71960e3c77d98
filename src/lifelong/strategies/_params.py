"""Parameter utilities shared by the regularization strategies (EWC, online EWC, SI, MAS).

* `QuadraticRegularizer`: the penalty `scale * (sum_i w_i (theta_i - a_i)^2 + offset)` with
  an importance `w`, an anchor `a` and a constant `offset`, computed in a few fused
  `torch._foreach` kernels with a hand-written backward (`2 * scale * w * (theta - a)`), so
  its per-step cost does not depend on how many experiences came before. Stored tensors
  are matched to parameters by name (`named_trainable`), not by position.
* `per_sample_grad_stats`: `sum_n |d objective_n / d theta|^power` over samples, from exact
  per-sample gradients: `nn.Linear` layers use the closed form `|delta|^p.T @ |input|^p`
  (a per-sample gradient of a linear layer is the outer product `delta_n input_n^T`); every
  other parameter (task heads, convolutions) uses `torch.func` (`vmap` of `grad`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from lifelong.data.experience import TensorSet
from lifelong.models.functional import forward, trainable
from lifelong.models.lora import original_name
from lifelong.strategies.base import Batch, Strategy

#: per-sample objective: `(logits [B, C], labels [B]) -> [B]`
Objective = Callable[[Tensor, Tensor], Tensor]
Fn = TypeVar("Fn", bound=Callable[..., Any])


def eager(fn: Fn) -> Fn:
    """`fn`, always run eagerly: the compiled step breaks its graph around the call (for
    bookkeeping done once per experience, not per step)."""
    return cast(Fn, torch.compiler.disable(fn))


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
    `penalty_scale` is; `align` keeps `names_`, the stable name (see `named_trainable`) of
    the parameter each stored tensor belongs to. The penalty is zero until `importance_`
    exists (first experience) and matches stored tensors to parameters by name: a
    parameter with nothing stored (a new adapter set, a new head) is not held at all, a
    stored one that is frozen now is left out (its term is a constant), and one whose shape
    changed is refused, except a classifier that grew with new classes (`head="grow"`):
    its new rows start with zero importance.
    """

    compile_safe = True  # same results as eager on CPU (a graph break at the penalty)
    importance_: list[Tensor] | None
    anchor_: list[Tensor] | None
    names_: list[str] | None = None
    offset_: float
    _weights: list[Tensor] | None = None  # 2 * scale * w of the parameters held
    _anchors: list[Tensor] = []
    _used: list[int] = []  # their positions in `trainable(model)`
    _param_ids: list[int] = []
    #: whether `_penalty_grad` should keep the latest penalty's gradient (SI needs it)
    keeps_penalty_grad: ClassVar[bool] = False
    _penalty_grad: list[Tensor] = []  # one per parameter held, in `_used`'s order

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
            self._prepare(model)
            self._param_ids = ids
        constant = out.new_zeros(()) + self.penalty_scale() * self.offset_
        if not self._used:
            return constant
        sink = self._penalty_grad if self.keeps_penalty_grad else None
        held = [params[i] for i in self._used]
        return _Quadratic.apply(self._weights, self._anchors, sink, *held) + constant

    @eager
    def _prepare(self, model: nn.Module) -> None:
        """Find the stored importance and anchor of each trainable parameter, by name
        (eagerly: once per set of parameters, not a part of the compiled step)."""
        index = self._index(named := named_trainable(model))
        self._used, weights, self._anchors = [], [], []
        for i, (name, p) in enumerate(named):
            if name in index:
                w, a = self._stored(index[name], name, p)
                self._used.append(i)
                weights.append(w)
                self._anchors.append(a)
        self._weights = list(torch._foreach_mul(weights, 2 * self.penalty_scale()))

    def _index(self, named: list[tuple[str, nn.Parameter]]) -> dict[str, int]:
        """Stored name -> position. A state saved without names followed the order of the
        trainable parameters: it takes the current ones' names."""
        if self.names_ is None and self.importance_ is not None:
            self.names_ = [n for n, _ in named][: len(self.importance_)]
        return {n: k for k, n in enumerate(self.names_ or [])}

    def _stored(self, k: int, name: str, p: Tensor) -> tuple[Tensor, Tensor]:
        """Stored importance and anchor `k` for parameter `p`: on its device, grown rows
        (new classes) padded with zeros; a changed shape is refused."""
        assert self.importance_ is not None and self.anchor_ is not None
        w = grown(self.importance_[k].to(p.device), p)
        a = grown(self.anchor_[k].to(p.device), p)
        if w.shape != p.shape or a.shape != p.shape:
            raise ValueError(
                f"{self.name}: parameter {name!r} changed from {tuple(w.shape)} to "
                f"{tuple(p.shape)}; this regularizer needs parameters that keep their "
                "shapes (a growing head is fine)"
            )
        return w, a

    def align(self, named: list[tuple[str, nn.Parameter]]) -> int:
        """Reorder the stored tensors to follow `named` (the parameters trained now), then
        the stored ones not among them; give a parameter with nothing stored zero
        importance and its current value as anchor. Returns `len(named)`: subclasses
        combine the first that many entries with the new estimates and keep the rest."""
        if self.importance_ is None or self.anchor_ is None:
            self.names_ = [n for n, _ in named]
            return len(named)
        index = self._index(named)
        importance, anchor = [], []
        for name, p in named:
            if name in index:
                w, a = self._stored(index[name], name, p)
            else:
                w, a = torch.zeros_like(p.detach()), p.detach().clone()
            importance.append(w)
            anchor.append(a)
        here = {n for n, _ in named}
        rest = [k for k, n in enumerate(self.names_ or []) if n not in here]
        self.importance_ = importance + [self.importance_[k] for k in rest]
        self.anchor_ = anchor + [self.anchor_[k] for k in rest]
        self.names_ = [n for n, _ in named] + [(self.names_ or [])[k] for k in rest]
        self.invalidate()
        return len(named)

    def invalidate(self) -> None:
        """Forget the cached scaled importance (after the importance or anchor changed)."""
        self._weights = None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.names_ = None  # a state saved before names were kept has none
        super().load_state_dict(state)
        self.invalidate()


def named_trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """`trainable(model)` with stable names: each parameter's name in the model without
    adapters (`lifelong.models.lora.original_name`), the same before and after a strategy
    wraps the model, and after a checkpoint is loaded into a rebuilt one."""
    rename = original_name(model)
    return [(rename(n), p) for n, p in model.named_parameters() if p.requires_grad]


def grown(stored: Tensor, param: Tensor) -> Tensor:
    """`stored` padded with zeros to `param`'s shape when `param` only grew along its first
    dimension (a classifier that gained classes); otherwise `stored` unchanged."""
    if stored.shape == param.shape or stored.dim() != param.dim() or stored.dim() == 0:
        return stored
    if stored.shape[1:] != param.shape[1:] or stored.shape[0] > param.shape[0]:
        return stored
    pad = stored.new_zeros((param.shape[0] - stored.shape[0], *stored.shape[1:]))
    return torch.cat([stored, pad])


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
