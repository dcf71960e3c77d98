"""API keys of `lifelong serve`: random tokens shown once, stored only as SHA-256 hashes
(in the deployment's `keys` table), each with a name (for the audit log) and a scope.

Scopes nest: `predict` < `feedback` < `admin`. A `feedback` key may also predict, an
`admin` key may do everything (promote, rollback, update, forget).

`list_keys` shows names, scopes, creation and last use (never a key or its hash);
`revoke_key` deletes a key's row and counts the revocation (`counters` row
`keys_revoked`). A server's `KeyRing` remembers keys for `ttl` seconds but re-reads that
count at least every `recheck` seconds (one small query, not one per request) and
forgets every remembered key when it changed: a revoked key is refused within
`recheck` seconds (1 s) in every server process. Last use is written at most once a
minute per key and process (`key_use` table), so it costs no query per request."""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy import Column, Engine, Float, MetaData, String, Table, delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

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
    _tables(engine)  # deployments older than the tables
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


_meta = MetaData()
key_use = Table(  # when each key was last used (to the minute): written by `KeyRing`
    "key_use",
    _meta,
    Column("hash", String(64), primary_key=True),
    Column("last_used_at", Float, nullable=False),
)
REVOKED = "keys_revoked"  # the `counters` row counting revocations
USE_EVERY_S = 60.0  # last use is written at most this often per key and process


def _tables(engine: Engine) -> None:
    """Create the key tables in deployments older than them."""
    store.keys.create(engine, checkfirst=True)
    key_use.create(engine, checkfirst=True)


def revocations(conn: Connection) -> int:
    """How many keys were ever revoked (0 when none)."""
    c = store.counters
    return int(conn.execute(select(c.c.value).where(c.c.name == REVOKED)).scalar() or 0)


def list_keys(engine: Engine) -> list[dict[str, Any]]:
    """Each key's name, scope, creation time and last use (None: never, or not since
    last use was recorded), oldest first. Never the key nor its hash."""
    _tables(engine)
    k, u = store.keys, key_use
    q = (
        select(k.c.name, k.c.scope, k.c.created_at, u.c.last_used_at)
        .outerjoin(u, u.c.hash == k.c.hash)
        .order_by(k.c.created_at, k.c.name)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def revoke_key(engine: Engine, name: str) -> Key:
    """Delete the key named `name` (its hash and last use) and count the revocation, so
    that servers forget what they remember of keys; logged. `DeployError` if none."""
    _tables(engine)
    k, c = store.keys, store.counters
    with store.transaction(engine) as conn:
        row = conn.execute(select(k.c.hash, k.c.scope).where(k.c.name == name)).first()
        if row is None:
            known = ", ".join(conn.execute(select(k.c.name).order_by(k.c.name)).scalars())
            raise DeployError(f"no key named {name!r}; keys: {known or 'none'}")
        conn.execute(delete(k).where(k.c.hash == row.hash))
        conn.execute(delete(key_use).where(key_use.c.hash == row.hash))
        bump = c.update().where(c.c.name == REVOKED).values(value=c.c.value + 1)
        if not conn.execute(bump).rowcount:
            conn.execute(c.insert().values(name=REVOKED, value=1))
        Deployment.log(conn, "key_revoke", name=name, scope=row.scope)
    return Key(name, row.scope)


class KeyRing:
    """Looks keys up in the database, remembering the answers for `ttl` seconds (so a
    request costs no query, and a new key works at once: misses are always looked up).
    The remembered answers hold only while the revocation count was read less than
    `recheck` seconds ago and has not changed since they were read (see the module
    docstring). `clock`: seconds, monotonic (tests pass their own)."""

    def __init__(
        self,
        engine: Engine,
        ttl: float = 5.0,
        recheck: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.ttl, self.recheck, self.clock = engine, ttl, recheck, clock
        self._seen: dict[str, tuple[float, Key, int]] = {}  # hash -> (when, key, count)
        self._count, self._checked = 0, -math.inf
        self._used: dict[str, float] = {}  # hash -> when its last use was written
        _tables(engine)

    def cached(self, token: str | None) -> Key | None:
        """The key if it was looked up less than `ttl` seconds ago and no key was
        revoked since, as last checked less than `recheck` seconds ago (no query)."""
        now = self.clock()
        if not token or now - self._checked >= self.recheck:
            return None
        hit = self._seen.get(digest(token))
        if hit is None or now - hit[0] >= self.ttl or hit[2] != self._count:
            return None
        return hit[1]

    def lookup(self, token: str | None) -> Key | None:
        """The key of `token` (None: unknown or revoked); reads the revocation count,
        and the key's row unless it is remembered."""
        if not token:
            return None
        h, now = digest(token), self.clock()
        with self.engine.connect() as conn:
            count = revocations(conn)
            if count != self._count:
                self._seen.clear()
            self._count, self._checked = count, now
            if (key := self.cached(token)) is not None:
                return key
            row: Any = conn.execute(store.keys.select().where(store.keys.c.hash == h)).first()
        if row is None:
            self._seen.pop(h, None)
            return None
        key = Key(row.name, row.scope)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[h] = (now, key, count)
        self._note_use(h, now)
        return key

    def _note_use(self, h: str, now: float) -> None:
        """Write the key's last use, at most every `USE_EVERY_S` seconds. A busy database
        (another writer holding its lock) skips it: the request must not wait or fail
        for a figure of the listing."""
        if now - self._used.get(h, -math.inf) < USE_EVERY_S:
            return
        self._used[h] = now
        at, u = time.time(), key_use
        try:
            with store.transaction(self.engine) as conn:
                if not conn.execute(
                    u.update().where(u.c.hash == h).values(last_used_at=at)
                ).rowcount:
                    conn.execute(u.insert().values(hash=h, last_used_at=at))
        except (OperationalError, IntegrityError):  # locked, or another process inserted it
            self._used.pop(h, None)


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def keys_command(path: str, action: str, args: Any) -> int:
    """`lifelong deploy keys list|revoke` (`create` stays in `lifelong.deploy.cli`)."""
    import json

    with Deployment(path) as dep:
        if action == "revoke":
            key = revoke_key(dep.engine, args.name)
            print(f"key {key.name!r} (scope {key.scope}) revoked; servers refuse it within "
                  "a second")  # fmt: skip
            return 0
        rows = list_keys(dep.engine)
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no keys: create one with `lifelong deploy keys create DIR --scope SCOPE`")
    for r in rows:
        print(f"{r['name']:<24} {r['scope']:<9} created {_when(r['created_at'])}  "
              f"last used {_when(r['last_used_at'])}")  # fmt: skip
    return 0
