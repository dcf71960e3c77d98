"""Training many users' heads in one batched step, each user's loss on its own head.

The users of one update are gathered into leaf tensors `W [B, C, dim]` and `b [B, C]`,
their rows (one upload plus the user's replay memory) padded to `[B, N, dim]`. Every user
takes the same number of Adam steps; each step uses `min(batch_size, n_i)` of user `i`'s
rows, in an order drawn from that user's own seed and cycled, weighted `1/m_i` (padding
weighs 0). The loss is the sum over users of each user's mean loss plus that user's own
penalty, so the gradient of user `i`'s head depends only on user `i`'s rows, head and
state; Adam is elementwise, so its update does too: a user's new head is the same
(up to float rounding in the batched matmul) whoever else is in the batch.

Per-user strategies (`HeadRule`), written as specs joined by `+`:
`naive`, `replay(mem_size=M)`, `ewc(lambda=L)` (a quadratic penalty on the head, weighted
by the diagonal empirical Fisher of the user's past uploads), `lwf(alpha=A, temperature=T)`
(distillation of the head as it was before this update, on the classes it had learned).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lifelong.spec import format_value, parse_one, py_name, split_top_level

_PARAMS: dict[str, dict[str, float]] = {
    "naive": {},
    "replay": {"mem_size": 200.0},
    "ewc": {"lambda_": 10.0},
    "lwf": {"alpha": 1.0, "temperature": 2.0},
}


def _num(v: float) -> str:
    return format_value(int(v) if float(v).is_integer() else v)


@dataclass(frozen=True)
class HeadRule:
    """One user's continual-learning rule for their head (see the module docstring)."""

    mem_size: int = 0
    ewc_lambda: float = 0.0
    lwf_alpha: float = 0.0
    temperature: float = 2.0

    @classmethod
    def parse(cls, spec: str) -> HeadRule:
        """`"replay(mem_size=200)+ewc(lambda=10)"` -> a rule; unknown names raise."""
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"a head strategy must be a non-empty spec string, got {spec!r}")
        values: dict[str, float] = {}
        for part in split_top_level(spec, "+"):
            name, params = parse_one(part)
            if name not in _PARAMS:
                raise ValueError(
                    f"unknown head strategy {name!r} in {spec!r}; known: {', '.join(_PARAMS)}"
                )
            defaults = _PARAMS[name]
            for key, value in params.items():
                if py_name(key) not in defaults:
                    raise ValueError(f"{name} has no parameter {key!r} (in {spec!r})")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"{name}({key}=...) must be a number >= 0, got {value!r}")
            values |= {
                k: params.get("lambda" if k == "lambda_" else k, v) for k, v in defaults.items()
            }
        mem = values.get("mem_size", 0)
        if mem != int(mem):
            raise ValueError(f"replay(mem_size=...) must be an integer, got {mem!r}")
        return cls(
            mem_size=int(mem),
            ewc_lambda=float(values.get("lambda_", 0.0)),
            lwf_alpha=float(values.get("alpha", 0.0)),
            temperature=float(values.get("temperature", 2.0)) or 2.0,
        )

    @property
    def spec(self) -> str:
        """The canonical spec of this rule."""
        parts = []
        if self.mem_size:
            parts.append(f"replay(mem_size={self.mem_size})")
        if self.ewc_lambda:
            parts.append(f"ewc(lambda={_num(self.ewc_lambda)})")
        if self.lwf_alpha:
            t = "" if self.temperature == 2.0 else f",temperature={_num(self.temperature)}"
            parts.append(f"lwf(alpha={_num(self.lwf_alpha)}{t})")
        return "+".join(parts) or "naive"


@dataclass(frozen=True)
class HeadTraining:
    """Settings shared by every head of one batched update: `steps` Adam steps, each on
    `batch_size` of the user's rows (all of them when the user has fewer)."""

    steps: int = 100
    lr: float = 0.05
    batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")


@dataclass
class Batch:
    """The rows of one batched update, padded: `x [B, N, dim]`, `y [B, N]`, each user's
    row count `n [B]` and a random order of each user's rows `order [B, N]` (drawn from
    that user's own seed; padding after position `n_i`)."""

    x: Tensor
    y: Tensor
    n: Tensor
    order: Tensor

    @classmethod
    def pad(cls, xs: list[Tensor], ys: list[Tensor], seeds: list[int]) -> Batch:
        width = max(int(x.shape[0]) for x in xs)
        x = xs[0].new_zeros(len(xs), width, int(xs[0].shape[1]))
        y = torch.zeros(len(xs), width, dtype=torch.long)
        order = torch.zeros(len(xs), width, dtype=torch.long)
        for i, (xi, yi, seed) in enumerate(zip(xs, ys, seeds, strict=True)):
            k = int(xi.shape[0])
            x[i, :k], y[i, :k] = xi, yi
            order[i, :k] = torch.randperm(k, generator=torch.Generator().manual_seed(seed))
        n = torch.tensor([int(xi.shape[0]) for xi in xs])
        return cls(x, y, n, order)

    def weights(self) -> Tensor:
        """`[B, N]`: 1/n_i on user i's rows, 0 on padding (the mean over each user)."""
        valid = torch.arange(self.x.shape[1])[None, :] < self.n[:, None]
        return valid / self.n[:, None]

    def step_rows(self, step: int, size: int) -> tuple[Tensor, Tensor]:
        """Rows of step `step`: indices `[B, m]` into each user's rows (the user's order,
        cycled, `min(size, n_i)` rows a step) and their weights `[B, m]`."""
        m = min(size, int(self.x.shape[1]))
        per = torch.clamp(self.n, max=m)  # rows this user uses per step
        k = torch.arange(m)[None, :]
        pos = (step * per[:, None] + k) % self.n[:, None]
        return self.order.gather(1, pos), (k < per[:, None]) / per[:, None]


