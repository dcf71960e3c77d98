"""Class-balanced buffers: an equal share of the memory per class seen.

`ClassBalancedBuffer` gives every class seen the same share of `mem_size` (classes with
fewer samples keep all of theirs, the rest is split evenly), evicting from the largest
classes when a new class arrives, as GDumb's sampler does (Prabhu et al. 2020). Within a
class the rows kept are an (approximately) uniform sample of every sample of that class
offered so far, so a class that comes back in a later experience (domain-incremental
streams) gets new samples too. `HerdingBuffer` keeps the same shares but picks each class's
rows by herding on features (Rebuffi et al. 2017, iCaRL).

One `add` handles any number of rows (a batch or a whole experience) with a few sorts: no
per-sample Python loop, and storage never grows past `mem_size` rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lifelong.memory.buffers import Buffer

#: `(x, t) -> features [N, D]`, used by herding on stored and incoming rows.
FeatureFn = Callable[[Tensor, Tensor], Tensor]


def balanced_quota(total: Tensor, mem_size: int, prefer: Tensor) -> Tensor:
    """Rows per class: as equal as possible, at most `total[k]` each, `mem_size` in all.

    The level `L` is the largest with `sum(min(total, L)) <= mem_size`; the few rows left
    over go one each to the classes above the level with the largest `prefer` (their count
    already in memory, so fewer rows move), then the lowest index.
    """
    if int(total.sum()) <= mem_size:
        return total.clone()
    k = int(total.numel())
    s = total.sort().values
    prefix = torch.cat([s.new_zeros(1), s.cumsum(0)[:-1]])
    used_at = prefix + s * (k - torch.arange(k))
    i = int((used_at <= mem_size).sum())
    level = (mem_size - int(prefix[i])) // (k - i)
    quota = total.clamp(max=level)
    left = mem_size - int(quota.sum())
    above = (total > level).nonzero().squeeze(1)
    order = torch.argsort(-prefer[above], stable=True)
    quota[above[order[:left]]] += 1
    return quota


def top_per_group(group: Tensor, keys: Tensor, quota: Tensor) -> Tensor:
    """Mask of the `quota[g]` rows with the largest `keys` within each group `g`."""
    order = torch.argsort(keys, descending=True, stable=True)
    order = order[torch.argsort(group[order], stable=True)]
    g = group[order]
    counts = torch.bincount(group, minlength=int(quota.numel()))
    start = counts.cumsum(0) - counts
    rank = torch.arange(int(group.numel())) - start[g]
    keep = torch.zeros(int(group.numel()), dtype=torch.bool)
    keep[order] = rank < quota[g]
    return keep


class ClassBalancedBuffer(Buffer):
    """An equal share of `mem_size` per class seen; evicts from the largest classes.

    Within a class, the stored rows stand for every sample of the class offered so far:
    new and stored rows compete with Efraimidis-Spirakis keys `u ** (1 / w)`, a stored row
    weighing `seen_k / stored_k` and a new row 1, which keeps each class an approximately
    uniform sample of its stream (exactly uniform while a class arrives in one `add`).
    """

    def __init__(self, mem_size: int) -> None:
        super().__init__(mem_size)
        self.class_seen_ = torch.zeros(0, dtype=torch.long)

    def add(self, x: Tensor, y: Tensor, t: Tensor, extras: dict[str, Tensor] | None = None) -> None:
        self._add(x, y, t, extras or {}, None)

    def _add(
        self,
        x: Tensor,
        y: Tensor,
        t: Tensor,
        extras: dict[str, Tensor],
        features: FeatureFn | None,
    ) -> None:
        self._check(x, y, t, extras)
        b = int(x.shape[0])
        if b and int(y.min()) < 0:
            raise ValueError(f"class labels must be >= 0, got {int(y.min())}")
        self._count(y)
        self.seen_ += b
        if self.mem_size == 0 or b == 0:
            return
        self._allocate(x, y, t, extras)
        assert self.y_ is not None
        n_old = self.size_
        cand_y = torch.cat([self.y_[:n_old].cpu(), y.cpu()])
        classes, group = torch.unique(cand_y, return_inverse=True)
        n_cls = int(classes.numel())
        old = torch.bincount(group[:n_old], minlength=n_cls)
        quota = balanced_quota(torch.bincount(group, minlength=n_cls), self.mem_size, old)
        keys = self._keys(x, t, group, classes, old, quota, features)
        keep = top_per_group(group, keys, quota)
        free = (~keep[:n_old]).nonzero().squeeze(1)
        src = keep[n_old:].nonzero().squeeze(1)
        after = int(keep.sum())
        slots = torch.cat([free, torch.arange(n_old, after)])
        self._write(slots, src, x, y, t, extras)
        self._kept(keep, slots, src)
        self.size_ = after

    def _count(self, y: Tensor) -> None:
        """Add the batch to the per-class counts of samples offered."""
        if y.numel() == 0:
            return
        counts = torch.bincount(y.cpu())
        if counts.numel() > self.class_seen_.numel():
            grown = torch.zeros(int(counts.numel()), dtype=torch.long)
            grown[: self.class_seen_.numel()] = self.class_seen_
            self.class_seen_ = grown
        self.class_seen_[: counts.numel()] += counts

    def _keys(
        self,
        x: Tensor,
        t: Tensor,
        group: Tensor,
        classes: Tensor,
        old: Tensor,
        quota: Tensor,
        features: FeatureFn | None,
    ) -> Tensor:
        """Priority of each candidate (stored rows first, then new ones): larger is kept."""
        n_old = self.size_
        seen_before = self.class_seen_[classes] - (
            torch.bincount(group[n_old:], minlength=int(classes.numel()))
        )
        weight = torch.ones(int(group.numel()), dtype=torch.float64)
        per_row = seen_before.double() / old.clamp(min=1).double()
        weight[:n_old] = per_row[group[:n_old]]
        u = torch.rand(int(group.numel()), dtype=torch.float64).clamp(min=1e-300)
        return u.log() / weight

    def _kept(self, keep: Tensor, slots: Tensor, src: Tensor) -> None:
        """Hook for subclasses: `keep` marks candidates kept; new row `src[i]` went to
        storage row `slots[i]`."""

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["class_seen"] = self.class_seen_.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.class_seen_ = state["class_seen"].clone()


class HerdingBuffer(ClassBalancedBuffer):
    """Class-balanced shares, each class's rows chosen by herding on features (iCaRL).

    `add` needs `features`, a function `(x, t) -> [N, D]` (e.g. the model's backbone).
    For a class that gets new rows, herding runs over its stored and new rows together and
    ranks them; a class whose share shrinks keeps its first-ranked rows (iCaRL's "reduce
    exemplar set"). `rank_` holds each stored row's herding rank within its class.
    """

    def __init__(self, mem_size: int) -> None:
        super().__init__(mem_size)
        self.rank_ = torch.zeros(mem_size, dtype=torch.long)
        self._new_rank = torch.zeros(0, dtype=torch.long)

    def add(
        self,
        x: Tensor,
        y: Tensor,
        t: Tensor,
        extras: dict[str, Tensor] | None = None,
        features: FeatureFn | None = None,
    ) -> None:
        """Offer rows; `features(x, t)` maps inputs to the features herding compares."""
        if features is None:
            raise ValueError("HerdingBuffer.add needs `features`, a function (x, t) -> [N, D]")
        self._add(x, y, t, extras or {}, features)

    def _keys(
        self,
        x: Tensor,
        t: Tensor,
        group: Tensor,
        classes: Tensor,
        old: Tensor,
        quota: Tensor,
        features: FeatureFn | None,
    ) -> Tensor:
        from lifelong.memory.herding import herding_select

        assert features is not None and self.x_ is not None and self.t_ is not None
        n_old = self.size_
        rank = torch.full((int(group.numel()),), 1 << 62, dtype=torch.long)
        rank[:n_old] = self.rank_[:n_old]
        for g in torch.unique(group[n_old:]).tolist():
            members = (group == g).nonzero().squeeze(1)
            stored, new = members[members < n_old], members[members >= n_old] - n_old
            dev = self.x_.device
            xs = torch.cat([self.x_[stored.to(dev)], x[new.to(x.device)].to(dev)])
            ts = torch.cat([self.t_[stored.to(dev)], t[new.to(t.device)].to(dev)])
            with torch.no_grad():
                f = features(xs, ts)
            pick = herding_select(f, int(quota[g])).cpu()
            rank[members] = 1 << 62
            rank[members[pick]] = torch.arange(int(pick.numel()))
        self._new_rank = rank
        return -rank.double()

    def _kept(self, keep: Tensor, slots: Tensor, src: Tensor) -> None:
        n_old = self.size_
        stay = keep[:n_old].nonzero().squeeze(1)
        self.rank_[stay] = self._new_rank[stay]
        self.rank_[slots] = self._new_rank[n_old + src]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["rank"] = self.rank_[: self.size_].clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rank_ = torch.zeros(self.mem_size, dtype=torch.long)
        self.rank_[: self.size_] = state["rank"]
