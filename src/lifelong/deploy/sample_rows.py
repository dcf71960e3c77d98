"""The training samples a learner keeps, seen as numbered rows, whatever keeps them.

A deployment must know every place a learner holds copies of stored samples, so that a
saved version holds none of them (`lifelong.deploy.memory`) and a deleted sample leaves
each of them. `sample_rows` lists them, each as a `Rows` view: row-aligned chunks of
`(x, y, t)` tensors (written in place: zeroing or refilling a row changes the learner)
and a `drop` that removes rows from the learner, the others keeping their order.

    slot i  (strategy i)   a replay buffer `buffer_` (replay, DER, DER++, ER-ACE, GDumb);
                           GEM's per-experience memories `mem_x_[k]` (one chunk each);
                           A-GEM's memory `mem_x_` (with `mem_owner_`);
                           iCaRL's exemplars `ex_x_` (its class means are features of
                           the model, not samples, and stay)
    slot -1 (`PAST_SLOT`)  the learner's past experiences' data (`Learner.seen`), kept
                           for strategies that train on it (cumulative, joint)

A row's position is its index over the chunks in order. `unknown` names the strategies
that declare they store samples (`stores_samples`) in a form not listed here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from lifelong.memory import Buffer, HerdingBuffer, ReservoirBuffer
from lifelong.strategies.agem import AGEM
from lifelong.strategies.gem import GEM
from lifelong.strategies.icarl import ICaRL

PAST_SLOT = -1  # the slot of the learner's past data

Chunk = tuple[Tensor, Tensor, Tensor]


class Rows(ABC):
    """Row-aligned sample tensors of one part of a learner."""

    @abstractmethod
    def chunks(self) -> list[Chunk]:
        """The `(x, y, t)` chunks, in row order (views: writes reach the learner)."""

    @abstractmethod
    def drop(self, keep: Tensor) -> None:
        """Remove the rows where the bool mask `keep` (one entry per row) is False."""

    def size(self) -> int:
        return sum(len(c[1]) for c in self.chunks())

    def locate(self, positions: list[int]) -> list[tuple[Chunk, Tensor, int]]:
        """`positions` split by chunk: (chunk, the local row indices in it, the position
        of its first row)."""
        out, start = [], 0
        for c in self.chunks():
            n = len(c[1])
            local = [p - start for p in positions if start <= p < start + n]
            if local:
                idx = torch.tensor(local, dtype=torch.long, device=c[0].device)
                out.append((c, idx, start))
            start += n
        return out

    def row_bytes(self) -> list[bytes]:
        """Each row's features as float32 bytes (how the store holds a sample)."""
        out = []
        for x, _, _ in self.chunks():
            a = x.detach().to("cpu", torch.float32).contiguous().numpy()
            out += [a[i].tobytes() for i in range(len(a))]
        return out


def _split(keep: Tensor, sizes: list[int]) -> list[Tensor]:
    """`keep` cut into one mask per chunk of `sizes` rows."""
    return list(torch.split(keep.cpu(), sizes)) if sizes else []


class BufferRows(Rows):
    def __init__(self, buf: Buffer) -> None:
        self.buf = buf

    def chunks(self) -> list[Chunk]:
        b = self.buf
        if b.size_ == 0 or b.x_ is None or b.y_ is None or b.t_ is None:
            return []
        return [(b.x_[: b.size_], b.y_[: b.size_], b.t_[: b.size_])]

    def drop(self, keep: Tensor) -> None:
        drop_rows(self.buf, keep)


class ListRows(Rows):
    """GEM: one memory per past experience, in lists `mem_x_`, `mem_y_`, `mem_t_`."""

    def __init__(self, strategy: Any) -> None:
        self.s = strategy

    def chunks(self) -> list[Chunk]:
        return list(zip(self.s.mem_x_, self.s.mem_y_, self.s.mem_t_))

    def drop(self, keep: Tensor) -> None:
        masks = _split(keep, [len(y) for y in self.s.mem_y_])
        for name in ("mem_x_", "mem_y_", "mem_t_"):
            parts = getattr(self.s, name)
            setattr(self.s, name, [a[m.to(a.device)] for a, m in zip(parts, masks)])


class TensorRows(Rows):
    """One tensor per field, named `names` (x, y, t first; any further ones row-aligned)."""

    def __init__(self, strategy: Any, names: tuple[str, ...]) -> None:
        self.s, self.names = strategy, names

    def chunks(self) -> list[Chunk]:
        x, y, t = (getattr(self.s, n) for n in self.names[:3])
        return [] if x is None or y is None or t is None else [(x, y, t)]

    def drop(self, keep: Tensor) -> None:
        for name in self.names:
            a = getattr(self.s, name)
            if a is not None:
                setattr(self.s, name, a[keep.to(a.device)])


class PastRows(Rows):
    """The training data of the learner's past experiences (`Learner.seen`)."""

    def __init__(self, learner: Any) -> None:
        self.learner = learner

    def chunks(self) -> list[Chunk]:
        return [(e.train.x, e.train.y, e.train.t) for e in self.learner.seen]

    def drop(self, keep: Tensor) -> None:
        seen = self.learner.seen
        masks = _split(keep, [len(e.train) for e in seen])
        for i, (e, m) in enumerate(zip(seen, masks)):
            if not bool(m.all()):
                seen[i] = replace(e, train=e.train[m.to(e.train.x.device)])


def drop_rows(buf: Buffer, keep: Tensor) -> None:
    """Remove the buffer rows not in `keep` (a bool mask over its filled rows); the rest
    move up in order. A reservoir buffer then fills its free rows first (its count of
    samples offered becomes its size)."""
    if bool(keep.all()):
        return
    assert buf.x_ is not None and buf.y_ is not None and buf.t_ is not None
    idx = keep.nonzero().squeeze(1).to(buf.x_.device)
    k = int(idx.numel())
    arrays = [buf.x_, buf.y_, buf.t_, *buf.extras_.values()]
    if isinstance(buf, HerdingBuffer):
        arrays.append(buf.rank_)
    for a in arrays:
        a[:k] = a[idx.to(a.device)].clone()
        a[k : buf.size_] = 0
    buf.size_ = k
    if isinstance(buf, ReservoirBuffer):
        buf.seen_ = k


def _view(strategy: Any) -> Rows | None:
    buf = getattr(strategy, "buffer_", None)
    if isinstance(buf, Buffer):
        return BufferRows(buf)
    if isinstance(strategy, GEM):
        return ListRows(strategy)
    if isinstance(strategy, AGEM):
        return TensorRows(strategy, ("mem_x_", "mem_y_", "mem_t_", "mem_owner_"))
    if isinstance(strategy, ICaRL):
        return TensorRows(strategy, ("ex_x_", "ex_y_", "ex_t_"))
    return None


def sample_rows(learner: Any) -> list[tuple[int, Rows]]:
    """(slot, view) of every part of `learner` that keeps training samples."""
    out: list[tuple[int, Rows]] = []
    for i, s in enumerate(learner.strategies):
        view = _view(s)
        if view is not None:
            out.append((i, view))
    if any(getattr(s, "uses_past_data", False) for s in learner.strategies):
        out.append((PAST_SLOT, PastRows(learner)))
    return out


def unknown(learner: Any) -> list[str]:
    """Strategies that say they store samples (`stores_samples`) where `sample_rows`
    cannot see them: their saved versions may hold samples no deletion can reach."""
    return [
        s.name
        for s in learner.strategies
        if getattr(s, "stores_samples", False) and _view(s) is None
    ]
