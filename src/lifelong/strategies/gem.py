"""GEM: Gradient Episodic Memory (Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for
Continual Learning").

Each past experience keeps an equal share of an episodic memory of `mem_size` samples in
all. After every backward pass the gradient
`g` of the current loss is compared with the gradient `g_k` of the loss on each past
memory; when some `<g, g_k> < 0` (the step would increase a past loss), `g` is replaced by
the closest vector that violates no constraint. That projection is a quadratic programme
whose dual has one variable per past experience; `solve_nonneg_qp` solves it exactly with
an active-set (Lawson-Hanson) method in torch, on the gradients' device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data.experience import Experience
from lifelong.models.functional import forward
from lifelong.strategies.base import Strategy
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


def solve_nonneg_qp(Q: Tensor, c: Tensor, max_iter: int | None = None) -> Tensor:
    """Exact minimiser of `1/2 u^T Q u + c^T u` subject to `u >= 0`, for a PSD `Q` (`[K, K]`).

    Lawson & Hanson's active-set method for non-negative least squares, written on the Gram
    matrix: grow the set of free variables by the most negative gradient entry, solve the
    unconstrained problem on it, step back to the feasible region when a free variable turns
    non-positive. It terminates with the KKT conditions met (`u >= 0`, `Q u + c >= 0`,
    `u * (Q u + c) = 0`) up to rounding. Works in float64 on `Q`'s device; the free-set solve
    uses a pseudo-inverse, so singular (degenerate) `Q` is fine: then the minimiser may not
    be unique, but the objective value (and GEM's projected gradient) is.
    """
    if Q.dim() != 2 or Q.shape[0] != Q.shape[1] or c.shape != (Q.shape[0],):
        raise ValueError(
            f"expected Q [K, K] and c [K], got Q {tuple(Q.shape)} and c {tuple(c.shape)}"
        )
    k = int(Q.shape[0])
    Q, c = Q.to(torch.float64), c.to(torch.float64)
    scale = Q.diagonal().abs().max().clamp_min(1e-300) if k else Q.new_ones(())
    Q, c = Q / scale, c / scale  # the minimiser is invariant to scaling the objective
    tol = 1e-10 * max(1.0, float(c.abs().max())) if k else 0.0
    u = torch.zeros_like(c)
    free = torch.zeros(k, dtype=torch.bool, device=Q.device)
    for _ in range(max_iter if max_iter is not None else 3 * k + 10):
        w = -(Q @ u + c)  # minus the gradient: positive where increasing u lowers the objective
        w = w.masked_fill(free, -float("inf"))
        j = int(w.argmax()) if k else 0
        if not k or float(w[j]) <= tol:
            break
        free[j] = True
        u = _refine(Q, c, u, free)
        free &= u > 0
    return u.clamp_min(0)


def _refine(Q: Tensor, c: Tensor, u: Tensor, free: Tensor) -> Tensor:
    """Lawson-Hanson's inner loop: move `u` towards the optimum on the free set, stepping
    back to the boundary (and freeing no variable) while that optimum is infeasible."""
    for _ in range(int(free.sum()) + 1):
        z = _free_solution(Q, c, free)
        bad = free & (z <= 0)
        if not bool(bad.any()):
            return z
        ratio = (u / (u - z).clamp_min(1e-300)).masked_fill(~bad, float("inf"))
        alpha = ratio.min().clamp(0, 1)
        u = u + alpha * (z - u)
        u = u.masked_fill(bad & (ratio <= alpha), 0.0)
        free = free & (u > 0)
    return u


def _free_solution(Q: Tensor, c: Tensor, free: Tensor) -> Tensor:
    """Minimiser of the objective over the free variables with the others held at 0."""
    both = free[:, None] & free[None, :]
    m = torch.where(both, Q, torch.diag((~free).to(Q.dtype)))
    return (torch.linalg.pinv(m, hermitian=True) @ (-c * free)).masked_fill(~free, 0.0)


def gem_project(g: Tensor, G: Tensor, margin: float = 0.0, dots: Tensor | None = None) -> Tensor:
    """GEM's projection of gradient `g` (`[P]`) given past gradients `G` (`[K, P]`).

    Solves the dual `min_v 1/2 v^T (G G^T) v + (G g)^T v` subject to `v >= margin` exactly and
    returns `g~ = G^T v + g`, which satisfies `<g~, g_k> >= 0` for every row `g_k` (with
    `margin > 0` biasing the update towards improving the past, as in the paper). `dots` may
    pass `G @ g` when the caller already has it.
    """
    Q = (G @ G.T).double()
    b = (G @ g if dots is None else dots).double()
    u = solve_nonneg_qp(Q, b + margin * Q.sum(1))  # v = u + margin, u >= 0
    v = (u + margin).to(g.dtype)
    return torch.addmv(g, G.T, v)


def trainable_params(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer updates (`requires_grad`), in module order."""
    return [p for p in model.parameters() if p.requires_grad]


def flat_grad(params: Sequence[Tensor], out: Tensor | None = None) -> Tensor:
    """The parameters' `.grad` as one flat vector (zeros where a grad is `None`), written
    into `out` when given."""
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    return torch.cat(parts) if out is None else torch.cat(parts, out=out)


def set_flat_grad(params: Sequence[Tensor], vec: Tensor) -> None:
    """Write flat vector `vec` back into the parameters' `.grad`."""
    start = 0
    for p in params:
        n = p.numel()
        part = vec[start : start + n].view_as(p)
        if p.grad is None:
            p.grad = part.clone()
        else:
            p.grad.copy_(part)
        start += n


def loss_grad(
    model: nn.Module,
    params: Sequence[Tensor],
    x: Tensor,
    y: Tensor,
    t: Tensor,
    out: Tensor | None = None,
) -> Tensor:
    """Flat gradient of the cross-entropy on `(x, y, t)`, written into `out` when given
    (leaves `.grad` untouched)."""
    loss = F.cross_entropy(forward(model, x, t), y)
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    parts = [
        (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)
    ]
    return torch.cat(parts) if out is None else torch.cat(parts, out=out)


def balanced_rows(y: Tensor, k: int) -> Tensor:
    """`min(k, len(y))` distinct row indices, spread as evenly over the labels in `y` as their
    counts allow (round robin over classes), chosen with torch's global CPU RNG (so the
    choice is the same on every device). Returned on `y`'s device."""
    n = len(y)
    perm = torch.randperm(n)
    labels = y.detach().cpu()[perm]
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n) - starts[inverse[order]]  # position within its class
    return perm[torch.argsort(rank, stable=True)[: min(k, n)]].to(y.device)


