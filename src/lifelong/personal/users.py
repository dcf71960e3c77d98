"""`PersonalHeads`: per-user continual learners on one shared frozen backbone's features.

Features come in as tensors `[n, dim]` (the backbone, e.g. MiniLM, runs outside and is
shared). Each user has a head (a slot of a `HeadBank`), a rule (`HeadRule`: naive, replay
with a memory quota, EWC, LwF, or a hybrid), a replay memory of at most `mem_size` rows and
their EWC state. An optional shared head (learned from pooled data with `update_shared`)
is what a new user starts from. `update({user: (x, y), ...})` trains every named user's
head in one batched step (`train.fit_heads`); `predict(x, users)` scores a batch that mixes
users in one pass. Nothing one user does changes another user's head, memory or state.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lifelong.inputs import real_tensor
from lifelong.memory.buffers import ReservoirBuffer
from lifelong.personal.heads import HeadBank
from lifelong.personal.train import Batch, HeadRule, HeadTraining, Penalties, fit_heads, head_fisher

SHARED = "*shared*"  # the shared head's slot name; never a valid user id
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")


def check_user_id(uid: object) -> str:
    """`uid` if it is a valid user id (1-128 of letters, digits, `_.@-`, not starting with
    a symbol: safe as a file name), else a `ValueError` naming it."""
    if not isinstance(uid, str) or not _USER_ID.fullmatch(uid):
        raise ValueError(
            f"user id {uid!r} is not valid: use 1-128 letters, digits or _.@- "
            "(starting with a letter or digit)"
        )
    return uid


@dataclass
class UserState:
    """One user's continual-learning state besides the head."""

    rule: HeadRule
    memory: ReservoirBuffer | None = None
    fisher: tuple[Tensor, Tensor] | None = None
    anchor: tuple[Tensor, Tensor] | None = None
    updates: int = 0
    samples: int = 0


