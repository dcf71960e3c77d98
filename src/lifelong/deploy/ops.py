"""The deployment operations besides `update`: create, ingest, predict, promote,
rollback, status, forget, and the retention rules."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import delete, func, select

from lifelong.config import TrainConfig
from lifelong.deploy import store
from lifelong.deploy.deployment import FORMAT, Deployment, default_url, write_json_atomic
from lifelong.deploy.errors import DeployError
from lifelong.deploy.schema import check_batch, check_features

PathArg = str | os.PathLike[str]


class Prediction(NamedTuple):
    classes: np.ndarray  # class ids, one per row
    version: str  # the production version that predicted them


def create(
    path: PathArg,
    *,
    from_run: PathArg | None = None,
    model: str | None = None,
    strategy: str | None = None,
    db: str | None = None,
    max_age_days: float | None = None,
    max_samples: int | None = None,
    scenario: str = "class",
    config: TrainConfig | None = None,
) -> dict[str, Any]:
    """Create a deployment in folder `path`: from a run's (or a saved learner's) model,
    which becomes version v1.0 and production, or from `model` + `strategy` specs (the
    first `update` trains v1.0). `db`: a SQLAlchemy URL (default: DIR/deploy.db)."""
    d = Path(path)
    if (d / "deployment.json").exists():
        raise DeployError(f"{d} is a deployment already")
    if (from_run is None) == (model is None):
        raise DeployError("give either from_run (a run folder) or model (and strategy)")
    for name, v in (("max_age_days", max_age_days), ("max_samples", max_samples)):
        if v is not None and v <= 0:
            raise DeployError(f"{name} must be positive, got {v}")
    learner = None
    if from_run is not None:
        from lifelong.predictor import load

        learner = load(from_run)
        model, strategy, scenario = learner.model_spec, learner.spec, learner.scenario
        if model is None:
            raise DeployError(f"{from_run}: its model is not a spec, so it cannot be redeployed")
        config = learner.config
    url = db or default_url(d.resolve())
    d.mkdir(parents=True, exist_ok=True)
    values = {
        "salt": secrets.token_hex(16),
        "model": model,
        "strategy": strategy or "naive",
        "scenario": scenario,
        "train": (config or TrainConfig()).to_dict(),
        "retention": {"max_age_days": max_age_days, "max_samples": max_samples},
        "gate": {"holdout_fraction": 0.2, "max_drop": 0.01},
        "input_shape": None if learner is None else list(learner.input_shape or ()),
        "created_at": time.time(),
    }
    with Deployment(d, store.open_engine(url)) as dep:
        store.metadata.create_all(dep.engine)
        with store.transaction(dep.engine) as conn:
            if store.get_setting(conn, "created_at") is not None:
                raise DeployError(f"the database {url} holds a deployment already")
            for key, value in values.items():
                store.put_setting(conn, key, value)
            if learner is not None:
                learner.save(dep.version_dir("v1.0"))
                dep.add_version(
                    conn, id="v1.0", major=1, minor=0, parent=None, kind="from_run",
                    window_from=None, window_to=0, n_samples=0, verdict="initial",
                    metrics={"source": str(from_run)}, path="versions/v1.0",
                )  # fmt: skip
                dep.set_alias(conn, "production", "v1.0", "create")
            dep.log(conn, "create", model=model, strategy=strategy, from_run=str(from_run))
    write_json_atomic(d / "deployment.json", {"format": FORMAT, "db": url})
    return {"path": str(d), "db": url, "production": None if learner is None else "v1.0"}


def apply_retention(dep: Deployment, conn: Any, now: float) -> int:
    """Delete expired samples and the oldest beyond `max_samples`; the count deleted."""
    rules = store.get_setting(conn, "retention", {}) or {}
    s = store.samples
    n = conn.execute(delete(s).where(s.c.expires_at.is_not(None), s.c.expires_at <= now)).rowcount
    cap = rules.get("max_samples")
    if cap:
        total = int(conn.execute(select(func.count()).select_from(s)).scalar() or 0)
        if total > cap:
            ids = select(s.c.id).order_by(s.c.id).limit(total - int(cap)).scalar_subquery()
            n += conn.execute(delete(s).where(s.c.id.in_(ids))).rowcount
    if n:
        dep.log(conn, "expire", deleted=n)
    return int(n)


def ingest(
    path: PathArg,
    x: Any,
    y: Any = None,
    subject: Any = None,
    *,
    task: Any = None,
    columns: list[str] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Store a batch (labelled or not; `subject`: one id for the batch or one per row).
    The whole batch is checked first: a bad one raises `DeployError` and stores nothing."""
    now = time.time() if now is None else now
    with Deployment(path) as dep:
        with dep.engine.connect() as conn:
            shape = store.get_setting(conn, "input_shape")
            days = (store.get_setting(conn, "retention", {}) or {}).get("max_age_days")
        batch = check_batch(x, y, subject, task, shape=shape, columns=columns)
        row_shape = json.dumps(list(batch.x.shape[1:]))
        expires = None if days is None else now + float(days) * 86400
        rows = [
            {"x": batch.x[i].tobytes(), "shape": row_shape, "label": batch.y[i],
             "task": batch.task[i], "subject": batch.subject[i], "received_at": now,
             "expires_at": expires}
            for i in range(len(batch.x))
        ]  # fmt: skip
        with store.transaction(dep.engine) as conn:
            if shape is None:
                store.put_setting(conn, "input_shape", list(batch.x.shape[1:]))
            first = conn.execute(select(func.max(store.samples.c.id))).scalar() or 0
            conn.execute(store.samples.insert(), rows)
            labelled = sum(v is not None for v in batch.y)
            dep.log(conn, "ingest", rows=len(rows), labelled=labelled, after_id=first)
            expired = apply_retention(dep, conn, now)
        if expired:
            store.compact(dep.engine)
    return {"ingested": len(rows), "labelled": labelled, "expired": expired}


