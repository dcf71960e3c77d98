"""Replay memory as rows of the store, not as raw samples in a version's files.

A strategy's replay buffer (`buffer_`, a `lifelong.memory.Buffer`: replay, DER, DER++,
ER-ACE, GDumb) holds copies of training samples. When a deployment writes a version, each
buffer row that is a stored sample becomes a `memory` row (version, slot = strategy index,
position = buffer row, sample id) and its features, label and task are zeroed in the saved
tensors (`stripped`); the version's `memory_layout` lists the stripped positions. Loading
a version for training (`attach`) refills those rows from the samples; a row whose sample
was deleted since (retention, `forget`: its memory row went with it) leaves the buffer,
whose other rows move up. Rows that match no stored sample (a buffer saved by a run before
the deployment existed) stay in the version's tensors unless the retention rules forbid
keeping samples of unknown age (`max_age_days`, `memory: none`); `status` counts them.
Per-row extras (DER's stored logits) are model outputs and stay in the tensors.
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
from lifelong.memory import Buffer, HerdingBuffer, ReservoirBuffer

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


def _row_bytes(buf: Buffer) -> list[bytes]:
    assert buf.x_ is not None
    x = buf.x_[: buf.size_].detach().to("cpu", torch.float32).contiguous().numpy()
    return [x[i].tobytes() for i in range(len(x))]


def match(
    learner: Any, candidates: dict[int, bytes]
) -> tuple[list[dict[str, int]], dict[str, list[int]]]:
    """Buffer rows that are stored samples: (memory rows `{slot, position, sample_id}`,
    layout `{slot: [positions]}`). `candidates`: sample id -> float32 feature bytes of the
    samples the buffers may hold (the window learned and the parent's memory)."""
    by_bytes: dict[bytes, list[int]] = {}
    for sid, b in sorted(candidates.items(), reverse=True):
        by_bytes.setdefault(b, []).append(sid)
    rows: list[dict[str, int]] = []
    layout: dict[str, list[int]] = {}
    for slot, buf in buffers(learner):
        if buf.size_ == 0:
            continue
        taken = {k: list(v) for k, v in by_bytes.items()}
        for pos, b in enumerate(_row_bytes(buf)):
            ids = taken.get(b)
            if ids:
                rows.append({"slot": slot, "position": pos, "sample_id": ids.pop()})
                layout.setdefault(str(slot), []).append(pos)
    return rows, layout


@contextmanager
def stripped(learner: Any, layout: dict[str, list[int]]) -> Iterator[None]:
    """Within the block, the buffers' rows in `layout` hold zeros (so a save writes no
    sample that the store holds); restored afterwards."""
    kept = []
    slots = dict(buffers(learner))
    for slot, positions in layout.items():
        buf = slots[int(slot)]
        assert buf.x_ is not None and buf.y_ is not None and buf.t_ is not None
        idx = torch.tensor(positions, dtype=torch.long, device=buf.x_.device)
        parts = (buf.x_, buf.y_, buf.t_)
        kept.append((parts, idx, [a[idx].clone() for a in parts]))
        for a in parts:
            a[idx] = 0
    try:
        yield
    finally:
        for parts, idx, old in kept:
            for a, o in zip(parts, old):
                a[idx] = o


def drop_rows(buf: Buffer, keep: torch.Tensor) -> None:
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


def keep_unmatched(conn: Connection) -> bool:
    """Whether buffer rows of unknown origin may stay: not when samples may be kept only
    for a while (`max_age_days`) or not at all (`memory: none`)."""
    rules = store.get_setting(conn, "retention", {}) or {}
    return rules.get("max_age_days") is None and rules.get("memory", "keep") != "none"


def attach(dep: Any, conn: Connection, learner: Any, version: dict[str, Any]) -> dict[str, int]:
    """Refill `learner`'s buffers (loaded from `version`) from the store: stripped rows
    get their samples back, rows whose sample is gone are removed, unmatched rows stay
    if `keep_unmatched`. Returns counts: refilled, dropped, unmatched kept."""
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
    for slot, buf in buffers(learner):
        if buf.size_ == 0:
            continue
        assert buf.x_ is not None and buf.y_ is not None and buf.t_ is not None
        rows: dict[int, Any] = by_slot.get(slot, {})
        stripped_at = set(layout.get(str(slot), []))
        keep = torch.zeros(buf.size_, dtype=torch.bool)
        for pos in range(buf.size_):
            r = rows.get(pos)
            if r is not None:
                x = np.frombuffer(r.x, np.float32).reshape(tuple(buf.x_.shape[1:]))
                buf.x_[pos] = torch.from_numpy(x.copy()).to(buf.x_.device, buf.x_.dtype)
                buf.y_[pos] = int(r.label if r.label is not None else buf.y_[pos])
                buf.t_[pos] = int(r.task)
                keep[pos], counts["refilled"] = True, counts["refilled"] + 1
            elif pos not in stripped_at and keep_other:
                keep[pos], counts["unmatched"] = True, counts["unmatched"] + 1
        counts["dropped"] += int((~keep).sum())
        drop_rows(buf, keep)
    return counts


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
