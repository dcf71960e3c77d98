"""API keys of `lifelong serve`: random tokens shown once, stored only as SHA-256 hashes
(in the deployment's `keys` table), each with a name (for the audit log) and a scope.

Scopes nest: `predict` < `feedback` < `admin`. A `feedback` key may also predict, an
`admin` key may do everything (promote, rollback, update, forget)."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any, NamedTuple

from sqlalchemy import Engine, select

from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment
from lifelong.deploy.errors import DeployError

SCOPES = ("predict", "feedback", "admin")
PREFIX = "llk_"


class Key(NamedTuple):
    name: str
    scope: str


def digest(key: str) -> str:
    """The stored form of a key. Keys are 32 random bytes, so a plain hash is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


def allows(scope: str, needed: str) -> bool:
    """Whether a key of `scope` may do what needs scope `needed`."""
    return SCOPES.index(scope) >= SCOPES.index(needed)


def create_key(engine: Engine, scope: str, name: str | None = None) -> tuple[str, Key]:
    """A new key (the only time it is seen) and its name/scope; the hash is stored."""
    if scope not in SCOPES:
        raise DeployError(f"unknown scope {scope!r}: choose one of {', '.join(SCOPES)}")
    store.keys.create(engine, checkfirst=True)  # deployments older than the table
    token = PREFIX + secrets.token_urlsafe(32)
    with store.transaction(engine) as conn:
        names = set(conn.execute(select(store.keys.c.name)).scalars())
        if name is None:
            free = (f"{scope}-{i}" for i in range(1, len(names) + 2))
            name = next(n for n in free if n not in names)
        elif not name or len(name) > 128:
            raise DeployError(f"a key name has 1 to 128 characters, got {name!r}")
        elif name in names:
            raise DeployError(f"a key named {name!r} exists already")
        conn.execute(
            store.keys.insert().values(
                hash=digest(token), name=name, scope=scope, created_at=time.time()
            )
        )
        Deployment.log(conn, "key_create", name=name, scope=scope)
    return token, Key(name, scope)


class KeyRing:
    """Looks keys up in the database, remembering the answers for `ttl` seconds (so a
    request costs no query, and a new key works at once: misses are always looked up)."""

    def __init__(self, engine: Engine, ttl: float = 5.0) -> None:
        self.engine, self.ttl = engine, ttl
        self._seen: dict[str, tuple[float, Key]] = {}
        store.keys.create(engine, checkfirst=True)

    def cached(self, token: str | None) -> Key | None:
        """The key if it was looked up less than `ttl` seconds ago (no query)."""
        hit = self._seen.get(digest(token)) if token else None
        return hit[1] if hit is not None and time.monotonic() - hit[0] < self.ttl else None

    def lookup(self, token: str | None) -> Key | None:
        if not token:
            return None
        if (key := self.cached(token)) is not None:
            return key
        h, now = digest(token), time.monotonic()
        with self.engine.connect() as conn:
            row: Any = conn.execute(store.keys.select().where(store.keys.c.hash == h)).first()
        if row is None:
            self._seen.pop(h, None)
            return None
        key = Key(row.name, row.scope)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[h] = (now, key)
        return key
