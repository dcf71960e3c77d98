"""Stacked linear heads, one slot per user: weights `[capacity, classes, dim]` (each slot
laid out as an `nn.Linear` weight), biases `[capacity, classes]` and the classes each head
has learned `[capacity, classes]`.

A user's head is a slot of these tensors; reading or writing one user touches only that
slot, so one user's update leaves every other slot bit-identical. A batch that mixes users
is scored in one pass (`plan_groups`, then `HeadBank._grouped`): the rows' slots are
grouped in NumPy (each small step ~1 us, against ~5 us for a torch op here), as the runs
in which they arrive when a service batches requests user by user (then the rows are used
in place, no copy) or else by a stable sort; the groups are cut into equal chunks and
multiplied by their heads with `torch.baddbmm`, in cache-sized blocks. Unlearned classes
are -inf in a cached masked copy of the biases, so masking costs no op per row. Heads are
read with `index_select`, never with advanced indexing (an order of magnitude slower on
the CPU here). See docs/architecture.md, "Personalization", and benchmarks/PERSONAL.md (b).
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
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
        self._masked: tuple[tuple[Tensor, int | None, Tensor, int | None], Tensor] | None = None
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

    def index(self, uids: Sequence[str]) -> Tensor:
        """The slots of `uids` (one per entry; unknown users raise a `KeyError` naming them)."""
        return torch.from_numpy(self.slot_array(uids))

    def slot_array(self, uids: Sequence[str]) -> np.ndarray:
        """`index` as an int64 NumPy array: one C-level dict lookup per entry
        (`operator.itemgetter`), ~25 ns each here, where `torch.tensor` of a list costs
        ~100 ns an entry."""
        ids = uids if isinstance(uids, (list, tuple)) else list(uids)
        if not ids:
            return np.zeros(0, np.int64)
        try:
            got = operator.itemgetter(*ids)(self.slots)
        except KeyError as e:
            raise KeyError(f"unknown user {e.args[0]!r}") from None
        return np.fromiter(got, np.int64, len(ids)) if len(ids) > 1 else np.array([got])

    def slot(self, uid: str) -> int:
        """The slot of one user (a `KeyError` naming an unknown one)."""
        try:
            return self.slots[uid]
        except KeyError:
            raise KeyError(f"unknown user {uid!r}") from None

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
    def logits(self, x: Tensor, slots: Slots) -> Tensor:
        """Row `i` of `x` `[n, dim]` scored by the head at `slots[i]` (a tensor or array of
        `n` slots, or one slot for every row): `[n, C]`, in one pass."""
        return self._score(x, slots, self.bias)

    def masked_logits(self, x: Tensor, slots: Slots) -> Tensor:
        """`logits` with classes a head never learned at -inf (a head that learned none
        keeps all its columns): the -inf are in the biases (`masked_bias`), so masking
        costs nothing per row."""
        return self._score(x, slots, self.masked_bias())

    def masked_bias(self) -> Tensor:
        """The biases `[capacity, C]` with every class its head never learned at -inf (a
        head that learned none keeps its biases). Cached, and recomputed once the biases or
        the seen masks have changed (replaced, or written in place: their version counters
        move); never write the returned tensor."""
        key = (self.bias, _version(self.bias), self.seen, _version(self.seen))
        hit = self._masked
        if hit is not None and key[1] is not None and key[3] is not None:
            (b, vb, seen, vs), table = hit
            if b is self.bias and seen is self.seen and (vb, vs) == (key[1], key[3]):
                return table
        keep = self.seen | ~self.seen.any(dim=1, keepdim=True)
        table = self.bias.masked_fill(~keep, float("-inf"))
        self._masked = (key, table)  # holds the tensors it names: their ids stay unique
        return table

    def _score(self, x: Tensor, slots: Slots, bias: Tensor) -> Tensor:
        n = int(x.shape[0])
        if isinstance(slots, (int, np.integer)):
            return torch.addmm(bias[int(slots)], x, self.weight[int(slots)].T)
        s = slots.numpy() if isinstance(slots, Tensor) else np.asarray(slots)
        if s.shape != (n,):
            raise ValueError(f"need one slot per row ({n}), got shape {tuple(s.shape)}")
        if n == 0:
            return x.new_zeros(0, self.n_classes)
        plan = plan_groups(s.astype(np.int64, copy=False), self.n_classes)
        if plan is None:  # one user
            return torch.addmm(bias[int(s[0])], x, self.weight[int(s[0])].T)
        return self._grouped(x.contiguous(), plan, bias)

    def _grouped(self, x: Tensor, plan: Plan, bias: Tensor) -> Tensor:
        """Scores through `plan`'s chunks: `baddbmm` of `[q, m, dim]` rows against the
        chunks' heads, in blocks of at most `BLOCK_FLOATS` copied floats (heads, and rows
        when they must be regrouped), copied into a per-thread scratch buffer: a fresh
        multi-megabyte tensor costs more in page faults here than the copy itself."""
        q, m, dim, c = plan.heads.size, plan.m, self.dim, self.n_classes
        heads = torch.from_numpy(plan.heads)
        src = None if plan.src is None else torch.from_numpy(plan.src)
        per_chunk = c * dim + (0 if src is None else m * dim)
        per = max(1, BLOCK_FLOATS // per_chunk)
        # autograd keeps the copies for backward: then they must be fresh tensors
        fresh = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        buf = None if fresh else _scratch(min(q, per) * per_chunk, self.weight.dtype)
        parts = []
        for a in range(0, q, per):
            k = min(q, a + per) - a
            h = heads[a : a + k]
            idx = None if src is None else src[a * m : (a + k) * m]
            if buf is None:
                w = self.weight.index_select(0, h)
                rows = x[a * m : (a + k) * m] if idx is None else x.index_select(0, idx)
            else:
                w = torch.index_select(self.weight, 0, h, out=buf[: k * c * dim].view(k, c, dim))
                rows = x[a * m : (a + k) * m]
                if idx is not None:
                    rows = buf[k * c * dim : k * per_chunk].view(k * m, dim)
                    torch.index_select(x, 0, idx, out=rows)
            scores = torch.baddbmm(
                bias.index_select(0, h).unsqueeze(1), rows.view(k, m, dim), w.transpose(1, 2)
            )
            parts.append(scores.view(k * m, c))
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return out if plan.place is None else out.index_select(0, torch.from_numpy(plan.place))


_LOCAL = threading.local()


def _scratch(n: int, dtype: torch.dtype) -> Tensor:
    """A flat buffer of at least `n` elements, kept per thread and dtype and reused by
    every scoring call for its copies (no result aliases it: dead once a call returns)."""
    bufs: dict[torch.dtype, Tensor] = _LOCAL.__dict__.setdefault("bufs", {})
    buf = bufs.get(dtype)
    if buf is None or buf.numel() < n:
        buf = bufs[dtype] = torch.empty(n, dtype=dtype)
    return buf


Slots = Tensor | np.ndarray | int | np.integer
# 4 MiB of float32 per block: measured best of 0.25-32 MiB here (smaller: more torch ops
# per batch; larger: out of this CPU's caches); a thread's scratch buffer grows to it
BLOCK_FLOATS = 2**20


def _version(t: Tensor) -> int | None:
    """`t`'s version counter (bumped by every in-place write), None for an inference
    tensor, which has none."""
    try:
        return int(t._version)
    except RuntimeError:
        return None


@dataclass(frozen=True)
class Plan:
    """How `n` rows are laid out as `q` chunks of `m` rows, each chunk scored by one head.

    `heads[j]`: chunk `j`'s slot; `src[p]`: the row of `x` at place `p` of the `[q * m]`
    layout (None: `x` itself is the layout); `place[i]`: row `i`'s place in it (None: the
    same place). Padding places repeat some row; their scores are never read.
    """

    heads: np.ndarray
    m: int
    src: np.ndarray | None
    place: np.ndarray | None


def plan_groups(s: np.ndarray, n_classes: int) -> Plan | None:
    """The chunk layout of rows whose heads are at slots `s` (None: all one slot).

    Groups are the runs of equal slots in `s` as given (rows arriving grouped by user are
    used in place, with no copy) or, when the runs' heads would outweigh the rows (more
    than `n / n_classes` runs), the distinct slots after a stable sort: the rows are then
    copied, but each distinct head is read once, in address order (faster here even when
    every row has its own user: 6-24% measured at 1,024 and 8,192 distinct users).
    Chunks hold `m` = ceil(n / groups) rows, a group taking as many as it fills, so the
    layout never has more than `2n + groups` places however uneven the groups.
    NumPy, not torch: each of these small steps costs ~1 us instead of ~5 us.
    """
    n = int(s.size)
    cut = np.flatnonzero(s[1:] != s[:-1]) + 1
    if cut.size == 0:
        return None
    order = None
    if (cut.size + 1) * n_classes > n:  # the runs' heads outweigh the rows: sort
        # a stable sort of 16-bit keys is a radix sort: twice as fast as of int64 ones
        key = s.astype(np.uint16) if s.max() < 2**16 and s.min() >= 0 else s
        order = np.argsort(key, kind="stable")
        s = s[order]
        cut = np.flatnonzero(s[1:] != s[:-1]) + 1
    starts = np.concatenate(([0], cut))
    counts = np.diff(starts, append=n)
    m = -(-n // starts.size)
    chunks = None if counts.max() <= m else -(-counts // m)  # None: a chunk a group
    heads = s[starts] if chunks is None else np.repeat(s[starts], chunks)
    if heads.size * m == n:  # every chunk full: the layout is the rows in `order`
        if order is None:
            return Plan(heads, m, None, None)
        inverse = np.empty(n, np.int64)
        inverse[order] = np.arange(n)
        return Plan(heads, m, order, inverse)
    first = np.arange(starts.size) if chunks is None else np.cumsum(chunks) - chunks
    grouped = np.repeat(first * m - starts, counts) + np.arange(n)
    place = grouped if order is None else np.empty(n, np.int64)
    if order is not None:
        place[order] = grouped
    src = np.zeros(heads.size * m, np.int64)  # padding reads row 0; never read back
    src[place] = np.arange(n)
    return Plan(heads, m, src, place)