@register("gem")
class GEM(Strategy):
    """Gradient Episodic Memory (Lopez-Paz & Ranzato 2017).

    * `mem_size` (500): samples stored in total, shared equally by the experiences seen
      so far (each keeps a random subset of its training data, balanced over its classes,
      chosen at its end; older memories shrink by keeping a prefix, which stays balanced).
      Every past experience with a non-empty memory is one constraint on each update.
    * `margin`: the paper's memory strength gamma, the lower bound of the dual variables:
      0 is the plain projection, larger values favour improving past losses.

    Cost: per step one extra forward/backward per past experience over its memory; the dual
    QP has one variable per past experience and is solved exactly on the device.
    """

    stores_samples = True
    projects_gradients = True

    ranges = {"mem_size": Range(ge=1), "margin": Range(ge=0)}

    def __init__(self, mem_size: int = 500, margin: float = 0.5) -> None:
        self.mem_size = mem_size
        self.margin = margin
        self.mem_x_: list[Tensor] = []
        self.mem_y_: list[Tensor] = []
        self.mem_t_: list[Tensor] = []
        self.n_projections_ = 0

    def grads(self, model: nn.Module) -> None:
        mems = [m for m in zip(self.mem_x_, self.mem_y_, self.mem_t_) if len(m[1])]
        if not mems:
            return
        params = trainable_params(model)
        g = flat_grad(params)
        G = g.new_empty(len(mems), g.numel())
        for k, (x, y, t) in enumerate(mems):
            loss_grad(model, params, x, y, t, out=G[k])
        dots = G @ g
        if bool((dots < 0).any()):
            set_flat_grad(params, gem_project(g, G, self.margin, dots))
            self.n_projections_ += 1

    def end(self, model: nn.Module, experience: Experience) -> None:
        k = len(self.mem_x_) + 1  # experiences sharing the memory, this one included
        quota = [len(range(i, self.mem_size, k)) for i in range(k)]  # sums to mem_size
        for i, q in enumerate(quota[:-1]):
            self.mem_x_[i], self.mem_y_[i] = self.mem_x_[i][:q], self.mem_y_[i][:q]
            self.mem_t_[i] = self.mem_t_[i][:q]
        data = experience.train
        idx = balanced_rows(data.y, quota[-1])
        self.mem_x_.append(data.x[idx])
        self.mem_y_.append(data.y[idx])
        self.mem_t_.append(data.t[idx])
