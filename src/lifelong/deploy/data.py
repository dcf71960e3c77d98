"""Reading samples back from the store: a window of new labels, the retained training
data, holdouts, and the `Observation` an update policy decides on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Select, select
from sqlalchemy.engine import Connection

from lifelong.deploy import store

REFERENCE_ROWS = 2000  # inputs of each side of the drift test


@dataclass
class Samples:
    """Rows of the samples table: ids, float32 features, labels (-1: none), tasks, lseq."""

    ids: list[int]
    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    lseq: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, mask: np.ndarray) -> Samples:
        keep = np.flatnonzero(mask)
        return Samples(
            [self.ids[i] for i in keep], self.x[keep], self.y[keep], self.t[keep],
            [self.lseq[i] for i in keep],
        )  # fmt: skip


def read(conn: Connection, query: Select[Any], shape: list[int] | None = None) -> Samples:
    """The samples a query over `store.samples` selects (its where/order clauses)."""
    s = store.samples
    q = query.with_only_columns(s.c.id, s.c.x, s.c.shape, s.c.label, s.c.task, s.c.lseq)
    rows = conn.execute(q).all()
    if not rows:
        empty = np.zeros((0, *(shape or [0])), np.float32)
        return Samples([], empty, np.zeros(0, np.int64), np.zeros(0, np.int64), [])
    x = np.stack([np.frombuffer(r.x, np.float32).reshape(json.loads(r.shape)) for r in rows])
    y = np.array([-1 if r.label is None else r.label for r in rows], np.int64)
    t = np.array([r.task for r in rows], np.int64)
    lseq = [0 if r.lseq is None else int(r.lseq) for r in rows]
    return Samples([int(r.id) for r in rows], x, y, t, lseq)


def _labelled() -> Select[Any]:
    s, h = store.samples, store.holdouts
    held = select(h.c.sample_id)
    return select(s).where(s.c.lseq.is_not(None), s.c.id.not_in(held)).order_by(s.c.lseq)


def window(conn: Connection, after: int) -> Samples:
    """Labelled samples whose label arrived after `after` (lseq), not held out, in
    arrival order."""
    return read(conn, _labelled().where(store.samples.c.lseq > after))


def retained(conn: Connection, upto: int | None = None) -> Samples:
    """Every labelled sample kept that no holdout holds (up to lseq `upto`), in label
    arrival order: what a retrain from scratch learns."""
    q = _labelled()
    return read(conn, q if upto is None else q.where(store.samples.c.lseq <= upto))


def between(conn: Connection, lo: int, hi: int, exclude: set[int] | None = None) -> Samples:
    """Labelled samples with `lo <= lseq <= hi`, not held out (a past update's window)."""
    s = store.samples
    got = read(conn, _labelled().where(s.c.lseq >= lo, s.c.lseq <= hi))
    if not exclude:
        return got
    return got.take(np.array([i not in exclude for i in got.ids], bool))


def holdout(conn: Connection, window_id: str | None = None, other: bool = False) -> Samples:
    """The holdout samples of window `window_id` (or of every other window: `other`)."""
    s, h = store.samples, store.holdouts
    q = select(s).join(h, h.c.sample_id == s.c.id).where(s.c.label.is_not(None))
    if window_id is not None:
        q = q.where(h.c.window != window_id if other else h.c.window == window_id)
    return read(conn, q.order_by(s.c.id))


def inputs(conn: Connection, query: Select[Any], shape: list[int] | None) -> np.ndarray:
    """The newest `REFERENCE_ROWS` inputs a query selects, oldest first."""
    s = store.samples
    q = query.order_by(s.c.id.desc()).limit(REFERENCE_ROWS)
    got = read(conn, q, shape)
    return got.x[::-1].copy()


def reference_query(version: dict[str, Any] | None) -> Select[Any]:
    """Inputs `version` was trained on (its window of labels; none before a version)."""
    s = store.samples
    if version is None or version.get("window_from") is None:
        return select(s).where(s.c.id < 0)
    lo, hi = int(version["window_from"]), int(version["window_to"])
    return select(s).where(s.c.lseq >= lo, s.c.lseq <= hi)


def recent_query(version: dict[str, Any] | None) -> Select[Any]:
    """Inputs received since `version` was trained (ingested or predicted)."""
    s = store.samples
    after = 0 if version is None else int(version.get("sample_to") or 0)
    return select(s).where(s.c.id > after)
