"""A deployment: a folder (DIR/deployment.json naming the database, DIR/versions/<id>/
holding each model version as a saved `Learner`) plus a database (`lifelong.deploy.store`).

    DIR/deployment.json     {"format": 1, "db": "sqlite:///DIR/deploy.db"}
    DIR/deploy.db           samples, versions, aliases, alias_history, audit, settings, locks
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
    def log(conn: Connection, action: str, **details: Any) -> None:
        conn.execute(
            store.audit.insert().values(
                at=time.time(), action=action, details=json.dumps(details, default=str)
            )
        )

    # -- versions and aliases ---------------------------------------------------------------
    @staticmethod
    def alias(conn: Connection, name: str) -> str | None:
        row = conn.execute(select(store.aliases.c.version).where(store.aliases.c.name == name))
        return row.scalar()

    def set_alias(self, conn: Connection, name: str, version: str, reason: str) -> None:
        """Point `name` at `version` (in the caller's transaction) and record it."""
        if name not in ALIASES:
            raise DeployError(f"unknown alias {name!r}; expected one of {ALIASES}")
        self.version(conn, version)  # exists
        now = time.time()
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
        out = dict(row._mapping)
        out["metrics"] = json.loads(out["metrics"])
        return out

    @staticmethod
    def versions(conn: Connection) -> list[dict[str, Any]]:
        order = (store.versions.c.major, store.versions.c.minor)
        rows = conn.execute(store.versions.select().order_by(*order)).all()
        return [{**dict(r._mapping), "metrics": json.loads(r.metrics)} for r in rows]

    @staticmethod
    def next_id(conn: Connection, major: bool) -> tuple[int, int]:
        """(major, minor) of the next version: a full retrain bumps the major, a stateful
        update the minor of the newest major."""
        top = conn.execute(select(func.max(store.versions.c.major))).scalar()
        if top is None:
            return 1, 0
        if major:
            return int(top) + 1, 0
        minor = conn.execute(
            select(func.max(store.versions.c.minor)).where(store.versions.c.major == top)
        ).scalar()
        return int(top), int(minor or 0) + 1

    def add_version(self, conn: Connection, **values: Any) -> None:
        values["metrics"] = json.dumps(values.get("metrics", {}))
        values.setdefault("created_at", time.time())
        conn.execute(store.versions.insert().values(**values))

    def version_dir(self, version: str) -> Path:
        return self.path / "versions" / version

    def load_learner(self, conn: Connection, version: str) -> Any:
        from lifelong.learner import Learner

        return Learner.load(self.path / self.version(conn, version)["path"])

    def count_samples(self, conn: Connection, after: int = 0, labelled: bool = True) -> int:
        q = select(func.count()).select_from(store.samples).where(store.samples.c.id > after)
        if labelled:
            q = q.where(store.samples.c.label.is_not(None))
        return int(conn.execute(q).scalar() or 0)
