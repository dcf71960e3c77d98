"""The deployment operations that change data or aliases: create, ingest, label,
promote, rollback, and the retention rules (`predict`: `lifelong.deploy.serving`;
`status`, `forget`: `lifelong.deploy.overview`, `lifelong.deploy.erase`)."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from lifelong.config import TrainConfig
from lifelong.deploy import store
from lifelong.deploy.deployment import FORMAT, Deployment, default_url, write_json_atomic
from lifelong.deploy.errors import DeployError
from lifelong.deploy.schema import check_batch, label_id

PathArg = str | os.PathLike[str]
MEMORY_RULES = ("keep", "none")


def _check_create(
    strategy: str | None, memory: str, max_age_days: float | None, max_samples: int | None
) -> None:
    for name, v in (("max_age_days", max_age_days), ("max_samples", max_samples)):
        if v is not None and v <= 0:
            raise DeployError(f"{name} must be positive, got {v}")
    if memory not in MEMORY_RULES:
        raise DeployError(f"memory must be one of {', '.join(MEMORY_RULES)}, got {memory!r}")
    if memory == "none":
        from lifelong.deploy.memory import NO_MEMORY_METHODS, keeps_real_samples
        from lifelong.strategies.registry import build_strategies

        keeping = keeps_real_samples(build_strategies(strategy or "naive"))
        if keeping:
            raise DeployError(
                f"memory: none keeps no real sample, but strategy {strategy!r} does "
                f"({', '.join(keeping)}); use {NO_MEMORY_METHODS} instead"
            )


def _check_policy(policy: dict[str, Any] | str | None) -> dict[str, Any]:
    from lifelong.deploy.policies import check_policy

    try:
        return check_policy(policy if policy is not None else {"name": "stateful"})
    except ValueError as e:
        raise DeployError(str(e)) from None


def create(
    path: PathArg,
    *,
    from_run: PathArg | None = None,
    model: str | None = None,
    strategy: str | None = None,
    db: str | None = None,
    max_age_days: float | None = None,
    max_samples: int | None = None,
    memory: str = "keep",
    policy: dict[str, Any] | str | None = None,
    gate: dict[str, float] | None = None,
    scenario: str = "class",
    config: TrainConfig | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Create a deployment in folder `path`: from a run's (or a saved learner's) model,
    which becomes version v1.0 and production, or from `model` + `strategy` specs (the
    first `update` trains v1.0). `db`: a SQLAlchemy URL (default: DIR/deploy.db).
    `policy`: `{"name": "manual"|"scheduled"|"stateful"|"triggered", ...}` or a spec
    string (default stateful, daily); `gate`: thresholds (`lifelong.deploy.gate`);
    `memory="none"`: no real sample is kept beyond the update that learns it."""
    from lifelong.deploy.gate import check_gate

    d = Path(path)
    now = time.time() if now is None else now
    if (d / "deployment.json").exists():
        raise DeployError(f"{d} is a deployment already")
    if (from_run is None) == (model is None):
        raise DeployError("give either from_run (a run folder) or model (and strategy)")
    _check_create(strategy, memory, max_age_days, max_samples)
    policy_config, gate_config = _check_policy(policy), check_gate(gate)
    learner = None
    if from_run is not None:
        from lifelong.predictor import load

        learner = load(from_run)
        model, strategy, scenario = learner.model_spec, learner.spec, learner.scenario
        if model is None:
            raise DeployError(f"{from_run}: its model is not a spec, so it cannot be redeployed")
        config = learner.config
        _check_create(strategy, memory, max_age_days, max_samples)
    url = db or default_url(d.resolve())
    d.mkdir(parents=True, exist_ok=True)
    values = {
        "salt": secrets.token_hex(16),
        "model": model,
        "strategy": strategy or "naive",
        "scenario": scenario,
        "train": (config or TrainConfig()).to_dict(),
        "retention": {"max_age_days": max_age_days, "max_samples": max_samples, "memory": memory},
        "gate": gate_config,
        "policy": policy_config,
        "input_shape": None if learner is None else list(learner.input_shape or ()),
        # named columns are matched to these by name (`data.columns.align_columns`)
        "feature_names": None if learner is None else learner.feature_names,
        "created_at": now,
    }
    with Deployment(d, store.open_engine(url)) as dep:
        store.metadata.create_all(dep.engine)
        with store.transaction(dep.engine) as conn:
            if store.get_setting(conn, "created_at") is not None:
                raise DeployError(f"the database {url} holds a deployment already")
            for key, value in values.items():
                store.put_setting(conn, key, value)
            conn.execute(store.counters.insert().values(name="lseq", value=0))
            if learner is not None:
                learner.save(dep.version_dir("v1.0"))
                dep.add_version(
                    conn, id="v1.0", major=1, minor=0, parent=None, kind="from_run",
                    created_at=now, window_from=None, window_to=0, n_samples=0,
                    verdict="initial", path="versions/v1.0",
                    metrics={"source": str(from_run), "memory_unmatched": _buffered(learner)},
                )  # fmt: skip
                dep.set_alias(conn, "production", "v1.0", "create", now)
            dep.log(conn, "create", at=now, model=model, strategy=strategy, policy=policy_config,
                    memory=memory, from_run=str(from_run))  # fmt: skip
    write_json_atomic(d / "deployment.json", {"format": FORMAT, "db": url})
    return {"path": str(d), "db": url, "production": None if learner is None else "v1.0"}


