"""`forget`: delete a subject from every place its samples live, and optionally
(`retrain=True`) its influence on the model.

The subject's samples go in one statement; their predictions, replay-memory rows and
holdout rows go with them (`ON DELETE CASCADE`); the database is compacted so the bytes
are gone from its files; the event is logged with a salted hash of the id. Saved versions
hold no sample the store holds: every row a learner keeps (replay buffers, GEM/A-GEM
memories, iCaRL exemplars, cumulative's past data: `lifelong.deploy.sample_rows`) is
stripped at save (`lifelong.deploy.memory`), so no model file has to be rewritten. A
version whose files still hold some of the bytes (saved before that scheme) is rewritten
first, under the update lock, before anything is deleted (so a forget killed midway can
be run again): those rows zeroed (`memory.scrub`), listed in its `memory_layout` (so
training drops them), the folder replaced atomically. `versions_holding` names any
version file that still has the bytes, with the reason (`holding_reason`): a strategy
keeping samples where no row view reaches (`sample_rows.unknown`).

`retrain=True` rebuilds production without the subject: from the last version of its
lineage trained before the subject's first label, replaying the later updates' windows
(stateful updates learn their window; full retrains retrain on what they saw) without the
deleted samples. The result is a new version (kind "rebuild") that becomes production
through the gate, and the report gives what it cost."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from lifelong.deploy import data, gate, store
from lifelong.deploy.deployment import Deployment
from lifelong.deploy.lock import clean_orphans, update_lock
from lifelong.deploy.ops import PathArg
from lifelong.serialize import CheckpointError


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
        with dep.engine.connect() as conn:
            q = select(s.c.x).where(s.c.subject == subject)
            mine = {bytes(b) for b in conn.execute(q).scalars()}
        scrubbed = scrub_versions(dep, mine)
        with store.transaction(dep.engine) as conn:
            rows = conn.execute(select(s.c.x, s.c.lseq).where(s.c.subject == subject)).all()
            conn.execute(delete(s).where(s.c.subject == subject))
            digest = dep.subject_hash(conn, subject)
            dep.log(conn, "forget", at=now, subject_hash=digest, deleted=len(rows),
                    versions_rewritten=scrubbed)  # fmt: skip
        store.compact(dep.engine)
        gone = [bytes(r.x) for r in rows]
        holding = [v.name for v in _versions_on_disk(Path(path)) if _holds_any(v, gone)]
        out: dict[str, Any] = {
            "subject_hash": digest,
            "deleted": len(rows),
            "versions_rewritten": scrubbed,
            "versions_holding": holding,
        }
        if holding:
            out["holding_reason"] = {v: _why_holding(dep, v) for v in holding}
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


def scrub_versions(dep: Deployment, gone: set[bytes]) -> list[str]:
    """Rewrite each version whose files hold any of `gone` (feature bytes) without them
    (`memory.scrub`): its layout row first, then its folder (atomically), so a run killed
    in between leaves a version that trains without them and is rewritten again next
    time. Holds the update lock while it writes. Returns the versions rewritten."""
    from lifelong.deploy.memory import scrub
    from lifelong.learner import Learner

    if not gone:
        return []
    folders = [v for v in _versions_on_disk(dep.path) if _holds_any(v, list(gone))]
    if not folders:
        return []
    done = []
    with update_lock(dep.engine):
        clean_orphans(dep.engine, dep.path / "versions")  # folders a killed update left
        for folder in folders:
            if not folder.is_dir():
                continue
            with dep.engine.connect() as conn:
                info = dep.version(conn, folder.name)
            learner = Learner.load(folder)
            layout, zeroed = scrub(learner, info["memory_layout"], gone)
            if not zeroed:
                continue  # the bytes are where no row view reaches (`_why_holding`)
            with store.transaction(dep.engine) as conn:
                conn.execute(store.versions.update().where(store.versions.c.id == info["id"])
                             .values(memory_layout=json.dumps(layout)))  # fmt: skip
            learner.save(folder)
            done.append(info["id"])
    return done


def _why_holding(dep: Deployment, version: str) -> str:
    """Why `forget` could not take a subject's bytes out of `version`'s files."""
    from lifelong.deploy.sample_rows import unknown
    from lifelong.learner import Learner

    folder = dep.path / "versions" / version
    with dep.engine.connect() as conn:
        row = conn.execute(select(store.versions.c.id).where(store.versions.c.id == version))
        if row.scalar() is None:
            return (
                "a folder with no version row (left by a killed update): the next update removes it"
            )
    try:
        names = unknown(Learner.load(folder))
    except (CheckpointError, OSError, ValueError) as e:  # so it cannot be rewritten either
        return f"the version cannot be loaded ({type(e).__name__}: {e}), so it cannot be rewritten"
    if names:
        return (f"strategies {', '.join(names)} keep samples in a form lifelong.deploy.sample_rows "
                "does not know, so they cannot be removed; retrain without them or delete the "
                "version")  # fmt: skip
    return "the bytes are outside the learner's sample rows (e.g. an extra file in the folder)"


def _versions_on_disk(path: Path) -> list[Path]:
    root = path / "versions"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _holds_any(folder: Path, needles: list[bytes]) -> bool:
    blobs = [f.read_bytes() for f in folder.rglob("*") if f.is_file()]
    return any(n in b for n in needles for b in blobs)
