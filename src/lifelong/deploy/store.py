"""The deployment's database: SQLAlchemy Core tables, the engine, and SQLite's care for
deleted bytes (`secure_delete`, `VACUUM`, WAL checkpoints).

Every table is plain rows (no pickles): features are float32 bytes plus their shape, JSON
goes to text columns. One deployment per database (the table names are fixed).

A sample's `lseq` orders labels by arrival (set when its label arrives, at ingest or
later): a version's window is the `lseq` range it learned. Predictions, replay-memory rows
and holdout rows refer to samples and go with them (`ON DELETE CASCADE`), so retention and
`forget` delete a sample from every table in one statement.

A user of a deployment (`lifelong.deploy.users`) is one row of `users`: their personal
head, rule state and replay memory as one byte string (`persist.user_to_bytes`: tensors +
JSON), created and updated times, and a revision that each write increments (a server's
cache of heads compares it; a write expects the revision it read). A deployment created
before this table gets it when users are first used (`users.open_users`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection

metadata = MetaData()

samples = Table(
    "samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("x", LargeBinary, nullable=False),  # float32 bytes, C order
    Column("shape", String(64), nullable=False),  # JSON list, e.g. "[16]"
    Column("label", Integer, nullable=True),
    Column("task", Integer, nullable=False, default=0),
    Column("subject", String(256), nullable=True, index=True),
    Column("received_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("lseq", Integer, nullable=True, index=True),  # label arrival order
)


def _sample_ref(primary_key: bool = False) -> Column[int]:
    fk = ForeignKey("samples.id", ondelete="CASCADE")
    return Column("sample_id", Integer, fk, primary_key=primary_key, nullable=False, index=True)


predictions = Table(
    "predictions",
    metadata,
    _sample_ref(primary_key=True),
    Column("version", String(32), nullable=False),
    Column("predicted", Integer, nullable=False),
    Column("at", Float, nullable=False),
)

memory = Table(  # a version's replay-buffer rows that are stored samples
    "memory",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(32), nullable=False, index=True),
    Column("slot", Integer, nullable=False),  # index of the strategy holding the buffer
    Column("position", Integer, nullable=False),  # row of the buffer
    _sample_ref(),
)

holdouts = Table(  # samples kept out of training for the gate, by the window they came from
    "holdouts",
    metadata,
    _sample_ref(primary_key=True),
    Column("window", String(32), nullable=False, index=True),  # the version that took it
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", String(32), primary_key=True),  # v<major>.<minor>
    Column("major", Integer, nullable=False),
    Column("minor", Integer, nullable=False),
    Column("parent", String(32), nullable=True),
    Column("kind", String(32), nullable=False),  # from_run | initial | full | stateful | rebuild
    Column("created_at", Float, nullable=False),
    Column("window_from", Integer, nullable=True),  # labels (lseq) it learned, inclusive
    Column("window_to", Integer, nullable=False),  # the last label (lseq) it has seen
    Column("sample_to", Integer, nullable=False, default=0),  # the newest sample id then
    Column("n_samples", Integer, nullable=False),
    Column("metrics", Text, nullable=False),  # JSON
    Column("verdict", String(32), nullable=False),
    Column("path", String(512), nullable=False),  # relative to the deployment folder
    Column("memory_layout", Text, nullable=False, default="{}"),  # JSON: stripped rows
)

aliases = Table(
    "aliases",
    metadata,
    Column("name", String(32), primary_key=True),  # production | candidate
    Column("version", String(32), nullable=False),
    Column("since", Float, nullable=False),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(32), nullable=False),
    Column("version", String(32), nullable=False),
    Column("since", Float, nullable=False),
    Column("reason", String(64), nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("action", String(64), nullable=False),
    Column("details", Text, nullable=False),  # JSON; subjects only as salted hashes
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),  # JSON
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(256), nullable=False),  # host:pid
    Column("since", Float, nullable=False),
)

keys = Table(  # API keys of `lifelong serve` (lifelong.serve.keys): only their hashes
    "keys",
    metadata,
    Column("hash", String(64), primary_key=True),  # sha256 hex of the key
    Column("name", String(128), nullable=False, unique=True),
    Column("scope", String(16), nullable=False),  # predict | feedback | admin
    Column("created_at", Float, nullable=False),
)


users = Table(  # users' personal heads (lifelong.deploy.users), one row per user
    "users",
    metadata,
    Column("id", String(128), primary_key=True),  # a checked user id (`check_user_id`)
    Column("state", LargeBinary, nullable=False),  # head, rule state, memory (user_to_bytes)
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("revision", Integer, nullable=False),  # 1 at creation, +1 per write
)


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg (3) unless psycopg2 is installed."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def open_engine(url: str) -> Engine:
    """An engine for `url`; SQLite connections use WAL, `secure_delete` (deleted
    content is overwritten with zeros) and wait up to 10 s for a writer's lock."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 10})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA secure_delete=ON")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    with engine.begin() as conn:
        yield conn


def compact(engine: Engine) -> None:
    """Make deleted rows' bytes really gone from the database files: SQLite `VACUUM`
    and a truncating WAL checkpoint; PostgreSQL `VACUUM FULL` of the samples, audit and
    users tables (rewritten table files; the server's WAL segments keep old records until
    recycled)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if is_sqlite(engine):
            conn.execute(text("VACUUM"))
            mode = conn.execute(text("PRAGMA journal_mode")).scalar()
            if str(mode).lower() == "wal":
                conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        elif engine.dialect.name == "postgresql":
            conn.execute(text("VACUUM FULL samples"))
            conn.execute(text("VACUUM FULL audit"))
            if inspect(conn).has_table("users"):  # deployments older than the table
                conn.execute(text("VACUUM FULL users"))


def get_setting(conn: Connection, key: str, default: Any = None) -> Any:
    row = conn.execute(settings.select().where(settings.c.key == key)).first()
    return default if row is None else json.loads(row.value)


def put_setting(conn: Connection, key: str, value: Any) -> None:
    conn.execute(settings.delete().where(settings.c.key == key))
    conn.execute(settings.insert().values(key=key, value=json.dumps(value)))


def next_lseq(conn: Connection, n: int) -> int:
    """Reserve `n` label sequence numbers; the first one (`lseq` counter, row-locked)."""
    c = counters
    if conn.execute(c.update().where(c.c.name == "lseq").values(value=c.c.value + n)).rowcount:
        return int(conn.execute(select(c.c.value).where(c.c.name == "lseq")).scalar_one()) - n + 1
    conn.execute(c.insert().values(name="lseq", value=n))
    return 1
