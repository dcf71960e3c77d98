"""The compiled training step (`TrainConfig(compile=True)`, `lifelong compare --compile`).

One `torch.compile`d function does the whole step of `lifelong.train.train_experience`:
forward, loss, penalties, the gradients (`torch.autograd.grad`) and the optimizer update,
written here for SGD and Adam with the same formulas as `torch.optim`. On CUDA it is
compiled with CUDA graphs (the `reduce-overhead` mode), so a small model's step is one
graph replay instead of dozens of kernel launches; on CPU with inductor's default mode
(it needs a C++ compiler). What stays eager, in the loop's order: the strategies' `batch`
hooks before the step, their `grads` hooks (then the step is two compiled parts: gradients,
hooks, update) and their `after_step` hooks after it.

Results: the same computation as the eager loop, so accuracy matrices agree closely
(inductor fuses operations, which changes float rounding in the last bits; over hundreds
of SGD steps that can move a few test predictions). Random ops in the step use the eager
random stream (`fallback_random`). After each step `p.grad` holds the step's gradients, as
after `loss.backward()`, and the optimizer's state (`momentum_buffer`, Adam's moments and
step) lives in `optimizer.state`, so checkpoints and `reset_optimizer=False` work as eager.

Which strategies may use it: those whose class sets `compile_safe = True` (see
`lifelong.strategies.base.Strategy`); with any other strategy in the hybrid, or an
optimizer other than plain SGD/Adam, the experience is trained eagerly after a warning.
Compile-safe: naive, replay, er-ace, der, derpp, agem, cumulative, joint, gdumb (der and
derpp with a graph break: their penalty inserts into the reservoir, a host-side step).
Not: gem (a quadratic program per step, solved iteratively with host synchronisation),
icarl (its loss is built from Python lists of the classes seen, a new graph per
experience), generative-replay (each step also trains the VAE eagerly in `batch`), pnn,
adapter and packnet (their `begin` changes the model or its trainable set per experience).

Each batch shape gets its graph (at most a static and a dynamic one per step function);
the gradient and optimizer buffers are kept per parameter, so CUDA graphs are not recorded
again at each experience. Compiling sets `torch._dynamo.config.trace_autograd_ops` (where
torch has it; without it the graph breaks at `torch.autograd.grad`, same results) and
raises dynamo's recompile limit to 64.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from lifelong.applied import around_grads, projected_params
from lifelong.config import TrainConfig, check_compile
from lifelong.models.functional import trainable
from lifelong.strategies.base import Batch, Hooks, Strategy, step_loss

_COMPILED: dict[tuple[str, str], Callable[..., Any]] = {}


def not_compile_safe(strategies: Sequence[Strategy]) -> list[str]:
    """Names of the strategies in a hybrid that do not allow the compiled step."""
    return [s.name for s in strategies if not s.compile_safe]


@dataclass(frozen=True)
class Update:
    """The optimizer's update rule, read from its (single) parameter group."""

    kind: str
    lr: float
    weight_decay: float
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


def update_rule(optimizer: torch.optim.Optimizer) -> Update | str:
    """The `Update` of a plain SGD or Adam optimizer, or why it is not supported."""
    if len(optimizer.param_groups) != 1:
        return "an optimizer with several parameter groups"
    g = optimizer.param_groups[0]
    flags = ("maximize", "differentiable", "fused", "capturable", "decoupled_weight_decay")
    if type(optimizer) is torch.optim.SGD and not (g["dampening"] or any(map(g.get, flags))):
        return Update("sgd", g["lr"], g["weight_decay"], g["momentum"], bool(g["nesterov"]))
    if type(optimizer) is torch.optim.Adam and not (g["amsgrad"] or any(map(g.get, flags))):
        b1, b2 = g["betas"]
        return Update("adam", g["lr"], g["weight_decay"], beta1=b1, beta2=b2, eps=g["eps"])
    options = {k: v for k, v in g.items() if k != "params"}
    return f"optimizer {type(optimizer).__name__} with {options} (expected plain SGD or Adam)"


def compiled_step(
    model: nn.Module,
    strategies: Sequence[Strategy],
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
) -> CompiledStep | None:
    """The compiled step for one experience, or None (after a warning) when a strategy of
    the hybrid or the optimizer does not allow it; the loop then trains eagerly."""
    params = trainable(model)
    device = params[0].device if params else torch.device("cpu")
    check_compile(device.type)
    unsafe = not_compile_safe(strategies)
    rule = update_rule(optimizer)
    if unsafe:
        rule = f"strategy {', '.join(unsafe)} is not compile-safe"
    if isinstance(rule, str):
        warnings.warn(f"compile=True: {rule}; training eagerly", RuntimeWarning, stacklevel=3)
        return None
    if not params:
        return None
    return CompiledStep(model, Hooks(strategies), optimizer, params, rule, cfg.precision == "bf16")