def _buffered(learner: Any) -> int:
    """Sample rows the run's learner keeps in every part (buffers, GEM memories, exemplars)."""
    from lifelong.deploy.memory import held

    return held(learner)


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
        dep.log(conn, "expire", at=now, deleted=n)
    return int(n)


def sample_rows(conn: Any, batch: Any, now: float, labelled: bool = True) -> list[dict[str, Any]]:
    """Rows for `store.samples` of a checked batch received at `now` (labels numbered in
    arrival order by the `lseq` counter)."""
    days = (store.get_setting(conn, "retention", {}) or {}).get("max_age_days")
    expires = None if days is None else now + float(days) * 86400
    shape = json.dumps(list(batch.x.shape[1:]))
    n_lab = sum(v is not None for v in batch.y) if labelled else 0
    seq = store.next_lseq(conn, n_lab) if n_lab else 0
    rows = []
    for i in range(len(batch.x)):
        y = batch.y[i] if labelled else None
        rows.append(
            {"x": batch.x[i].tobytes(), "shape": shape, "label": y, "task": batch.task[i],
             "subject": batch.subject[i], "received_at": now, "expires_at": expires,
             "lseq": None if y is None else seq}
        )  # fmt: skip
        seq += y is not None
    return rows


def insert_samples(conn: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert sample rows; their ids, in order."""
    q = store.samples.insert().returning(store.samples.c.id, sort_by_parameter_order=True)
    return [int(v) for v in conn.execute(q, rows).scalars()]


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
            names = store.get_setting(conn, "feature_names")
        batch = check_batch(x, y, subject, task, shape=shape, columns=columns, expected=names)
        with store.transaction(dep.engine) as conn:
            if shape is None:
                store.put_setting(conn, "input_shape", list(batch.x.shape[1:]))
            if names is None and columns:
                store.put_setting(conn, "feature_names", list(columns))
            ids = insert_samples(conn, sample_rows(conn, batch, now))
            labelled = sum(v is not None for v in batch.y)
            dep.log(conn, "ingest", at=now, rows=len(ids), labelled=labelled, first_id=ids[0])
            expired = apply_retention(dep, conn, now)
        if expired:
            store.compact(dep.engine)
    return {"ingested": len(ids), "labelled": labelled, "expired": expired, "ids": ids}


def label(path: PathArg, ids: Any, labels: Any, *, now: float | None = None) -> dict[str, Any]:
    """Set the labels of samples stored earlier (ingested unlabelled, or predicted: a
    prediction's id is its sample's id). The whole batch or nothing: an unknown id or a
    bad label raises `DeployError` naming it. A relabelled sample joins the next update."""
    now = time.time() if now is None else now
    try:
        id_list = [int(v) for v in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    except (TypeError, ValueError):
        raise DeployError(f"sample ids must be integers, got {ids!r}") from None
    values = list(labels.tolist() if hasattr(labels, "tolist") else labels)
    if len(values) != len(id_list):
        raise DeployError(f"{len(id_list)} ids but {len(values)} labels")
    if len(set(id_list)) != len(id_list):
        raise DeployError("an id appears twice in the batch")
    new = [label_id(v, i) for i, v in enumerate(values)]
    if any(v is None for v in new):
        raise DeployError(f"row {new.index(None)}: no label given")
    s = store.samples
    with Deployment(path) as dep, store.transaction(dep.engine) as conn:
        known: set[int] = set()
        for i in range(0, len(id_list), 500):
            part = id_list[i : i + 500]
            known.update(conn.execute(select(s.c.id).where(s.c.id.in_(part))).scalars())
        unknown = [i for i in id_list if i not in known]
        if unknown:
            shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
            raise DeployError(
                f"unknown sample ids: {shown} (never stored, or deleted by retention or forget)"
            )
        seq = store.next_lseq(conn, len(id_list)) if id_list else 0
        for k, (sid, y) in enumerate(zip(id_list, new)):
            conn.execute(s.update().where(s.c.id == sid).values(label=y, lseq=seq + k))
        dep.log(conn, "label", at=now, rows=len(id_list))
    return {"labelled": len(id_list)}


def expire(path: PathArg, now: float | None = None) -> int:
    """Apply the retention rules now (and compact); the number of samples deleted."""
    with Deployment(path) as dep:
        with store.transaction(dep.engine) as conn:
            n = apply_retention(dep, conn, time.time() if now is None else now)
        if n:
            store.compact(dep.engine)
    return n


def promote(
    path: PathArg, version: str, reason: str = "promote", *, now: float | None = None
) -> dict[str, Any]:
    """Make `version` production (one transaction)."""
    with Deployment(path) as dep, store.transaction(dep.engine) as conn:
        before = dep.alias(conn, "production")
        dep.set_alias(conn, "production", version, reason, now)
        dep.log(conn, reason, at=now, version=version, previous=before)
    return {"production": version, "previous": before}


def rollback(
    path: PathArg, version: str | None = None, *, now: float | None = None
) -> dict[str, Any]:
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
    return promote(path, version, reason="rollback", now=now)
