"""On a real PostgreSQL server: the update lock, and `forget` for a deployment whose
strategy keeps a replay memory (rows of the store), verified on the server's files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from lifelong import deploy
from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment

SUBJECT = "patient-pg-42"


def test_lock_and_forget_with_replay_on_postgresql(tmp_path: Path, data, pg_database, holding):
    x, y = data
    dep = tmp_path / "dep"
    db = pg_database.url
    deploy.create(dep, model="mlp(hidden=(16,))", strategy="replay(mem_size=60)", db=db)
    subjects = [SUBJECT if i % 3 == 0 else "other" for i in range(90)]
    deploy.ingest(dep, x[:90], y[:90], subjects)
    assert deploy.update(dep, force=True)["memory_rows"] == 60

    with Deployment(dep) as d, store.transaction(d.engine) as conn:
        owner = f"{socket.gethostname()}:{os.getpid()}"  # a live process holds it
        conn.execute(store.locks.insert().values(name="update", owner=owner, since=0.0))
    deploy.ingest(dep, x[90:150], y[90:150], "late")
    with pytest.raises(deploy.UpdateRunning, match="another update of this deployment"):
        deploy.update(dep, force=True)
    with Deployment(dep) as d, store.transaction(d.engine) as conn:  # its process died
        conn.execute(store.locks.update().values(owner=f"{socket.gethostname()}:999999999"))
    assert deploy.update(dep, force=True)["version"] == "v1.1"

    roots = [dep, pg_database.files]
    needles = [x[i].tobytes() for i in range(0, 90, 3)] + [SUBJECT.encode()]
    pg_database.checkpoint()
    assert holding(roots, needles)
    out = deploy.forget(dep, SUBJECT)
    assert out["deleted"] == 30 and out["versions_holding"] == []
    pg_database.checkpoint()
    assert holding(roots, needles) == []
    assert 0 < deploy.status(dep)["memory"]["rows"] < 60
