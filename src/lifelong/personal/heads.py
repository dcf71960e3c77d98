"""Stacked linear heads, one slot per user: weights `[capacity, classes, dim]` (each slot
laid out as an `nn.Linear` weight), biases `[capacity, classes]` and the classes each head
has learned `[capacity, classes]`.

A user's head is a slot of these tensors; reading or writing one user touches only that
slot, so one user's update leaves every other slot bit-identical. A batch that mixes users
is scored in one pass: rows are grouped by user and multiplied by the distinct users' heads
in one `torch.baddbmm` (or, when nearly every row has its own user, against its own head
gathered with `index_select`, in one `einsum`). Heads are read with `index_select`, never
with advanced indexing, which is an order of magnitude slower on the CPU here. See docs/architecture.md, "Personalization".
"""

from __future__ import annotations

import torch
from torch import Tensor


class HeadBank:
    """Linear heads of `dim` inputs and `n_classes` outputs, addressed by user id."""

    def __init__(self, dim: int, n_classes: int, capacity: int = 16) -> None:
        for name, v in (("dim", dim), ("n_classes", n_classes), ("capacity", capacity)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        self.dim, self.n_classes = dim, n_classes
        self.weight = torch.zeros(capacity, n_classes, dim)
        self.bias = torch.zeros(capacity, n_classes)
        self.seen = torch.zeros(capacity, n_classes, dtype=torch.bool)
        self.slots: dict[str, int] = {}
        self._free: list[int] = list(range(capacity - 1, -1, -1))

    def __len__(self) -> int:
        return len(self.slots)

    def __contains__(self, uid: object) -> bool:
        return uid in self.slots

    @property
    def capacity(self) -> int:
        return int(self.weight.shape[0])

    def nbytes(self) -> int:
        """Bytes held by the stacked tensors (all slots, used or free)."""
        return sum(t.numel() * t.element_size() for t in (self.weight, self.bias, self.seen))

    def reserve(self, capacity: int) -> None:
        """Grow the tensors to hold at least `capacity` heads (existing slots are kept)."""
        extra = capacity - self.capacity
        if extra <= 0:
            return
        old = self.capacity
        self.weight = torch.cat([self.weight, self.weight.new_zeros(extra, *self.weight.shape[1:])])
        self.bias = torch.cat([self.bias, self.bias.new_zeros(extra, self.n_classes)])
        self.seen = torch.cat([self.seen, self.seen.new_zeros(extra, self.n_classes)])
        self._free = list(range(capacity - 1, old - 1, -1)) + self._free

    # -- users ---------------------------------------------------------------------------
    def add(self, uid: str, weight: Tensor, bias: Tensor, seen: Tensor) -> int:
        """Give `uid` a slot holding a copy of the given head; return the slot."""
        if uid in self.slots:
            raise ValueError(f"user {uid!r} already has a head")
        if not self._free:
            self.reserve(max(16, 2 * self.capacity))
        slot = self._free.pop()
        self.slots[uid] = slot
        self.put(torch.tensor([slot]), weight[None], bias[None], seen[None])
        return slot

    def remove(self, uid: str) -> None:
        """Delete `uid`'s head: its slot is zeroed and reused by a later user."""
        slot = self.slots.pop(self._known(uid))
        self.weight[slot].zero_()
        self.bias[slot].zero_()
        self.seen[slot] = False
        self._free.append(slot)

    def _known(self, uid: str) -> str:
        if uid not in self.slots:
            raise KeyError(f"unknown user {uid!r}")
        return uid

    def index(self, uids: list[str]) -> Tensor:
        """The slots of `uids` (one per entry; unknown users raise a `KeyError` naming them)."""
        slots = self.slots
        try:
            return torch.tensor([slots[u] for u in uids], dtype=torch.long)
        except KeyError as e:
            raise KeyError(f"unknown user {e.args[0]!r}") from None

    def get(self, slots: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Copies of the heads at `slots`: weights `[k, C, dim]`, biases, seen masks."""
        return (
            self.weight.index_select(0, slots),
            self.bias.index_select(0, slots),
            self.seen.index_select(0, slots),
        )

    def put(self, slots: Tensor, weight: Tensor, bias: Tensor, seen: Tensor) -> None:
        """Write heads into `slots` (distinct); no other slot changes."""
        self.weight.index_copy_(0, slots, weight.detach().to(self.weight.dtype))
        self.bias.index_copy_(0, slots, bias.detach().to(self.bias.dtype))
        self.seen.index_copy_(0, slots, seen)

    # -- scoring ---------------------------------------------------------------------------
    def logits(self, x: Tensor, slots: Tensor) -> Tensor:
        """Row `i` of `x` `[n, dim]` scored by the head at `slots[i]`: `[n, C]`, one pass."""
        n = int(x.shape[0])
        if n == 0:
            return x.new_zeros(0, self.n_classes)
        uniq, inv, counts = torch.unique(slots, return_inverse=True, return_counts=True)
        k, m = int(uniq.numel()), int(counts.max())
        if k == 1:
            s = int(uniq[0])
            return torch.addmm(self.bias[s], x, self.weight[s].T)
        if k * m > 2 * n:  # almost one row per user: each row against its own head
            heads = self.weight.index_select(0, slots)
            return torch.einsum("nd,ncd->nc", x, heads) + self.bias.index_select(0, slots)
        order = torch.argsort(inv, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.empty_like(inv)
        pos[order] = torch.arange(n) - starts[inv[order]]
        flat = inv * m + pos  # row i's place in the [k, m] grouping
        grouped = x.new_zeros(k * m, self.dim).index_copy_(0, flat, x).view(k, m, self.dim)
        w, b = self.weight.index_select(0, uniq), self.bias.index_select(0, uniq)
        out = torch.baddbmm(b.unsqueeze(1), grouped, w.transpose(1, 2))
        return out.view(k * m, self.n_classes).index_select(0, flat)

    def masked_logits(self, x: Tensor, slots: Tensor) -> Tensor:
        """`logits` with classes a head never learned at -inf (a head that learned none
        keeps all its columns)."""
        out = self.logits(x, slots)
        seen = self.seen.index_select(0, slots)
        seen = seen | ~seen.any(dim=1, keepdim=True)
        return out.masked_fill(~seen, float("-inf"))