def expire(path: PathArg, now: float | None = None) -> int:
    """Apply the retention rules now (and compact); the number of samples deleted."""
    with Deployment(path) as dep:
        with store.transaction(dep.engine) as conn:
            n = apply_retention(dep, conn, time.time() if now is None else now)
        if n:
            store.compact(dep.engine)
    return n


def predict(
    path: PathArg, x: Any, task: Any = None, columns: list[str] | None = None
) -> Prediction:
    """Class ids for `x`, predicted by the production version."""
    with Deployment(path) as dep:
        with dep.engine.connect() as conn:
            version = dep.alias(conn, "production")
            if version is None:
                raise DeployError("no production version yet: ingest labelled data and update")
            learner = dep.load_learner(conn, version)
    xs = check_features(x, learner.input_shape, columns)
    return Prediction(learner.predict(xs, task=task).numpy(), version)


def promote(path: PathArg, version: str, reason: str = "promote") -> dict[str, Any]:
    """Make `version` production (one transaction)."""
    with Deployment(path) as dep, store.transaction(dep.engine) as conn:
        before = dep.alias(conn, "production")
        dep.set_alias(conn, "production", version, reason)
        dep.log(conn, reason, version=version, previous=before)
    return {"production": version, "previous": before}


def rollback(path: PathArg, version: str | None = None) -> dict[str, Any]:
    """Make `version` production, or by default the version that was production before
    the current one."""
    if version is None:
        with Deployment(path) as dep, dep.engine.connect() as conn:
            current = dep.alias(conn, "production")
            h = store.alias_history
            past = conn.execute(
                select(h.c.version).where(h.c.name == "production").order_by(h.c.id.desc())
            ).scalars()
            version = next((v for v in past if v != current), None)
        if version is None:
            raise DeployError(f"nothing to roll back to: {current} is the only production so far")
    return promote(path, version, reason="rollback")


def status(path: PathArg, last: int = 10) -> dict[str, Any]:
    """Versions, aliases, pending samples (labelled since production was trained), and
    the last `last` audit entries."""
    with Deployment(path) as dep, dep.engine.connect() as conn:
        prod = dep.alias(conn, "production")
        seen = 0 if prod is None else int(dep.version(conn, prod)["window_to"])
        a = store.audit
        recent = conn.execute(a.select().order_by(a.c.id.desc()).limit(last)).all()
        total = conn.execute(select(func.count()).select_from(store.samples)).scalar()
        return {
            "versions": dep.versions(conn),
            "production": prod,
            "candidate": dep.alias(conn, "candidate"),
            "samples": int(total or 0),
            "pending_labelled": dep.count_samples(conn, after=seen),
            "pending_unlabelled": dep.count_samples(conn, after=seen, labelled=False)
            - dep.count_samples(conn, after=seen),
            "last_decisions": [
                {"at": r.at, "action": r.action, "details": json.loads(r.details)} for r in recent
            ],
        }


def forget(path: PathArg, subject: str) -> dict[str, Any]:
    """Delete every stored sample of `subject`, compact the database so the bytes are
    gone from its files, and log the event with a salted hash of the id. Reports the
    versions whose saved learner still holds some of those samples (a replay memory)."""
    with Deployment(path) as dep:
        s = store.samples
        with store.transaction(dep.engine) as conn:
            gone = conn.execute(select(s.c.x).where(s.c.subject == subject)).scalars().all()
            conn.execute(delete(s).where(s.c.subject == subject))
            digest = dep.subject_hash(conn, subject)
            dep.log(conn, "forget", subject_hash=digest, deleted=len(gone))
        store.compact(dep.engine)
    holding = [v.name for v in _versions_on_disk(Path(path)) if _holds_any(v, list(gone))]
    return {"subject_hash": digest, "deleted": len(gone), "versions_holding": holding}


def _versions_on_disk(path: Path) -> list[Path]:
    root = path / "versions"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _holds_any(folder: Path, needles: list[bytes]) -> bool:
    blobs = [f.read_bytes() for f in folder.rglob("*") if f.is_file()]
    return any(n in b for n in needles for b in blobs)
