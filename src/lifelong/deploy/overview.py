"""`status`: what a deployment holds and did, read from its database."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Connection

from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment
from lifelong.deploy.memory import keep_unmatched
from lifelong.deploy.ops import PathArg


def _count(conn: Connection, table: Any, *where: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar() or 0)


def _last(conn: Connection, action: str) -> dict[str, Any] | None:
    a = store.audit
    row = conn.execute(
        a.select().where(a.c.action == action).order_by(a.c.id.desc()).limit(1)
    ).first()
    return None if row is None else {"at": row.at, **json.loads(row.details)}


def _memory(conn: Connection, prod: dict[str, Any] | None) -> dict[str, Any]:
    """Production's replay memory: rows that are stored samples, and rows of unknown
    origin (saved by a run) with whether the retention rules let them stay."""
    if prod is None:
        return {"rows": 0, "unmatched": 0, "unmatched_kept": False}
    rows = _count(conn, store.memory, store.memory.c.version == prod["id"])
    unmatched = int(prod["metrics"].get("memory_unmatched", 0))
    return {"rows": rows, "unmatched": unmatched, "unmatched_kept": keep_unmatched(conn)}


def _latest_decision(conn: Connection) -> dict[str, Any] | None:
    """The policy's latest decision: the `last_decision` setting (written by every
    `update`, logged or not: `stateful.log_decision`; `repeats` counts the identical
    no-ops since the one logged at `logged_at`), else the last one in the audit log."""
    latest = store.get_setting(conn, "last_decision")
    if isinstance(latest, dict):
        return {k: v for k, v in latest.items() if k != "shape"}
    return _last(conn, "decision")


def status(path: PathArg, last: int = 10) -> dict[str, Any]:
    """Versions, aliases, the policy, pending samples (labelled since production was
    trained; unlabelled received since), the last decision with its trigger scores,
    production's replay memory, holdouts, and the last `last` audit entries."""
    s, h = store.samples, store.holdouts
    with Deployment(path) as dep, dep.engine.connect() as conn:
        settings = dep.settings(conn)
        name = dep.alias(conn, "production")
        prod = None if name is None else dep.version(conn, name)
        seen = 0 if prod is None else int(prod["window_to"])
        a = store.audit
        recent = conn.execute(a.select().order_by(a.c.id.desc()).limit(last)).all()
        decision = _latest_decision(conn)
        return {
            "versions": dep.versions(conn),
            "production": name,
            "candidate": dep.alias(conn, "candidate"),
            "policy": settings.get("policy"),
            "retention": settings.get("retention"),
            "gate": settings.get("gate"),
            "samples": _count(conn, s),
            "pending_labelled": _count(
                conn, s, s.c.lseq > seen, s.c.id.not_in(select(h.c.sample_id))
            ),
            "pending_unlabelled": _count(
                conn, s, s.c.label.is_(None), s.c.id > (0 if prod is None else prod["sample_to"])
            ),
            "predictions": _count(conn, store.predictions),
            "users": (  # with a personal head (a deployment older than the table has none)
                _count(conn, store.users) if inspect(conn).has_table("users") else 0
            ),
            "holdouts": _count(conn, h),
            "memory": _memory(conn, prod),
            "last_decision": decision,
            "last_trigger_scores": None if decision is None else decision.get("scores"),
            "last_gate": _last(conn, "update"),
            "last_decisions": [
                {"at": r.at, "action": r.action, "details": json.loads(r.details)} for r in recent
            ],
        }