class CompiledStep:
    """The training step of one experience as compiled function(s): `step(batch)` does
    forward, loss, penalties, gradients and update, with the eager `grads` hooks between
    the gradients and the update and the `after_step` hooks after it."""

    def __init__(
        self,
        model: nn.Module,
        hooks: Hooks,
        optimizer: torch.optim.Optimizer,
        params: list[nn.Parameter],
        rule: Update,
        bf16: bool,
    ) -> None:
        self.model, self.hooks, self.params, self.rule = model, hooks, params, rule
        self.optimizer = optimizer
        self.projected = projected_params(model, hooks.grads)
        device = params[0].device.type
        self.loss_args = (
            hooks.loss[0] if hooks.loss else None,
            list(hooks.penalty),
            device if bf16 else None,
        )
        self.grads = [_buffer(p, "grad") for p in params]
        self.state = _optimizer_state(optimizer, params, rule)
        if device == "cuda":  # updated in place inside the CUDA graphs
            for t in self.grads + [t for part in self.state for t in part]:
                torch._dynamo.mark_static_address(t, guard=False)
        self.fused = _compiled("fused", device)
        self.grad_only = _compiled("grads", device)
        self.update = _compiled("update", device)

    def __call__(self, batch: Batch) -> None:
        """One training step on `batch` (the batch after the strategies' `batch` hooks)."""
        m, params, grads = self.model, self.params, self.grads
        if not self.hooks.grads:
            used = self.fused(m, *self.loss_args, params, grads, self.state, self.rule, batch)
            _set_grads(params, grads, used)
        else:
            used = self.grad_only(m, *self.loss_args, params, grads, batch)
            _set_grads(params, grads, used)
            with around_grads(self.optimizer, self.projected):
                for s in self.hooks.grads:
                    s.grads(m)
            now = [p.grad for p in params]
            self.update(params, now, self.state, self.rule, tuple(g is not None for g in now))
        for s in self.hooks.after_step:
            s.after_step(m)


def _set_grads(params: list[nn.Parameter], grads: list[Tensor], used: Sequence[bool]) -> None:
    for p, g, u in zip(params, grads, used):
        p.grad = g if u else None


def _optimizer_state(
    optimizer: torch.optim.Optimizer, params: list[nn.Parameter], rule: Update
) -> tuple[list[Tensor], ...]:
    """The optimizer's per-parameter state, created (zeros) where missing and kept in
    `optimizer.state`, so the eager optimizer and checkpoints see what the step updates.

    SGD's first step sets the momentum buffer to the gradient; `0 * momentum + gradient`
    is the same number, so zero buffers give the eager result."""
    if rule.kind == "sgd" and not rule.momentum:
        return ()
    keys = ("momentum_buffer",) if rule.kind == "sgd" else ("step", "exp_avg", "exp_avg_sq")
    for p in params:
        st = optimizer.state[p]
        for k in keys:
            if st.get(k) is None:
                st[k] = _buffer(p, k)
            elif k == "step" and st[k].device != p.device:  # counted inside the graph
                st[k] = st[k].to(p.device)
    return tuple([optimizer.state[p][k] for p in params] for k in keys)


#: Per parameter, the buffers the step updates in place (gradient, optimizer state): the
#: same tensors at every experience, so CUDA graphs are not recorded again for new ones.
_BUFFERS: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _buffer(p: Tensor, key: str) -> Tensor:
    """A zeroed buffer named `key` for parameter `p` (a float32 scalar for Adam's `step`)."""
    slots = _BUFFERS.setdefault(p, {})
    t = slots.get(key)
    if t is None:
        t = (
            torch.zeros((), dtype=torch.float32, device=p.device)
            if key == "step"
            else torch.zeros_like(p, memory_format=torch.preserve_format)
        )
        slots[key] = t
    return t.zero_()


