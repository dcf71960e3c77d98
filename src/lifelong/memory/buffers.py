"""Replay buffers: preallocated storage and reservoir sampling (Vitter 1985, algorithm R).

A buffer holds at most `mem_size` rows of `(x, y, t)` plus optional per-row extras (e.g.
the logits Dark Experience Replay stores). Storage is allocated once, on the first insert,
in the source dtype and on the source device (uint8 images stay uint8), and rows are
written in place: an update never grows a tensor, so its cost does not depend on how many
experiences came before. Updates are vectorised (no per-sample Python loop); random
choices use torch's global RNG on the CPU, so a seeded run is reproducible on any device.
`mem_size=0` is valid and means "no memory": inserts are ignored and `len()` stays 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class Rows:
    """Rows read from a buffer: inputs, labels, task ids, per-row extras and their slots."""

    x: Tensor
    y: Tensor
    t: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)
    index: Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])


class Buffer:
    """Base of the replay buffers: fixed-size storage, random sampling and state.

    Subclasses decide which rows enter (`add`). Storage attributes end in `_`: `x_`, `y_`,
    `t_` and `extras_` (each `[mem_size, ...]`, `None` until the first insert), `size_`
    (rows filled) and `seen_` (samples offered so far).
    """

    def __init__(self, mem_size: int) -> None:
        if isinstance(mem_size, bool) or not isinstance(mem_size, int) or mem_size < 0:
            raise ValueError(f"mem_size must be an integer >= 0, got {mem_size!r}")
        self.mem_size = mem_size
        self.x_: Tensor | None = None
        self.y_: Tensor | None = None
        self.t_: Tensor | None = None
        self.extras_: dict[str, Tensor] = {}
        self.size_ = 0
        self.seen_ = 0

    def __len__(self) -> int:
        return self.size_

    def add(self, x: Tensor, y: Tensor, t: Tensor, extras: dict[str, Tensor] | None = None) -> None:
        """Offer a batch of samples (rows of `x`, `y`, `t` and of each extra) to the buffer."""
        raise NotImplementedError

    # -- storage -------------------------------------------------------------------------
    def nbytes(self) -> int:
        """Bytes held by the storage tensors (0 before the first insert)."""
        tensors = [self.x_, self.y_, self.t_, *self.extras_.values()]
        return sum(a.numel() * a.element_size() for a in tensors if a is not None)

    def _check(self, x: Tensor, y: Tensor, t: Tensor, extras: dict[str, Tensor]) -> None:
        n = int(x.shape[0])
        if y.shape != (n,) or t.shape != (n,) or any(int(e.shape[0]) != n for e in extras.values()):
            raise ValueError(
                f"buffer rows need x, y, t and extras with the same first dimension and 1-D "
                f"y, t; got x {tuple(x.shape)}, y {tuple(y.shape)}, t {tuple(t.shape)}, extras "
                f"{ {k: tuple(v.shape) for k, v in extras.items()} }"
            )
        if self.x_ is None:
            return
        if x.shape[1:] != self.x_.shape[1:] or set(extras) != set(self.extras_):
            raise ValueError(
                f"buffer holds x of shape {tuple(self.x_.shape[1:])} with extras "
                f"{sorted(self.extras_)}; got x {tuple(x.shape[1:])} with extras {sorted(extras)}"
            )

    def _allocate(self, x: Tensor, y: Tensor, t: Tensor, extras: dict[str, Tensor]) -> None:
        if self.x_ is not None:
            return

        def like(a: Tensor) -> Tensor:
            return torch.empty((self.mem_size, *a.shape[1:]), dtype=a.dtype, device=a.device)

        self.x_, self.y_, self.t_ = like(x), like(y), like(t)
        self.extras_ = {k: like(v) for k, v in extras.items()}

    def _write(
        self, slots: Tensor, src: Tensor, x: Tensor, y: Tensor, t: Tensor, extras: dict[str, Tensor]
    ) -> None:
        """Copy rows `src` of the given batch into storage rows `slots` (distinct, CPU)."""
        if slots.numel() == 0:
            return
        assert self.x_ is not None and self.y_ is not None and self.t_ is not None
        dev = self.x_.device
        slots, src = slots.to(dev), src.to(x.device)
        self.x_[slots] = x[src].to(dev)
        self.y_[slots] = y[src.to(y.device)].to(dev)
        self.t_[slots] = t[src.to(t.device)].to(dev)
        for k, v in extras.items():
            store = self.extras_[k]
            if v.shape[1:] != store.shape[1:]:
                raise ValueError(
                    f"extra {k!r} has rows of shape {tuple(store.shape[1:])}, "
                    f"got {tuple(v.shape[1:])} (use `widen` first)"
                )
            store[slots] = v[src.to(v.device)].to(dev, store.dtype)

    def widen(self, key: str, width: int, fill: float) -> None:
        """Grow extra `key` (2-D) to `width` columns, filling new ones with `fill`
        (stored logits when a growing head gained classes)."""
        store = self.extras_.get(key)
        if store is None or store.dim() != 2 or int(store.shape[1]) >= width:
            return
        wide = store.new_full((int(store.shape[0]), width), fill)
        wide[:, : store.shape[1]] = store
        self.extras_[key] = wide

    # -- reading -------------------------------------------------------------------------
    def get(self, index: Tensor) -> Rows:
        """The rows at storage positions `index` (a gather; no copy of the whole buffer)."""
        assert self.x_ is not None and self.y_ is not None and self.t_ is not None
        idx = index.to(self.x_.device)
        extras = {k: v[idx] for k, v in self.extras_.items()}
        return Rows(self.x_[idx], self.y_[idx], self.t_[idx], extras, idx)

    def sample(self, n: int) -> Rows | None:
        """`min(n, len(self))` distinct rows drawn at random (torch's global RNG); `None`
        (and no random number drawn) when the buffer is empty or `n` is 0."""
        if self.size_ == 0 or n <= 0:
            return None
        return self.get(torch.randperm(self.size_)[:n])

    def rows(self) -> Rows | None:
        """Every stored row (views of the storage), or `None` when empty."""
        if self.size_ == 0:
            return None
        assert self.x_ is not None and self.y_ is not None and self.t_ is not None
        n = self.size_
        extras = {k: v[:n] for k, v in self.extras_.items()}
        return Rows(self.x_[:n], self.y_[:n], self.t_[:n], extras)

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors (copies of the filled rows) and numbers; loadable with `weights_only`."""
        n = self.size_

        def cut(a: Tensor | None) -> Tensor | None:
            return None if a is None else a[:n].clone()

        return {
            "mem_size": self.mem_size,
            "size": n,
            "seen": self.seen_,
            "x": cut(self.x_),
            "y": cut(self.y_),
            "t": cut(self.t_),
            "extras": {k: v[:n].clone() for k, v in self.extras_.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (storage is reallocated to `mem_size` rows)."""
        if int(state["mem_size"]) != self.mem_size:
            raise ValueError(
                f"buffer state was saved with mem_size={state['mem_size']}, "
                f"this buffer has mem_size={self.mem_size}"
            )
        self.x_ = self.y_ = self.t_ = None
        self.extras_ = {}
        self.size_, self.seen_ = int(state["size"]), int(state["seen"])
        if state["x"] is None:
            return
        n = self.size_
        self._allocate(state["x"], state["y"], state["t"], dict(state["extras"]))
        assert self.x_ is not None and self.y_ is not None and self.t_ is not None
        self.x_[:n], self.y_[:n], self.t_[:n] = state["x"], state["y"], state["t"]
        for k, v in state["extras"].items():
            self.extras_[k][:n] = v


class ReservoirBuffer(Buffer):
    """Reservoir sampling (Vitter 1985, algorithm R): after `N` samples were offered, each
    is in the buffer with probability `mem_size / N`, whatever the order of the stream.

    A batch is handled at once: the `i`-th sample of the stream (0-based) fills slot `i`
    while the buffer is not full, and otherwise draws `j` uniform in `[0, i]` and replaces
    slot `j` if `j < mem_size`. When several samples of one batch hit the same slot, the
    last one wins, exactly as in the sequential algorithm.
    """

    def add(self, x: Tensor, y: Tensor, t: Tensor, extras: dict[str, Tensor] | None = None) -> None:
        extras = extras or {}
        self._check(x, y, t, extras)
        b = int(x.shape[0])
        if self.mem_size == 0 or b == 0:
            self.seen_ += b
            return
        self._allocate(x, y, t, extras)
        slots = self._slots(b)
        self.seen_ += b
        keep = slots < self.mem_size
        src = torch.arange(b)[keep]
        slots = slots[keep]
        # last writer wins: a stable sort keeps batch order within equal slots
        ordered, perm = torch.sort(slots, stable=True)
        last = torch.ones_like(ordered, dtype=torch.bool)
        last[:-1] = ordered[1:] != ordered[:-1]
        self._write(ordered[last], src[perm[last]], x, y, t, extras)
        self.size_ = min(self.mem_size, self.seen_)

    def _slots(self, b: int) -> Tensor:
        """Target slot of each of `b` new samples (`>= mem_size` means "not kept")."""
        pos = torch.arange(self.seen_, self.seen_ + b, dtype=torch.long)
        slots = pos.clone()
        full = pos >= self.mem_size
        n_rand = int(full.sum())
        if n_rand:
            # j uniform in [0, i]; float64 is exact far beyond any realistic stream length
            u = torch.rand(n_rand, dtype=torch.float64)
            j = (u * (pos[full] + 1).to(torch.float64)).long()
            slots[full] = torch.minimum(j, pos[full])
        return slots