class PersonalHeads:
    """Per-user heads of `dim` features and `n_classes` classes (integer labels).

    `strategy` is every new user's default rule (a spec, see `HeadRule`); `add_user` can
    give one user another. `shared=True` keeps a shared head that new users copy, learning
    by `shared_strategy` (default: `strategy`).
    """

    def __init__(
        self,
        dim: int,
        n_classes: int,
        *,
        strategy: str = "replay(mem_size=200)",
        shared: bool = True,
        shared_strategy: str | None = None,
        train: HeadTraining | None = None,
        seed: int = 0,
        capacity: int = 16,
    ) -> None:
        self.bank = HeadBank(dim, n_classes, capacity)
        self.default_rule = HeadRule.parse(strategy)
        self.train = train or HeadTraining()
        self.seed = int(seed)
        self.states: dict[str, UserState] = {}
        self.shared = shared
        if shared:
            rule = self.default_rule if shared_strategy is None else HeadRule.parse(shared_strategy)
            self._add(SHARED, rule, None)

    @property
    def dim(self) -> int:
        return self.bank.dim

    @property
    def n_classes(self) -> int:
        return self.bank.n_classes

    @property
    def users(self) -> list[str]:
        """User ids, in order of arrival (the shared head is not a user)."""
        return [u for u in self.states if u != SHARED]

    def __contains__(self, uid: object) -> bool:
        return uid != SHARED and uid in self.states

    def __len__(self) -> int:
        return len(self.states) - self.shared

    # -- users -----------------------------------------------------------------------------
    def _add(self, uid: str, rule: HeadRule, start: str | None) -> None:
        if start is None:
            z = torch.zeros(self.n_classes, self.dim)
            self.bank.add(uid, z, z[:, 0], torch.zeros(self.n_classes, dtype=torch.bool))
        else:
            w, b, seen = self.bank.get(self.bank.index([start]))
            self.bank.add(uid, w[0], b[0], seen[0])
        mem = ReservoirBuffer(rule.mem_size) if rule.mem_size else None
        self.states[uid] = UserState(rule, mem)

    def add_user(self, uid: str, strategy: str | None = None) -> None:
        """Add user `uid`, starting from the shared head (or from zeros without one), with
        rule `strategy` (default: the model's)."""
        check_user_id(uid)
        if uid in self.states:
            raise ValueError(f"user {uid!r} already exists")
        rule = self.default_rule if strategy is None else HeadRule.parse(strategy)
        self._add(uid, rule, SHARED if self.shared else None)

    def forget(self, uid: str) -> None:
        """Delete user `uid`: their head, replay memory and strategy state."""
        if uid not in self:
            raise KeyError(f"unknown user {uid!r}")
        self.bank.remove(uid)
        del self.states[uid]

    def nbytes(self) -> dict[str, int]:
        """Bytes held: the stacked heads, and every user's memory and EWC state."""
        state = 0
        for s in self.states.values():
            state += s.memory.nbytes() if s.memory is not None else 0
            for pair in (s.fisher, s.anchor):
                state += sum(t.numel() * t.element_size() for t in pair or ())
        return {"heads": self.bank.nbytes(), "user_state": state}

    # -- learning --------------------------------------------------------------------------
    def _check_rows(self, uid: str, x: Any, y: Any) -> tuple[Tensor, Tensor]:
        x = real_tensor(x, f"features of user {uid!r}").float()
        y = real_tensor(y, f"labels of user {uid!r}")
        if x.dim() != 2 or x.shape[1] != self.dim or x.shape[0] == 0:
            raise ValueError(
                f"features of user {uid!r} must be [n >= 1, {self.dim}], got {tuple(x.shape)}"
            )
        if y.shape != (x.shape[0],) or y.is_floating_point() and not torch.equal(y, y.round()):
            raise ValueError(f"labels of user {uid!r} must be {x.shape[0]} integers")
        if not torch.isfinite(x).all():
            raise ValueError(f"features of user {uid!r} hold NaN or infinite values")
        y = y.long()
        bad = y[(y < 0) | (y >= self.n_classes)]
        if bad.numel():
            raise ValueError(
                f"labels of user {uid!r} must be in [0, {self.n_classes}), got {int(bad[0])}"
            )
        return x, y

    def update(self, data: dict[str, tuple[Any, Any]]) -> None:
        """One upload per named user (`{user: (features, labels)}`), trained together in
        one batched step. Unknown users are added first. All inputs are checked before
        anything changes."""
        rows = {uid: self._check_rows(check_user_id(uid), *xy) for uid, xy in data.items()}
        if not rows:
            return
        for uid in rows:
            if uid not in self.states:
                self.add_user(uid)
        self._update(rows)

    def update_shared(self, x: Any, y: Any) -> None:
        """Train the shared head on pooled rows (users added later start from it)."""
        if not self.shared:
            raise ValueError("this model has no shared head (shared=False)")
        self._update({SHARED: self._check_rows("shared", x, y)})

    def _update(self, rows: dict[str, tuple[Tensor, Tensor]]) -> None:
        uids = list(rows)
        states = [self.states[u] for u in uids]
        xs, ys = [], []
        for uid, s in zip(uids, states, strict=True):
            x, y = rows[uid]
            mem = s.memory.rows() if s.memory is not None else None
            xs.append(x if mem is None else torch.cat([x, mem.x]))
            ys.append(y if mem is None else torch.cat([y, mem.y]))
        seeds = [self._user_seed(u, s.updates, "order") for u, s in zip(uids, states, strict=True)]
        batch = Batch.pad(xs, ys, seeds)
        slots = self.bank.index(uids)
        w0, b0, seen0 = self.bank.get(slots)
        pen = self._penalties(states, seen0)
        w, b = fit_heads(w0, b0, batch, pen, self.train)
        seen = seen0.clone()
        for i, (_, y) in enumerate(rows.values()):
            seen[i, y] = True
        self.bank.put(slots, w, b, seen)
        if any(s.rule.ewc_lambda for s in states):
            fw, fb = head_fisher(w, b, batch)
            for i, s in enumerate(states):
                if s.rule.ewc_lambda:
                    old = s.fisher or (torch.zeros_like(fw[i]), torch.zeros_like(fb[i]))
                    s.fisher = (old[0] + fw[i], old[1] + fb[i])
                    s.anchor = (w[i].clone(), b[i].clone())  # not views of the batch
        # each memory draws from its own seed on the CPU generator (the caller's random
        # state comes back after); `default_generator.manual_seed`, not `torch.manual_seed`,
        # which also queues seeding of every accelerator and costs ~0.2 ms a call here
        with torch.random.fork_rng(devices=[]):
            for uid, s in zip(uids, states, strict=True):
                x, y = rows[uid]
                if s.memory is not None:
                    torch.default_generator.manual_seed(self._user_seed(uid, s.updates, "memory"))
                    s.memory.add(x, y, torch.zeros_like(y))
                s.updates, s.samples = s.updates + 1, s.samples + int(y.shape[0])

    def _user_seed(self, uid: str, n: int, what: str) -> int:
        """A seed of this user's `n`-th update only (not of who else is in the batch)."""
        digest = hashlib.sha256(f"{self.seed}/{uid}/{n}/{what}".encode()).digest()
        return int.from_bytes(digest[:8], "little") & (2**63 - 1)

    def _penalties(self, states: list[UserState], seen0: Tensor) -> Penalties:
        pen = Penalties()
        if any(s.rule.ewc_lambda and s.fisher is not None for s in states):
            z = (torch.zeros(self.n_classes, self.dim), torch.zeros(self.n_classes))
            fis = [s.fisher if s.rule.ewc_lambda and s.fisher else z for s in states]
            anc = [s.anchor if s.rule.ewc_lambda and s.anchor else z for s in states]
            pen.fisher = (torch.stack([f[0] for f in fis]), torch.stack([f[1] for f in fis]))
            pen.anchor = (torch.stack([a[0] for a in anc]), torch.stack([a[1] for a in anc]))
            pen.ewc_lambda = torch.tensor([s.rule.ewc_lambda for s in states])
        if any(s.rule.lwf_alpha for s in states):
            pen.lwf_alpha = torch.tensor([s.rule.lwf_alpha for s in states])
            pen.temperature = torch.tensor([s.rule.temperature for s in states])
            pen.old_seen = seen0
        return pen

    # -- prediction ------------------------------------------------------------------------
    def _slots(self, x: Any, users: str | list[str]) -> tuple[Tensor, int | np.ndarray]:
        """`x` as float features `[n, dim]` and the slot of each row's head (one slot for
        all rows when `users` is one id)."""
        x = real_tensor(x, "features").float()
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must be [n, {self.dim}], got {tuple(x.shape)}")
        # the shared head's slot exists only with shared=True
        if isinstance(users, str):
            return x, self.bank.slot(users)
        ids = users if isinstance(users, (list, tuple)) else list(users)
        if len(ids) != x.shape[0]:
            raise ValueError(f"need one user per row ({x.shape[0]}), got {len(ids)}")
        return x, self.bank.slot_array(ids)

    @torch.no_grad()
    def logits(self, x: Any, users: str | list[str]) -> Tensor:
        """Scores `[n, C]`: row `i` by the head of `users[i]` (or of `users` for all rows);
        classes that head never learned are -inf."""
        return self.bank.masked_logits(*self._slots(x, users))

    def predict(self, x: Any, users: str | list[str]) -> Tensor:
        """Class ids, row `i` predicted by the head of `users[i]`."""
        return self.logits(x, users).argmax(dim=1)

    def predict_proba(self, x: Any, users: str | list[str]) -> Tensor:
        return torch.softmax(self.logits(x, users), dim=1)
