"""A-GEM: Averaged Gradient Episodic Memory (Chaudhry et al. 2019, "Efficient Lifelong
Learning with A-GEM").

GEM with one constraint instead of one per past experience: the reference gradient
`g_ref` of the loss on a random batch drawn from the whole episodic memory. When the
update `g` would increase that loss (`<g, g_ref> < 0`) it is projected onto the half-space
of `g_ref`: `g~ = g - (<g, g_ref> / <g_ref, g_ref>) g_ref`, so `<g~, g_ref> = 0`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience
from lifelong.strategies.base import Strategy
from lifelong.strategies.gem import (
    balanced_rows,
    flat_grad,
    loss_grad,
    set_flat_grad,
    trainable_params,
)
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


def agem_project(g: Tensor, g_ref: Tensor) -> Tensor:
    """A-GEM's projection: `g` itself when `<g, g_ref> >= 0`, else `g` minus its component
    along `g_ref`. Branch-free (no host synchronisation on CUDA)."""
    dot = g @ g_ref
    coef = dot.clamp(max=0) / (g_ref @ g_ref).clamp_min(torch.finfo(g.dtype).tiny)
    return g - coef * g_ref


@register("agem")
class AGEM(Strategy):
    """Averaged Gradient Episodic Memory (Chaudhry et al. 2019).

    * `mem_size`: samples stored in total, shared equally by the experiences seen so far
      (each keeps a class-balanced random subset of its training data).
    * `sample_size`: rows of the random memory batch that gives the reference gradient at
      each step (256, as in the paper; smaller is cheaper and weaker).

    Cost: one extra forward/backward over `sample_size` memory rows per step. The projection
    constrains the step only if it is applied to the step: with SGD momentum, the update is
    the velocity, so the loop hands `grads` the update SGD will apply (momentum and weight
    decay included) and steps with the projected one (`lifelong.applied`); projecting the
    gradient alone let momentum undo the constraint (class scenario, momentum 0.9: 0.205,
    little better than naive, against 0.704 now). Adam is refused (`projects_gradients`).
    """

    stores_samples = True
    projects_gradients = True

    compile_safe = True

    ranges = {"mem_size": Range(ge=1), "sample_size": Range(ge=1)}

    def __init__(self, mem_size: int = 500, sample_size: int = 256) -> None:
        self.mem_size = mem_size
        self.sample_size = sample_size
        self.mem_x_: Tensor | None = None
        self.mem_y_: Tensor | None = None
        self.mem_t_: Tensor | None = None
        self.mem_owner_: Tensor | None = None  # index of the experience each row came from
        self.n_experiences_ = 0

    def _stored(self) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """The memory `(x, y, t, owner)`, or `None` before the first experience ends."""
        if self.mem_x_ is None or self.mem_y_ is None or self.mem_t_ is None:
            return None
        if self.mem_owner_ is None:
            return None
        return self.mem_x_, self.mem_y_, self.mem_t_, self.mem_owner_

    def grads(self, model: nn.Module) -> None:
        stored = self._stored()
        if stored is None:
            return
        x, y, t, _ = stored
        idx = torch.randperm(len(y))[: self.sample_size].to(y.device)
        params = trainable_params(model)
        g_ref = loss_grad(model, params, x[idx], y[idx], t[idx])
        set_flat_grad(params, agem_project(flat_grad(params), g_ref))

    def end(self, model: nn.Module, experience: Experience) -> None:
        data = experience.train
        self.n_experiences_ += 1
        per = self.mem_size // self.n_experiences_
        new = balanced_rows(data.y, per)
        parts = [(data.x[new], data.y[new], data.t[new], torch.full_like(new, experience.index))]
        stored = self._stored()
        if stored is not None:
            keep = _first_rows_per_owner(stored[3], per)
            x, y, t, owner = stored
            parts.insert(0, (x[keep], y[keep], t[keep], owner[keep]))
        self.mem_x_, self.mem_y_, self.mem_t_, self.mem_owner_ = (
            torch.cat(list(col)) for col in zip(*parts)
        )


def _first_rows_per_owner(owner: Tensor, per: int) -> Tensor:
    """Indices of the first `per` stored rows of each past experience (rows were chosen at
    random, in round robin over classes, so a prefix is still a balanced random subset)."""
    rank = torch.zeros_like(owner)
    for o in owner.unique():
        rows = owner == o
        rank[rows] = torch.arange(int(rows.sum()), device=owner.device)
    return torch.nonzero(rank < per).flatten()
