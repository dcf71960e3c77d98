"""`update`: what a cron job runs. The deployment's policy (`lifelong.deploy.policies`)
looks at an `Observation` built from the store and decides; the decision and its trigger
scores go to the audit log (a repeated no-op only once a day: `log_decision`; `status`
shows the latest either way). Then nothing runs, or a retrain from scratch on the retained
labelled data (a new major version, kind "full"), or a stateful update: the production
version, its replay memory refilled from the store, fine-tuned on the labels that arrived
since it was trained (the next minor: `v2.3` is the third stateful update since the full
retrain `v2.0`). Each update holds out the newest part of its window, and the candidate
becomes production only if it passes the gate (`lifelong.deploy.gate`).

Crash safety: the version's folder is written (atomically) before its row, memory rows,
holdout rows and aliases, which one transaction writes; a folder without a row (an update
killed in between) is removed by the next update. Only one update runs at a time."""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from lifelong.deploy import data, gate, memory, store
from lifelong.deploy.deployment import Deployment
from lifelong.deploy.errors import DeployError
from lifelong.deploy.lock import clean_orphans, update_lock
from lifelong.deploy.ops import PathArg, apply_retention

DEFAULT_POLICY: dict[str, Any] = {"name": "stateful"}


def new_learner(settings: dict[str, Any]) -> Any:
    from lifelong.config import TrainConfig
    from lifelong.learner import Learner

    return Learner(
        settings["model"],
        settings["strategy"],
        config=TrainConfig.from_dict(settings["train"]),
        scenario=settings["scenario"],
    )


def learn(learner: Any, fit: data.Samples) -> None:
    """One `learn` per run of equal task ids, in arrival order."""
    t = fit.t
    if len(t) == 0:
        return
    starts = [0, *(np.flatnonzero(t[1:] != t[:-1]) + 1).tolist(), len(t)]
    for a, b in zip(starts[:-1], starts[1:]):
        task = int(t[a]) if learner.scenario == "task" else None
        learner.learn(fit.x[a:b], fit.y[a:b], task=task)


def observe(
    conn: Connection,
    settings: dict[str, Any],
    prod: dict[str, Any] | None,
    learner: Any,
    now: float,
) -> Any:
    """The policy's `Observation` of the deployment at `now`."""
    from lifelong.deploy.policies import Observation

    shape = settings.get("input_shape")
    after = 0 if prod is None else int(prod["window_to"])
    since = data.window(conn, after)
    if learner is None or len(since) == 0:
        correct = np.zeros(0, bool)
    else:
        task = since.t if learner.scenario == "task" else None
        correct = learner.predict(since.x, task=task).numpy() == since.y
    return Observation(
        now=now,
        last_update_at=None if prod is None else float(prod["created_at"]),
        labelled_since=len(since),
        reference_x=data.inputs(conn, data.reference_query(prod), shape),
        recent_x=data.inputs(conn, data.recent_query(prod), shape),
        recent_correct=correct,
        baseline_accuracy=None
        if prod is None
        else (prod.get("metrics") or {}).get("holdout_accuracy"),
        last_attempt_at=conn.execute(select(func.max(store.versions.c.created_at))).scalar(),
        recent_lseq=np.asarray(since.lseq, np.int64),
    )


