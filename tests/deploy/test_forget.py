"""`forget`, verified the hard way: after it, the raw bytes of every file of the
deployment (database, -wal, -journal, model versions) and, on PostgreSQL, of the
server's table files hold neither the subject's feature bytes nor its id."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from lifelong import deploy

SUBJECT = "patient-7f3a9c"


def _ingest_update_forget(
    dep: Path, x: np.ndarray, y: np.ndarray, roots, checkpoint, holding
) -> None:
    subjects = [SUBJECT if i % 5 == 0 else f"other-{i % 7}" for i in range(120)]
    deploy.ingest(dep, x[:120], y[:120], subjects)
    assert deploy.update(dep, force=True)["version"] == "v1.1"
    deploy.ingest(dep, x[120:160], y[120:160], "late")
    mine = [x[i].astype(np.float32).tobytes() for i in range(120) if i % 5 == 0]
    needles = [*mine, SUBJECT.encode()]
    checkpoint()
    assert holding(roots, needles), "the search must see the stored samples"
    stored = deploy.status(dep)["samples"]
    out = deploy.forget(dep, SUBJECT)
    assert out["deleted"] == 24 and out["versions_holding"] == []  # naive keeps no samples
    checkpoint()
    assert holding(roots, needles) == []
    s = deploy.status(dep)
    assert s["samples"] == stored - 24
    last = s["last_decisions"][0]
    assert last["action"] == "forget" and last["details"]["subject_hash"] == out["subject_hash"]
    assert SUBJECT not in str(s)
    others = [x[i].astype(np.float32).tobytes() for i in (1, 2)]  # the rest is still there
    assert len(holding(roots, others)) >= 1


def test_forget_on_sqlite_leaves_no_bytes(tmp_path: Path, run_dir: Path, data, holding):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir)
    _ingest_update_forget(dep, x, y, [dep], lambda: None, holding)
    assert deploy.ingest(dep, x[:2], y[:2], SUBJECT)["ingested"] == 2  # it may come back


def test_retention_expiry_leaves_no_bytes(tmp_path: Path, run_dir: Path, data, holding):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir, max_age_days=1)
    deploy.ingest(dep, x[:10], y[:10], now=0.0)
    deploy.ingest(dep, x[10:20], y[10:20], now=2 * 86400.0)
    old = [x[i].tobytes() for i in range(10)]
    assert holding([dep], old) == [] and deploy.status(dep)["samples"] == 10


def test_ingest_update_forget_on_postgresql(tmp_path: Path, run_dir: Path, data, postgres, holding):
    from sqlalchemy import create_engine, text

    from lifelong.deploy.store import normalize_url

    url, data_dir = postgres
    admin = create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
    name = f"dep_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
        oid = conn.execute(text(f"SELECT oid FROM pg_database WHERE datname = '{name}'")).scalar()

    def checkpoint() -> None:
        with admin.connect() as conn:
            conn.execute(text("CHECKPOINT"))

    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir, db=url.rsplit("/", 1)[0] + "/" + name)
    assert deploy.predict(dep, x[300:303]).version == "v1.0"  # recorded, subject-less
    # the server's WAL (pg_wal/) keeps old records until its segments are recycled
    _ingest_update_forget(dep, x, y, [dep, data_dir / "base" / str(oid)], checkpoint, holding)
    admin.dispose()
