"""Replay memory as rows of the store, not as raw samples in a version's files.

A learner may keep copies of training samples in several places (`sample_rows`): a
strategy's replay buffer (replay, DER, DER++, ER-ACE, GDumb), GEM's and A-GEM's episodic
memories, iCaRL's exemplars, and the past experiences' data that cumulative and joint
train on. When a deployment writes a version, each such row that is a stored sample
becomes a `memory` row (version, slot = strategy index or -1 for past data, position =
row, sample id) and its features, label and task are zeroed in the saved tensors
(`stripped`); the version's `memory_layout` lists the stripped positions. Loading a
version for training (`attach`) refills those rows from the samples; a row whose sample
was deleted since (retention, `forget`: its memory row went with it) leaves the learner,
whose other rows move up. Rows that match no stored sample (a buffer saved by a run before
the deployment existed) stay in the version's tensors unless the retention rules forbid
keeping samples of unknown age (`max_age_days`, `memory: none`); `status` counts them.
`scrub` zeroes given samples' rows in a version saved with them in its files (what
`forget` does to versions written before this scheme). Per-row extras (DER's stored
logits) and iCaRL's class means are model outputs, not samples, and stay in the tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from sqlalchemy import select
from sqlalchemy.engine import Connection

from lifelong.deploy import store
from lifelong.deploy.sample_rows import Rows, drop_rows, sample_rows
from lifelong.memory import Buffer

__all__ = ["attach", "buffers", "drop_rows", "held", "match", "memory_ids", "record", "scrub",
           "stripped"]  # fmt: skip

#: what fits when no real sample may be kept (`memory: none`)
NO_MEMORY_METHODS = (
    "regularization (ewc, online_ewc, si, mas, lwf), generative replay (generative_replay) "
    "or adapters (adapter)"
)


def buffers(learner: Any) -> list[tuple[int, Buffer]]:
    """(slot, buffer) of each strategy of `learner` that keeps a replay buffer."""
    out = []
    for i, s in enumerate(learner.strategies):
        buf = getattr(s, "buffer_", None)
        if isinstance(buf, Buffer):
            out.append((i, buf))
    return out


def keeps_real_samples(strategies: list[Any]) -> list[str]:
    """Names of the strategies that keep real samples (`stores_samples`: a replay
    buffer, exemplars, a gradient memory; or past experiences' data: `uses_past_data`)."""
    return [
        s.name
        for s in strategies
        if getattr(s, "uses_past_data", False)
        or getattr(s, "stores_samples", False)
        or isinstance(getattr(s, "buffer_", None), Buffer)
        or int(getattr(s, "mem_size", 0) or 0) > 0
    ]


def held(learner: Any) -> int:
    """How many sample rows `learner` keeps, in all its parts (`sample_rows`)."""
    return sum(v.size() for _, v in sample_rows(learner))


def match(
    learner: Any, candidates: dict[int, bytes]
) -> tuple[list[dict[str, int]], dict[str, list[int]]]:
    """Rows the learner keeps that are stored samples: (memory rows `{slot, position,
    sample_id}`, layout `{slot: [positions]}`). `candidates`: sample id -> float32
    feature bytes of the samples it may hold (the data learned and the parent's memory).
    Rows with the same bytes take that sample's ids in turn; more rows than ids share
    the last one (every copy of a stored sample is stripped)."""
    by_bytes: dict[bytes, list[int]] = {}
    for sid, b in sorted(candidates.items(), reverse=True):
        by_bytes.setdefault(b, []).append(sid)
    rows: list[dict[str, int]] = []
    layout: dict[str, list[int]] = {}
    for slot, view in sample_rows(learner):
        taken = {k: list(v) for k, v in by_bytes.items()}
        for pos, b in enumerate(view.row_bytes()):
            ids = taken.get(b)
            if ids:
                sid = ids.pop() if len(ids) > 1 else ids[0]
                rows.append({"slot": slot, "position": pos, "sample_id": sid})
                layout.setdefault(str(slot), []).append(pos)
    return rows, layout


@contextmanager
def stripped(learner: Any, layout: dict[str, list[int]]) -> Iterator[None]:
    """Within the block, the rows in `layout` hold zeros (so a save writes no sample
    that the store holds); restored afterwards."""
    kept = []
    views = dict(sample_rows(learner))
    for slot, positions in layout.items():
        for parts, idx, _ in views[int(slot)].locate(positions):
            kept.append((parts, idx, [a[idx].clone() for a in parts]))
            for a in parts:
                a[idx] = 0
    try:
        yield
    finally:
        for parts, idx, old in kept:
            for a, o in zip(parts, old):
                a[idx] = o


def scrub(
    learner: Any, layout: dict[str, list[int]], gone: set[bytes]
) -> tuple[dict[str, list[int]], int]:
    """Zero, in place, the rows whose features are in `gone`; returns `layout` with their
    positions added (`attach` then drops them: their memory rows, if any, went with their
    samples) and how many rows were zeroed. What `forget` does to a version saved with
    such samples in its files."""
    out, zeroed = {k: list(v) for k, v in layout.items()}, 0
    for slot, view in sample_rows(learner):
        hit = [p for p, b in enumerate(view.row_bytes()) if b in gone]
        for parts, idx, _ in view.locate(hit):
            for a in parts:
                a[idx] = 0
        if hit:
            out[str(slot)] = sorted(set(out.get(str(slot), [])) | set(hit))
            zeroed += len(hit)
    return out, zeroed


def keep_unmatched(conn: Connection) -> bool:
    """Whether buffer rows of unknown origin may stay: not when samples may be kept only
    for a while (`max_age_days`) or not at all (`memory: none`)."""
    rules = store.get_setting(conn, "retention", {}) or {}
    return rules.get("max_age_days") is None and rules.get("memory", "keep") != "none"


def attach(dep: Any, conn: Connection, learner: Any, version: dict[str, Any]) -> dict[str, int]:
    """Refill the rows `learner` keeps (loaded from `version`) from the store: stripped
    rows get their samples back, rows whose sample is gone are removed, unmatched rows
    stay if `keep_unmatched`. Returns counts: refilled, dropped, unmatched kept."""
    m, s = store.memory, store.samples
    found = conn.execute(
        select(m.c.slot, m.c.position, s.c.x, s.c.label, s.c.task)
        .join(s, s.c.id == m.c.sample_id)
        .where(m.c.version == version["id"])
    ).all()
    by_slot: dict[int, dict[int, Any]] = {}
    for row in found:
        by_slot.setdefault(int(row.slot), {})[int(row.position)] = row
    layout = version.get("memory_layout") or {}
    keep_other = keep_unmatched(conn)
    counts = {"refilled": 0, "dropped": 0, "unmatched": 0}
    for slot, view in sample_rows(learner):
        n = view.size()
        if n == 0:
            continue
        rows: dict[int, Any] = by_slot.get(slot, {})
        _refill(view, rows)
        present, stripped_at = _mask(n, rows), _mask(n, layout.get(str(slot), []))
        keep = present | (~stripped_at & keep_other)
        counts["refilled"] += int(present.sum())
        counts["unmatched"] += int((keep & ~present).sum())
        counts["dropped"] += int((~keep).sum())
        view.drop(keep)
    return counts


def _mask(n: int, positions: Any) -> torch.Tensor:
    """A bool mask of `n` rows, True at `positions` (those beyond `n` ignored)."""
    out = torch.zeros(n, dtype=torch.bool)
    idx = [int(p) for p in positions if 0 <= int(p) < n]
    if idx:
        out[torch.tensor(idx, dtype=torch.long)] = True
    return out


def _refill(view: Rows, rows: dict[int, Any]) -> None:
    """Write the stored samples `rows` (position -> features, label, task) into `view`."""
    for (x, y, t), idx, start in view.locate(sorted(rows)):
        got = [rows[start + int(i)] for i in idx]
        feats = np.stack([np.frombuffer(r.x, np.float32) for r in got])
        x[idx] = torch.from_numpy(feats.reshape(len(got), *x.shape[1:])).to(x.device, x.dtype)
        labels = [int(r.label) if r.label is not None else int(y[i]) for r, i in zip(got, idx)]
        y[idx] = torch.tensor(labels, dtype=y.dtype, device=y.device)
        t[idx] = torch.tensor([int(r.task) for r in got], dtype=t.dtype, device=t.device)


def memory_ids(conn: Connection, version: str | None) -> list[int]:
    """The sample ids of `version`'s memory rows."""
    if version is None:
        return []
    m = store.memory
    q = select(m.c.sample_id).where(m.c.version == version)
    return [int(v) for v in conn.execute(q).scalars()]


def record(conn: Connection, version: str, rows: list[dict[str, int]]) -> None:
    """Insert `version`'s memory rows (in the caller's transaction)."""
    if rows:
        conn.execute(store.memory.insert(), [{"version": version, **r} for r in rows])