@dataclass
class Penalties:
    """Per-user penalty state of one update, stacked (absent terms are None)."""

    ewc_lambda: Tensor | None = None  # [B]
    fisher: tuple[Tensor, Tensor] | None = None  # ([B, C, dim], [B, C])
    anchor: tuple[Tensor, Tensor] | None = None
    lwf_alpha: Tensor | None = None  # [B]
    temperature: Tensor | None = None  # [B]
    old_seen: Tensor | None = None  # [B, C] classes the heads had learned before


def _lwf(logits: Tensor, teacher: Tensor, rw: Tensor, pen: Penalties) -> Tensor:
    assert pen.lwf_alpha is not None and pen.temperature is not None and pen.old_seen is not None
    t = pen.temperature[:, None, None]
    keep = pen.old_seen[:, None, :]
    target = F.log_softmax(teacher.masked_fill(~keep, -1e9) / t, dim=-1)
    pred = F.log_softmax(logits.masked_fill(~keep, -1e9) / t, dim=-1)
    kl = (target.exp() * (target - pred)).masked_fill(~keep, 0.0).sum(-1)  # [B, m]
    has_old = pen.old_seen.any(dim=1).float()
    return ((kl * rw).sum(1) * pen.lwf_alpha * t.view(-1) ** 2 * has_old).sum()


def _ewc(w: Tensor, b: Tensor, pen: Penalties) -> Tensor | None:
    if pen.fisher is None or pen.anchor is None or pen.ewc_lambda is None:
        return None
    (fw, fb), (aw, ab) = pen.fisher, pen.anchor
    quad = (fw * (w - aw) ** 2).sum((1, 2)) + (fb * (b - ab) ** 2).sum(1)
    return (pen.ewc_lambda * quad).sum() / 2


def _rows(t: Tensor, idx: Tensor) -> Tensor:
    """`t [B, N, ...]` at per-user row indices `idx [B, m]` (one `index_select` of the
    flattened rows: no `[B, m, dim]` index tensor, as `gather` would need)."""
    b, n = int(t.shape[0]), int(t.shape[1])
    flat = (idx + torch.arange(b)[:, None] * n).flatten()
    return t.reshape(b * n, *t.shape[2:]).index_select(0, flat).view(*idx.shape, *t.shape[2:])


def fit_heads(
    weight: Tensor, bias: Tensor, batch: Batch, pen: Penalties, train: HeadTraining
) -> tuple[Tensor, Tensor]:
    """Train the heads `weight [B, C, dim]`, `bias [B, C]` on `batch`; return new heads.
    Head `i` sees only row `i` of every input (see the module docstring)."""
    w = weight.detach().clone().requires_grad_(True)
    b = bias.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([w, b], lr=train.lr)
    teacher = None
    if pen.lwf_alpha is not None:
        with torch.no_grad():
            teacher = torch.baddbmm(bias.unsqueeze(1), batch.x, weight.transpose(1, 2))
    full = int(batch.n.max()) <= train.batch_size  # every row every step: no gathers
    for step in range(train.steps):
        if full:
            x, y, rw, tl = batch.x, batch.y, batch.weights(), teacher
        else:
            idx, rw = batch.step_rows(step, train.batch_size)
            x, y = _rows(batch.x, idx), batch.y.gather(1, idx)
            tl = None if teacher is None else _rows(teacher, idx)
        opt.zero_grad(set_to_none=True)
        logits = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))  # [B, m, C]
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        loss = (ce * rw.flatten()).sum()
        ewc = _ewc(w, b, pen)
        if ewc is not None:
            loss = loss + ewc
        if tl is not None:
            loss = loss + _lwf(logits, tl, rw, pen)
        loss.backward()
        opt.step()
    return w.detach(), b.detach()


@torch.no_grad()
def head_fisher(weight: Tensor, bias: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
    """Diagonal Fisher of each head on its own rows, labels drawn from the head's own
    predictions: for a linear softmax head the per-row gradient is `x (p - onehot(y))^T`,
    whose expected square over `y ~ p` is `x^2 p (1 - p)` (no per-row backward pass)."""
    p = torch.softmax(torch.baddbmm(bias.unsqueeze(1), batch.x, weight.transpose(1, 2)), dim=-1)
    var = p * (1 - p) * batch.weights()[..., None]
    return torch.einsum("bnd,bnc->bcd", batch.x**2, var), var.sum(1)
