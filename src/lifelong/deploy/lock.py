"""The update lock: one row of the `locks` table per deployment. Only one update runs at
a time; a lock whose owner process died on this host is taken over, and version folders
that a killed update left without their version row are removed (`clean_orphans`)."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from lifelong.deploy import store
from lifelong.deploy.errors import UpdateRunning

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


def clean_orphans(engine: Engine, root: os.PathLike[str] | str) -> list[str]:
    """Remove what a killed update left under `root` (DIR/versions): folders with no
    version row, temporary and old copies. Call it holding the lock. Returns the names."""
    folder = os.fspath(root)
    if not os.path.isdir(folder):
        return []
    with engine.connect() as conn:
        known = set(conn.execute(select(store.versions.c.id)).scalars())
    gone = sorted(n for n in os.listdir(folder) if n not in known)
    for name in gone:
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    return gone