def update(path: PathArg, *, force: bool = False, now: float | None = None) -> dict[str, Any]:
    """Ask the deployment's policy whether to update now (`force`: run whatever it says,
    how a `manual` deployment is updated); log the decision; run it. Returns the decision
    (`ran`, `mode`, `reason`, `scores`) and, when it ran, the new version, its verdict and
    the gate's figures. `UpdateRunning` while another update runs; `DeployError` when
    asked to run with no labelled sample to learn."""
    from lifelong.deploy.policies import make_policy

    now = time.time() if now is None else now
    with Deployment(path) as dep, update_lock(dep.engine):
        clean_orphans(dep.engine, dep.path / "versions")
        with store.transaction(dep.engine) as conn:
            expired = apply_retention(dep, conn, now) + consume_leftovers(dep, conn, now)
        if expired:
            store.compact(dep.engine)
        with dep.engine.connect() as conn:
            settings = dep.settings(conn)
            name = dep.alias(conn, "production")
            prod = None if name is None else dep.version(conn, name)
            learner = None if name is None else dep.load_learner(conn, name, memory=True)
            obs = observe(conn, settings, prod, learner, now)
        policy = make_policy(settings.get("policy") or DEFAULT_POLICY)
        d = policy.decide(obs, forced=force)
        decision = {"policy": policy.name, "ran": d.run, "mode": d.mode, "reason": d.reason,
                    "scores": d.scores, "forced": force}  # fmt: skip
        with store.transaction(dep.engine) as conn:
            log_decision(dep, conn, decision, now)
        if not d.run:
            return decision
        stateful = d.mode == "stateful" and learner is not None
        change = d.change or _change(policy, obs)
        after = int(obs.recent_lseq[d.since - 1]) if stateful and d.since > 0 else None
        out = train_version(dep, settings, prod, learner if stateful else None, now,
                            after=after, change=change)  # fmt: skip
    return {**decision, **out}


#: a run of identical no-op decisions still logs one row this often (the log shows the
#: policy kept deciding)
NOOP_LOG_EVERY_S = 86400.0


def _shape(decision: dict[str, Any]) -> list[Any]:
    """What makes two decisions the same for the audit log: policy, outcome, mode,
    forced, and the reason with its figures masked ("not due: 40s < every_s=3600" and
    "not due: 100s < every_s=3600" are one)."""
    reason = re.sub(r"\d+(?:\.\d+)?", "#", str(decision["reason"]))
    return [decision["policy"], bool(decision["ran"]), decision["mode"], bool(decision["forced"]),
            reason]  # fmt: skip


