"""A deployment: a folder (DIR/deployment.json naming the database, DIR/versions/<id>/
holding each model version as a saved `Learner`) plus a database (`lifelong.deploy.store`).

    DIR/deployment.json     {"format": 1, "db": "sqlite:///DIR/deploy.db"}
    DIR/deploy.db           samples, predictions, memory, holdouts, versions, aliases,
                            alias_history, audit, settings, locks, counters
    DIR/versions/v1.0/      Learner.save(...)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import Connection

from lifelong.deploy import store
from lifelong.deploy.errors import DeployError

FORMAT = 1
ALIASES = ("production", "candidate")


def default_url(path: Path) -> str:
    return f"sqlite:///{path / 'deploy.db'}"


def write_json_atomic(path: Path, value: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(value, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Deployment:
    """An open deployment; `with Deployment(dir) as d:` disposes of its engine."""

    def __init__(self, path: str | os.PathLike[str], engine: Engine | None = None) -> None:
        self.path = Path(path)
        info_file = self.path / "deployment.json"
        if engine is None:
            if not info_file.is_file():
                raise DeployError(f"{self.path}: not a deployment (no deployment.json)")
            info = json.loads(info_file.read_text())
            engine = store.open_engine(str(info["db"]))
        self.engine = engine

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.dispose()

    # -- settings and helpers ---------------------------------------------------------------
    def settings(self, conn: Connection) -> dict[str, Any]:
        rows = conn.execute(store.settings.select()).all()
        return {r.key: json.loads(r.value) for r in rows}

    def subject_hash(self, conn: Connection, subject: str) -> str:
        salt = store.get_setting(conn, "salt")
        return hashlib.sha256(f"{salt}:{subject}".encode()).hexdigest()[:32]

    @staticmethod
    def log(conn: Connection, action: str, at: float | None = None, **details: Any) -> None:
        conn.execute(
            store.audit.insert().values(
                at=time.time() if at is None else at,
                action=action,
                details=json.dumps(details, default=str),
            )
        )

    # -- versions and aliases ---------------------------------------------------------------
    @staticmethod
    def alias(conn: Connection, name: str) -> str | None:
        row = conn.execute(select(store.aliases.c.version).where(store.aliases.c.name == name))
        return row.scalar()

    def set_alias(
        self, conn: Connection, name: str, version: str, reason: str, now: float | None = None
    ) -> None:
        """Point `name` at `version` (in the caller's transaction) and record it."""
        if name not in ALIASES:
            raise DeployError(f"unknown alias {name!r}; expected one of {ALIASES}")
        self.version(conn, version)  # exists
        now = time.time() if now is None else now
        conn.execute(store.aliases.delete().where(store.aliases.c.name == name))
        conn.execute(store.aliases.insert().values(name=name, version=version, since=now))
        conn.execute(
            store.alias_history.insert().values(
                name=name, version=version, since=now, reason=reason
            )
        )

    @staticmethod
    def version(conn: Connection, version: str) -> dict[str, Any]:
        row = conn.execute(store.versions.select().where(store.versions.c.id == version)).first()
        if row is None:
            known = conn.execute(select(store.versions.c.id)).scalars().all()
            raise DeployError(f"no version {version!r}; versions: {', '.join(known) or 'none'}")
        return _version_dict(row)

    @staticmethod
    def versions(conn: Connection) -> list[dict[str, Any]]:
        order = (store.versions.c.major, store.versions.c.minor)
        rows = conn.execute(store.versions.select().order_by(*order)).all()
        return [_version_dict(r) for r in rows]

    @staticmethod
    def next_id(conn: Connection, parent: str | None = None) -> tuple[int, int]:
        """(major, minor) of the next version: a full retrain (`parent` None) takes the
        next major, a stateful update of `parent` the next minor of the parent's major."""
        v = store.versions
        top = conn.execute(select(func.max(v.c.major))).scalar()
        if top is None:
            return 1, 0
        if parent is None:
            return int(top) + 1, 0
        major = int(conn.execute(select(v.c.major).where(v.c.id == parent)).scalar_one())
        minor = conn.execute(select(func.max(v.c.minor)).where(v.c.major == major)).scalar()
        return major, int(minor or 0) + 1

    def add_version(self, conn: Connection, **values: Any) -> None:
        values["metrics"] = json.dumps(values.get("metrics", {}))
        values["memory_layout"] = json.dumps(values.get("memory_layout", {}))
        values.setdefault("created_at", time.time())
        conn.execute(store.versions.insert().values(**values))

    def version_dir(self, version: str) -> Path:
        return self.path / "versions" / version

    def load_learner(self, conn: Connection, version: str, memory: bool = False) -> Any:
        """The saved learner of `version`; `memory=True` refills its replay buffers from
        the store's rows (what training needs; prediction does not)."""
        from lifelong.learner import Learner

        info = self.version(conn, version)
        learner = Learner.load(self.path / info["path"])
        if memory:
            from lifelong.deploy.memory import attach

            attach(self, conn, learner, info)
        return learner

    @staticmethod
    def count_labelled(conn: Connection, after: int = 0) -> int:
        """Labelled samples whose label arrived after label sequence number `after`."""
        s = store.samples
        q = select(func.count()).select_from(s).where(s.c.lseq > after)
        return int(conn.execute(q).scalar() or 0)

    @staticmethod
    def count_unlabelled(conn: Connection, after_id: int = 0) -> int:
        s = store.samples
        q = select(func.count()).select_from(s).where(s.c.id > after_id, s.c.label.is_(None))
        return int(conn.execute(q).scalar() or 0)


def _version_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["metrics"] = json.loads(out["metrics"])
    out["memory_layout"] = json.loads(out.get("memory_layout") or "{}")
    return out