def _compiled(name: str, device_type: str) -> Callable[..., Any]:
    """`torch.compile` of one of the step functions below, made once per device type."""
    key = (name, device_type)
    if key not in _COMPILED:
        import torch._dynamo as dynamo

        cfg = dynamo.config
        if hasattr(cfg, "trace_autograd_ops"):
            cfg.trace_autograd_ops = True
        limit = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
        setattr(cfg, limit, max(getattr(cfg, limit), 64))
        options: dict[str, str | int | bool | Callable[..., Any]] = {"fallback_random": True}
        if device_type == "cuda":
            options["triton.cudagraphs"] = True
        steps: dict[str, Callable[..., Any]] = {
            "fused": _fused_step,
            "grads": _grads_step,
            "update": _update,
        }
        _COMPILED[key] = torch.compile(steps[name], options=options)
    return _COMPILED[key]


# -- the traced functions -------------------------------------------------------------------
def _gradients(
    model: nn.Module,
    loss_hook: Strategy | None,
    penalties: list[Strategy],
    autocast: str | None,
    params: list[nn.Parameter],
    batch: Batch,
) -> tuple[Tensor | None, ...]:
    """Forward, loss and penalties (under bf16 autocast when asked), then the gradients."""
    with torch.autocast(autocast or "cpu", dtype=torch.bfloat16, enabled=autocast is not None):
        loss = step_loss(model, loss_hook, penalties, batch)
    return torch.autograd.grad(loss, params, allow_unused=True)


def _keep(grads: list[Tensor], new: Sequence[Tensor | None]) -> tuple[bool, ...]:
    """Copy the new gradients into `grads`; which parameters got one."""
    for g, n in zip(grads, new):
        if n is not None:
            g.copy_(n)
    return tuple(n is not None for n in new)


def _grads_step(
    model: nn.Module,
    loss_hook: Strategy | None,
    penalties: list[Strategy],
    autocast: str | None,
    params: list[nn.Parameter],
    grads: list[Tensor],
    batch: Batch,
) -> tuple[bool, ...]:
    """The gradients of the step, written into `grads`."""
    new = _gradients(model, loss_hook, penalties, autocast, params, batch)
    with torch.no_grad():
        return _keep(grads, new)


def _fused_step(
    model: nn.Module,
    loss_hook: Strategy | None,
    penalties: list[Strategy],
    autocast: str | None,
    params: list[nn.Parameter],
    grads: list[Tensor],
    state: tuple[list[Tensor], ...],
    rule: Update,
    batch: Batch,
) -> tuple[bool, ...]:
    """The whole step: gradients into `grads`, then the update of `params`."""
    new = _gradients(model, loss_hook, penalties, autocast, params, batch)
    with torch.no_grad():
        used = _keep(grads, new)
        _update(params, grads, state, rule, used)
    return used


@torch.no_grad()
def _update(
    params: Sequence[Tensor],
    grads: Sequence[Tensor | None],
    state: tuple[list[Tensor], ...],
    rule: Update,
    used: Sequence[bool],
) -> None:
    """The optimizer step on the parameters that got a gradient (as `torch.optim` skips
    those whose `.grad` is None)."""
    keep = [i for i, u in enumerate(used) if u]
    ps = [params[i] for i in keep]
    gs: list[Tensor] | tuple[Tensor, ...] = [g for i in keep if (g := grads[i]) is not None]
    st = [[part[i] for i in keep] for part in state]
    if rule.weight_decay:
        gs = torch._foreach_add(gs, ps, alpha=rule.weight_decay)
    if rule.kind == "adam":
        _adam(ps, gs, st, rule)
        return
    if rule.momentum:
        (bufs,) = st
        torch._foreach_mul_(bufs, rule.momentum)
        torch._foreach_add_(bufs, gs)
        gs = torch._foreach_add(gs, bufs, alpha=rule.momentum) if rule.nesterov else bufs
    torch._foreach_add_(ps, gs, alpha=-rule.lr)


def _adam(
    ps: list[Tensor], gs: list[Tensor] | tuple[Tensor, ...], st: list[list[Tensor]], rule: Update
) -> None:
    """Adam (Kingma & Ba 2015) as `torch.optim.Adam` computes it, bias corrections included."""
    steps, exp_avg, exp_avg_sq = st
    torch._foreach_add_(steps, 1)
    torch._foreach_lerp_(exp_avg, gs, 1 - rule.beta1)
    torch._foreach_mul_(exp_avg_sq, rule.beta2)
    torch._foreach_addcmul_(exp_avg_sq, gs, gs, value=1 - rule.beta2)
    for p, m, v, s in zip(ps, exp_avg, exp_avg_sq, steps):
        step_size = rule.lr / (1 - rule.beta1**s)
        denom = (v.sqrt() / (1 - rule.beta2**s).sqrt()).add_(rule.eps)
        p.sub_(m / denom * step_size)