def log_decision(dep: Deployment, conn: Connection, decision: dict[str, Any], now: float) -> bool:
    """Record `decision` (in the caller's transaction): always as the deployment's
    latest decision (setting `last_decision`, one row, what `status` shows), and in the
    audit log unless it is a no-op the same (`_shape`) as the last one logged, which was
    logged less than `NOOP_LOG_EVERY_S` ago: a cron job asking every minute and told
    "nothing to do" adds one row, not one a minute. Returns whether a row was written."""
    last = store.get_setting(conn, "last_decision")
    shape = _shape(decision)
    same = (
        not decision["ran"]
        and isinstance(last, dict)
        and last.get("shape") == shape
        and now - float(last.get("logged_at", -math.inf)) < NOOP_LOG_EVERY_S
    )
    if not same:
        dep.log(conn, "decision", at=now, **decision)
    repeats = int(last.get("repeats", 0)) + 1 if same and isinstance(last, dict) else 0
    logged_at = float(last["logged_at"]) if same and isinstance(last, dict) else now
    record = {"at": now, **decision, "shape": shape, "logged": not same, "logged_at": logged_at,
              "repeats": repeats}  # fmt: skip
    store.put_setting(conn, "last_decision", json.loads(json.dumps(record, default=_plain)))
    return not same


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value (anything else as text), for JSON."""
    return value.item() if hasattr(value, "item") else str(value)


def _change(policy: Any, obs: Any) -> str:
    """The real concept change (accuracy declined, inputs did not drift) production's
    record shows, seen with the triggers of `policy` (the `triggered` defaults for a policy
    without them): the same evidence lets the gate waive its forgetting check whatever
    the policy."""
    from lifelong.deploy import triggers
    from lifelong.deploy.policies import policy_defaults

    if obs.last_update_at is None:
        return ""
    config = policy.config if "detector" in policy.config else policy_defaults("triggered")
    change = triggers.concept_change(obs, config)
    return change.detail if change is not None and change.real else ""


@dataclass
class Candidate:
    """A trained candidate, ready for the gate and to be written as a version."""

    learner: Any
    kind: str  # initial | full | stateful | rebuild
    parent: str | None  # its lineage parent: a stateful update takes the parent's next minor
    fit: data.Samples  # what it learned (with `memory_ids`: the rows its buffers may hold)
    new: data.Samples  # the newest holdout (the gate's first check)
    earlier: data.Samples  # holdouts of earlier windows (the forgetting check)
    seconds: float
    window: tuple[int, int]  # label range (lseq) it has seen
    sample_to: int
    memory_ids: list[int] = field(default_factory=list)
    record_holdout: bool = True  # `new` is this update's own holdout, to be recorded
    change: str = ""  # the concept change detected before it ("": none)


def train_version(
    dep: Deployment, settings: dict[str, Any], prod: dict[str, Any] | None, learner: Any,
    now: float, *, after: int | None = None, change: str = "",
) -> dict[str, Any]:  # fmt: skip
    """Train a candidate and write it: `learner` (production's, memory attached)
    fine-tuned on the new window (the labels after lseq `after` when a change was
    detected there), or (`learner` None) a fresh learner trained on the retained labelled
    data; this window's newest part is held out. Then the gate (`change`: the detected
    concept change, which may waive the forgetting check)."""
    th = gate.check_gate(settings.get("gate"))
    with dep.engine.connect() as conn:
        start = 0 if prod is None else int(prod["window_to"])
        window = data.window(conn, max(start, after or 0))
        train, hold = gate.split(window, th["holdout_fraction"])
        earlier = data.holdout(conn)
        held = set(hold.ids)
        fit = train if learner is not None else data.retained(conn)
        fit = fit.take(np.array([i not in held for i in fit.ids], bool))
        if len(fit) == 0:
            raise DeployError("nothing to learn: no labelled sample since the last update")
        mem = memory.memory_ids(conn, None if prod is None else prod["id"])
        sample_to = int(conn.execute(select(func.max(store.samples.c.id))).scalar() or 0)
    if prod is None:
        before = None
    else:  # production's figures, before the candidate (maybe production itself) trains
        plearner = learner if learner is not None else _load(dep, prod["id"])
        before = _accuracies(plearner, hold, earlier)
    model = learner if learner is not None else new_learner(settings)
    t0 = time.perf_counter()
    learn(model, fit)
    lseqs = [*fit.lseq, *hold.lseq]
    kind = "stateful" if learner is not None else "initial" if prod is None else "full"
    cand = Candidate(
        model, kind, None if learner is None else prod["id"], fit, hold, earlier,  # type: ignore[index]
        time.perf_counter() - t0, (min(lseqs), max(lseqs)), sample_to, mem, change=change,
    )  # fmt: skip
    out = write_version(dep, th, prod, cand, before, now)
    consumed = 0
    if (settings.get("retention") or {}).get("memory") == "none":
        consumed = _consume(dep, [*fit.ids, *hold.ids, *earlier.ids], now)
    return {**out, "deleted_after_use": consumed}


def fault_point(name: str) -> None:
    """Pause here when `LIFELONG_DEPLOY_PAUSE_AT=NAME:SECONDS` says so: the crash tests
    use it to kill an update at one exact moment (e.g. between a version's folder and its
    row) however fast the machine is. Does nothing otherwise."""
    point, _, seconds = os.environ.get("LIFELONG_DEPLOY_PAUSE_AT", "").partition(":")
    if point == name:
        time.sleep(float(seconds or 1))


def write_version(
    dep: Deployment,
    th: dict[str, Any],
    prod: dict[str, Any] | None,
    cand: Candidate,
    before: dict[str, Any] | None,
    now: float,
) -> dict[str, Any]:
    """Judge `cand` against production's figures `before`, save it (replay rows that
    are stored samples stripped), then write its row, memory rows, holdout and aliases
    in one transaction; promoted when it passes the gate."""
    with dep.engine.connect() as conn:
        major, minor = dep.next_id(conn, cand.parent)
        candidates = _feature_bytes(conn, [*cand.fit.ids, *cand.memory_ids])
    vid = f"v{major}.{minor}"
    rows, layout = memory.match(cand.learner, candidates)
    with memory.stripped(cand.learner, layout):
        cand.learner.save(dep.version_dir(vid))
    fault_point("version-folder-written")
    accuracies = _accuracies(cand.learner, cand.new, cand.earlier)
    verdict, figures = gate.judge(th, accuracies, before, change=cand.change)
    held = memory.held(cand.learner)
    metrics = {"train_seconds": round(cand.seconds, 4), "holdout": len(cand.new),
               "earlier_holdout": len(cand.earlier), **figures, "memory_rows": len(rows),
               "memory_unmatched": held - len(rows)}  # fmt: skip
    with store.transaction(dep.engine) as conn:
        dep.add_version(
            conn, id=vid, major=major, minor=minor, parent=None if prod is None else prod["id"],
            kind=cand.kind, created_at=now, window_from=cand.window[0],
            window_to=cand.window[1], sample_to=cand.sample_to, n_samples=len(cand.fit),
            metrics=metrics, verdict=verdict, path=f"versions/{vid}", memory_layout=layout,
        )  # fmt: skip
        memory.record(conn, vid, rows)
        if cand.record_holdout and len(cand.new):
            conn.execute(
                store.holdouts.insert(), [{"sample_id": i, "window": vid} for i in cand.new.ids]
            )
        dep.set_alias(conn, "candidate", vid, "update", now)
        if verdict == "promoted":
            dep.set_alias(conn, "production", vid, "gate", now)
        dep.log(conn, "update", at=now, version=vid, kind=cand.kind, verdict=verdict, **metrics)
    return {"version": vid, "parent": None if prod is None else prod["id"], "kind": cand.kind,
            "verdict": verdict, "trained_on": len(cand.fit), **metrics}  # fmt: skip


def _load(dep: Deployment, version: str) -> Any:
    with dep.engine.connect() as conn:
        return dep.load_learner(conn, version)


def _accuracies(learner: Any, hold: data.Samples, earlier: data.Samples) -> dict[str, Any]:
    return {"new": gate.accuracy(learner, hold), "earlier": gate.accuracy(learner, earlier)}


def _feature_bytes(conn: Connection, ids: list[int]) -> dict[int, bytes]:
    s = store.samples
    out: dict[int, bytes] = {}
    unique = sorted(set(ids))
    for i in range(0, len(unique), 500):
        part = unique[i : i + 500]
        out.update(
            (int(r.id), bytes(r.x))
            for r in conn.execute(select(s.c.id, s.c.x).where(s.c.id.in_(part)))
        )
    return out


def _consume(dep: Deployment, ids: list[int], now: float) -> int:
    """With `memory: none`: delete the samples an update used, right after it (an update
    killed in between leaves them to the next one: `consume_leftovers`), and compact."""
    s, n = store.samples, 0
    unique = sorted(set(ids))
    with store.transaction(dep.engine) as conn:
        for i in range(0, len(unique), 500):
            n += conn.execute(delete(s).where(s.c.id.in_(unique[i : i + 500]))).rowcount
        if n:
            dep.log(conn, "consume", at=now, deleted=n, reason="memory: none")
    if n:
        store.compact(dep.engine)
    return int(n)


def consume_leftovers(dep: Deployment, conn: Connection, now: float) -> int:
    """With `memory: none`: delete labelled samples that an earlier version already
    learned or held out (left by an update killed before it deleted them)."""
    if (store.get_setting(conn, "retention", {}) or {}).get("memory") != "none":
        return 0
    v, s = store.versions, store.samples
    top = conn.execute(select(func.max(v.c.window_to))).scalar()
    if not top:
        return 0
    n = conn.execute(delete(s).where(s.c.lseq <= int(top))).rowcount
    if n:
        dep.log(conn, "consume", at=now, deleted=n, reason="memory: none (left over)")
    return int(n)
