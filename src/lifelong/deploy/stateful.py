"""`update`: the `stateful` policy. Fine-tune the production version on the labelled
samples it has not seen, write the result as a new minor version (the candidate), and
promote it when it passes the gate: on a holdout of the newest labelled samples, its
accuracy is not worse than production's by more than `max_drop` (1 point by default).
Only one update runs at a time per deployment (a row in the `locks` table)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment
from lifelong.deploy.errors import DeployError, UpdateRunning
from lifelong.deploy.ops import PathArg, apply_retention

LOCK = "update"


def _alive(owner: str) -> bool:
    """False only when `owner` (host:pid) is a process of this host that has ended."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def update_lock(engine: Engine) -> Iterator[None]:
    """Hold the deployment's update lock; `UpdateRunning` when another live process
    holds it (a lock left by a process that died on this host is taken over)."""
    me = f"{socket.gethostname()}:{os.getpid()}"
    L = store.locks
    for _ in range(2):
        try:
            with store.transaction(engine) as conn:
                conn.execute(L.insert().values(name=LOCK, owner=me, since=time.time()))
            break
        except IntegrityError:
            with store.transaction(engine) as conn:
                row = conn.execute(L.select().where(L.c.name == LOCK)).first()
                if row is not None and _alive(row.owner):
                    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.since))
                    raise UpdateRunning(
                        f"another update of this deployment is running (process {row.owner}, "
                        f"since {since}); try again when it has finished"
                    ) from None
                if row is not None:  # its owner died: take it over
                    conn.execute(L.delete().where(L.c.name == LOCK, L.c.owner == row.owner))
    else:
        raise UpdateRunning("could not take the update lock")
    try:
        yield
    finally:
        with store.transaction(engine) as conn:
            conn.execute(L.delete().where(L.c.name == LOCK, L.c.owner == me))


def _window(conn: Any, after: int) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    s = store.samples
    rows = conn.execute(
        select(s.c.id, s.c.x, s.c.shape, s.c.label, s.c.task)
        .where(s.c.id > after, s.c.label.is_not(None))
        .order_by(s.c.id)
    ).all()
    if not rows:
        return [], np.zeros((0,)), np.zeros((0,), np.int64), np.zeros((0,), np.int64)
    x = np.stack([np.frombuffer(r.x, np.float32).reshape(json.loads(r.shape)) for r in rows])
    y = np.array([r.label for r in rows], np.int64)
    t = np.array([r.task for r in rows], np.int64)
    return [int(r.id) for r in rows], x, y, t


def _new_learner(settings: dict[str, Any]) -> Any:
    from lifelong.config import TrainConfig
    from lifelong.learner import Learner

    return Learner(
        settings["model"],
        settings["strategy"],
        config=TrainConfig.from_dict(settings["train"]),
        scenario=settings["scenario"],
    )


def _learn(learner: Any, x: np.ndarray, y: np.ndarray, t: np.ndarray) -> None:
    """One `learn` per task id, in order of first arrival."""
    for task in dict.fromkeys(t.tolist()):
        m = t == task
        learner.learn(x[m], y[m], task=task if learner.scenario == "task" else None)


def _accuracy(learner: Any, x: np.ndarray, y: np.ndarray, t: np.ndarray) -> float:
    task = t if learner.scenario == "task" else None
    return float((learner.predict(x, task=task).numpy() == y).mean())


def update(path: PathArg, min_samples: int = 2) -> dict[str, Any]:
    """Run one stateful update (see the module docstring); returns the new version, the
    gate's figures and verdict. Refused (`DeployError`) with fewer than `min_samples`
    labelled samples since production was trained, `UpdateRunning` during another."""
    with Deployment(path) as dep, update_lock(dep.engine):
        with store.transaction(dep.engine) as conn:
            apply_retention(dep, conn, time.time())
        with dep.engine.connect() as conn:
            settings = dep.settings(conn)
            prod = dep.alias(conn, "production")
            seen = 0 if prod is None else int(dep.version(conn, prod)["window_to"])
            ids, x, y, t = _window(conn, seen)
            learner = _new_learner(settings) if prod is None else dep.load_learner(conn, prod)
            major, minor = dep.next_id(conn, major=prod is None)
        if len(ids) < min_samples:
            raise DeployError(
                f"nothing to learn: {len(ids)} labelled samples since {prod or 'the start'}"
                f" (at least {min_samples} needed)"
            )
        gate = settings.get("gate") or {}
        n_hold = 0 if prod is None else max(1, int(len(ids) * float(gate["holdout_fraction"])))
        cut = len(ids) - n_hold
        before = None if prod is None else _accuracy(learner, x[cut:], y[cut:], t[cut:])
        t0 = time.perf_counter()
        _learn(learner, x[:cut], y[:cut], t[:cut])
        seconds = time.perf_counter() - t0
        vid = f"v{major}.{minor}"
        learner.save(dep.version_dir(vid))
        metrics: dict[str, Any] = {"train_seconds": round(seconds, 4), "holdout": n_hold}
        if before is None:
            verdict = "promoted"  # the first version: nothing to compare against
        else:
            after = _accuracy(learner, x[cut:], y[cut:], t[cut:])
            metrics.update(holdout_accuracy=after, production_accuracy=before)
            ok = after >= before - float(gate["max_drop"])
            verdict = "promoted" if ok else "rejected"
        with store.transaction(dep.engine) as conn:
            dep.add_version(
                conn, id=vid, major=major, minor=minor, parent=prod,
                kind="initial" if prod is None else "stateful", window_from=ids[0],
                window_to=ids[cut - 1], n_samples=cut, metrics=metrics, verdict=verdict,
                path=f"versions/{vid}",
            )  # fmt: skip
            dep.set_alias(conn, "candidate", vid, "update")
            if verdict == "promoted":
                dep.set_alias(conn, "production", vid, "gate")
            dep.log(conn, "update", version=vid, parent=prod, verdict=verdict, **metrics)
    return {"version": vid, "parent": prod, "verdict": verdict, "trained_on": cut, **metrics}
