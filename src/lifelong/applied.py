"""Let gradient-projection methods (GEM, A-GEM) project the update SGD actually applies.

With momentum `mu` and weight decay `wd`, SGD applies `v = mu * buf + (g + wd * p)` (then
`buf = v`), not the gradient `g`. Projecting only `g` lets the velocity carry the
unprojected past gradients, and the constraint is lost (A-GEM in the class scenario: 0.205
at momentum 0.9 against 0.700 at 0). `applied_update` turns each `p.grad` into `v` for the
`grads` hooks and, after they projected it into `v'`, back into the gradient for which
the optimizer's step applies exactly `v'`: `g' = v' - mu * buf - wd * p`. Plain SGD
(no Nesterov); both step engines use it, with `torch.optim.SGD`'s momentum buffers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor


def projected_params(model: torch.nn.Module, hooks_grads: Sequence[Any]) -> list[Tensor]:
    """The parameters whose update the `grads` hooks project (none when no hook projects):
    computed once per step engine, since the trainable set is fixed within an experience."""
    if not any(getattr(s, "projects_gradients", False) for s in hooks_grads):
        return []
    return [p for p in model.parameters() if p.requires_grad]


def around_grads(
    optimizer: torch.optim.Optimizer, params: Sequence[Tensor]
) -> contextlib.AbstractContextManager[None]:
    """`applied_update` for projecting hooks, a no-op context otherwise (no cost per step)."""
    return applied_update(optimizer, params) if params else contextlib.nullcontext()


@contextlib.contextmanager
def applied_update(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> Iterator[None]:
    """Inside: `p.grad` holds the update SGD will apply; on exit, the gradient that makes
    the optimizer apply whatever `p.grad` then holds."""
    group = optimizer.param_groups[0]
    mu, wd = float(group.get("momentum", 0.0)), float(group.get("weight_decay", 0.0))
    if group.get("nesterov"):
        raise ValueError("projecting the applied update needs SGD without Nesterov momentum")
    bufs: list[Tensor | None] = []
    with torch.no_grad():
        for p in params:
            buf = optimizer.state.get(p, {}).get("momentum_buffer") if mu else None
            bufs.append(buf)
            if p.grad is None:
                continue
            if wd:
                p.grad.add_(p, alpha=wd)
            if buf is not None:
                p.grad.add_(buf, alpha=mu)
    yield
    with torch.no_grad():
        for p, buf in zip(params, bufs):
            if p.grad is None:
                continue
            if buf is not None:
                p.grad.sub_(buf, alpha=mu)
            if wd:
                p.grad.sub_(p, alpha=wd)
