"""`forget`: delete a subject from every place its samples live, and optionally
(`retrain=True`) its influence on the model.

The subject's samples go in one statement; their predictions, replay-memory rows and
holdout rows go with them (`ON DELETE CASCADE`); the database is compacted so the bytes
are gone from its files; the event is logged with a salted hash of the id. Saved versions
hold no sample the store holds (`lifelong.deploy.memory` strips them), so no model file
has to be rewritten; `versions_holding` names any version file that still has the bytes
(a strategy keeping samples outside a replay buffer, e.g. GEM's memory).

`retrain=True` rebuilds production without the subject: from the last version of its
lineage trained before the subject's first label, replaying the later updates' windows
(stateful updates learn their window; full retrains retrain on what they saw) without the
deleted samples. The result is a new version (kind "rebuild") that becomes production
through the gate, and the report gives what it cost."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from lifelong.deploy import data, gate, store
from lifelong.deploy.deployment import Deployment
from lifelong.deploy.lock import update_lock
from lifelong.deploy.ops import PathArg


def forget(
    path: PathArg, subject: str, *, retrain: bool = False, now: float | None = None
) -> dict[str, Any]:
    """Delete every stored sample of `subject` (see the module docstring); with
    `retrain`, also rebuild production without it. Returns the salted hash, the count
    deleted, the versions whose files still hold some of the bytes, and the rebuild's
    report (`retrain`)."""
    now = time.time() if now is None else now
    s = store.samples
    with Deployment(path) as dep:
        with store.transaction(dep.engine) as conn:
            rows = conn.execute(select(s.c.x, s.c.lseq).where(s.c.subject == subject)).all()
            conn.execute(delete(s).where(s.c.subject == subject))
            digest = dep.subject_hash(conn, subject)
            dep.log(conn, "forget", at=now, subject_hash=digest, deleted=len(rows))
        store.compact(dep.engine)
        gone = [bytes(r.x) for r in rows]
        holding = [v.name for v in _versions_on_disk(Path(path)) if _holds_any(v, gone)]
        out: dict[str, Any] = {
            "subject_hash": digest,
            "deleted": len(rows),
            "versions_holding": holding,
        }
        if retrain:
            first = min((int(r.lseq) for r in rows if r.lseq is not None), default=None)
            with dep.engine.connect() as conn:
                rules = store.get_setting(conn, "retention", {}) or {}
            if rules.get("memory") == "none":
                why = "memory: none keeps no sample: the updates that learned it cannot be replayed"
                out["retrain"] = {"rebuilt": False, "reason": why}
            else:
                with update_lock(dep.engine):
                    out["retrain"] = rebuild(dep, first, digest, now)
    return out


def _lineage(conn: Any, dep: Deployment, version: str) -> list[dict[str, Any]]:
    """`version` and its ancestors, oldest first."""
    chain = []
    name: str | None = version
    while name is not None:
        info = dep.version(conn, name)
        chain.append(info)
        name = info["parent"]
    return chain[::-1]


def _replay(
    dep: Deployment, settings: dict[str, Any], base: Any, steps: list[dict[str, Any]]
) -> tuple[Any, int]:
    """Replay `steps` (versions after `base`) from learner `base` (None: from scratch);
    the learner and the labelled samples it learned."""
    from lifelong.deploy.stateful import learn, new_learner

    learner, n = base, 0
    with dep.engine.connect() as conn:
        for v in steps:
            if v["kind"] == "stateful" and learner is not None:
                fit = data.between(conn, int(v["window_from"]), int(v["window_to"]))
            else:  # a full retrain (or no base yet): what it saw, from scratch
                learner, fit = new_learner(settings), data.retained(conn, upto=int(v["window_to"]))
            learn(learner, fit)
            n += len(fit)
    return learner, n


def rebuild(dep: Deployment, first: int | None, digest: str, now: float) -> dict[str, Any]:
    """Rebuild production without the samples deleted since it was trained (labels from
    lseq `first` on were influenced); write it as a version through the gate."""
    from lifelong.deploy.stateful import Candidate, write_version

    with dep.engine.connect() as conn:
        prod_name = dep.alias(conn, "production")
        if prod_name is None or first is None:
            return {"rebuilt": False, "reason": "production never learned from this subject"}
        chain = _lineage(conn, dep, prod_name)
        prod = chain[-1]
        if int(prod["window_to"]) < first:
            return {"rebuilt": False, "reason": "production never learned from this subject"}
        settings = dep.settings(conn)
        base_i = max((i for i, v in enumerate(chain) if int(v["window_to"]) < first), default=None)
        base = None if base_i is None else dep.load_learner(conn, chain[base_i]["id"], memory=True)
        steps = chain[(-1 if base_i is None else base_i) + 1 :]
        newest = data.holdout(conn, prod["id"])
        earlier = data.holdout(conn, prod["id"], other=True)
        sample_to = int(conn.execute(select(func.max(store.samples.c.id))).scalar() or 0)
        base_memory = [] if base_i is None else _memory_ids(conn, chain[base_i]["id"])
    plearner = _load(dep, prod["id"])
    before = {"new": gate.accuracy(plearner, newest), "earlier": gate.accuracy(plearner, earlier)}
    t0 = time.perf_counter()
    learner, n = _replay(dep, settings, base, steps)
    seconds = time.perf_counter() - t0
    if learner is None:  # nothing left to learn from: the base version is the answer
        return {"rebuilt": False, "reason": "no version before the subject and no data left"}
    with dep.engine.connect() as conn:
        fit = data.retained(conn, upto=int(prod["window_to"]))
    cand = Candidate(
        learner, "rebuild", None, fit, newest,
        earlier, seconds, (int(prod["window_from"] or 0), int(prod["window_to"])), sample_to,
        base_memory, record_holdout=False,
    )  # fmt: skip
    th = gate.check_gate(settings.get("gate"))
    out = write_version(dep, th, prod, cand, before, now)
    holdout_before = gate.accuracy(plearner, _both(newest, earlier))
    holdout_after = gate.accuracy(learner, _both(newest, earlier))
    report = {
        "rebuilt": True, "version": out["version"], "verdict": out["verdict"],
        "from": "scratch" if base_i is None else chain[base_i]["id"],
        "updates_replayed": len(steps), "samples_replayed": n, "seconds": round(seconds, 4),
        "holdout_accuracy_before": holdout_before, "holdout_accuracy_after": holdout_after,
    }  # fmt: skip
    with store.transaction(dep.engine) as conn:
        dep.log(conn, "forget_retrain", at=now, subject_hash=digest, **report)
    return report


def _both(a: data.Samples, b: data.Samples) -> data.Samples:
    import numpy as np

    if len(b) == 0:
        return a
    if len(a) == 0:
        return b
    return data.Samples(
        [*a.ids, *b.ids], np.concatenate([a.x, b.x]), np.concatenate([a.y, b.y]),
        np.concatenate([a.t, b.t]), [*a.lseq, *b.lseq],
    )  # fmt: skip


def _memory_ids(conn: Any, version: str) -> list[int]:
    from lifelong.deploy.memory import memory_ids

    return memory_ids(conn, version)


def _load(dep: Deployment, version: str) -> Any:
    with dep.engine.connect() as conn:
        return dep.load_learner(conn, version)


def _versions_on_disk(path: Path) -> list[Path]:
    root = path / "versions"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _holds_any(folder: Path, needles: list[bytes]) -> bool:
    blobs = [f.read_bytes() for f in folder.rglob("*") if f.is_file()]
    return any(n in b for n in needles for b in blobs)
