"""`forget`, verified the hard way: after it, the raw bytes of every file of the
deployment (database, -wal, -journal, model versions) and, on PostgreSQL, of the
server's table files hold neither the subject's feature bytes nor its id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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


def test_ingest_update_forget_on_postgresql(
    tmp_path: Path, run_dir: Path, data, pg_database, holding
):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir, db=pg_database.url)
    assert deploy.predict(dep, x[300:303]).version == "v1.0"  # recorded, subject-less
    # the server's WAL (pg_wal/) keeps old records until its segments are recycled
    roots = [dep, pg_database.files]
    _ingest_update_forget(dep, x, y, roots, pg_database.checkpoint, holding)


# -- strategies that keep samples outside a replay buffer ---------------------------------
KEEPERS = ["gem(mem_size=40)", "agem(mem_size=40)", "icarl(mem_size=40)", "cumulative"]


def _kept_rows(dep: Path, version: str) -> list[bytes]:
    """The feature bytes of every sample row the version's learner keeps, as training
    loads it (memory refilled from the store)."""
    from lifelong.deploy.deployment import Deployment
    from lifelong.deploy.sample_rows import sample_rows

    with Deployment(dep) as d, d.engine.connect() as conn:
        learner = d.load_learner(conn, version, memory=True)
    return [b for _, view in sample_rows(learner) for b in view.row_bytes()]


def _two_versions(dep: Path, spec: str, x: np.ndarray, y: np.ndarray, db: str | None = None):
    """A deployment of `spec` that learned 120 samples (a fifth of them the subject's),
    then 80 more; the subject's and the others' feature bytes."""
    deploy.create(dep, model="mlp(hidden=(16,))", strategy=spec, db=db)
    deploy.ingest(dep, x[:120], y[:120], [SUBJECT if i % 5 == 0 else "other" for i in range(120)])
    assert deploy.update(dep, force=True)["version"] == "v1.0"
    deploy.ingest(dep, x[120:200], y[120:200], "late")
    out = deploy.update(dep, force=True)
    assert out["version"] == "v1.1" and out["memory_rows"] > 0
    mine = [x[i].tobytes() for i in range(0, 120, 5)]
    others = [x[i].tobytes() for i in range(200) if i % 5 or i >= 120]
    return mine, others


@pytest.mark.parametrize("spec", KEEPERS)
def test_forget_reaches_every_sample_a_strategy_keeps(tmp_path: Path, data, holding, spec):
    x, y = data
    dep = tmp_path / "dep"
    mine, others = _two_versions(dep, spec, x, y)
    assert holding([dep / "versions"], [*mine, *others]) == [], "a version file holds samples"
    kept = _kept_rows(dep, "v1.1")
    assert set(kept) <= set(mine) | set(others) and set(kept) & set(mine)  # refilled
    assert holding([dep], mine), "the search must see the stored samples"

    out = deploy.forget(dep, SUBJECT)
    assert out["deleted"] == 24 and out["versions_holding"] == []
    assert out["versions_rewritten"] == []  # nothing to rewrite: the files held no sample
    assert holding([dep], [*mine, SUBJECT.encode()]) == []
    after = _kept_rows(dep, "v1.1")
    assert not set(after) & set(mine)
    assert len(after) == len(kept) - sum(b in set(mine) for b in kept)  # the rest stays
    assert deploy.predict(dep, x[300:305]).version == "v1.1"
    deploy.ingest(dep, x[200:240], y[200:240], "later")
    assert deploy.update(dep, force=True)["version"] == "v1.2"
    assert not set(_kept_rows(dep, "v1.2")) & set(mine)


def test_forget_rewrites_a_version_saved_with_samples(tmp_path: Path, data, holding):
    """A version written before its memory was stored as rows (GEM's memory in the
    files, no layout): forget rewrites it without the subject's rows and keeps the rest."""
    from lifelong.deploy import store
    from lifelong.deploy.deployment import Deployment

    x, y = data
    dep = tmp_path / "dep"
    mine, others = _two_versions(dep, "gem(mem_size=40)", x, y)
    with Deployment(dep) as d:
        with d.engine.connect() as conn:
            learner = d.load_learner(conn, "v1.1", memory=True)
        learner.save(d.version_dir("v1.1"))  # the samples back in the files
        with store.transaction(d.engine) as conn:
            v = store.versions
            conn.execute(store.memory.delete().where(store.memory.c.version == "v1.1"))
            conn.execute(v.update().where(v.c.id == "v1.1").values(memory_layout="{}"))
    kept = _kept_rows(dep, "v1.1")  # rows of unknown origin, kept
    assert holding([dep / "versions" / "v1.1"], mine) and set(kept) & set(mine)

    out = deploy.forget(dep, SUBJECT)
    assert out["versions_rewritten"] == ["v1.1"] and out["versions_holding"] == []
    assert holding([dep], mine) == []
    after = _kept_rows(dep, "v1.1")
    assert after == [b for b in kept if b not in set(mine)]  # the others, in order
    assert deploy.predict(dep, x[300:305]).version == "v1.1"


def test_forget_keeper_on_postgresql(tmp_path: Path, data, pg_database, holding):
    x, y = data
    dep = tmp_path / "dep"
    mine, others = _two_versions(dep, "gem(mem_size=40)", x, y, pg_database.url)
    roots = [dep, pg_database.files]
    pg_database.checkpoint()
    assert holding(roots, mine) and holding([dep / "versions"], mine) == []
    out = deploy.forget(dep, SUBJECT)
    assert out["deleted"] == 24 and out["versions_holding"] == []
    pg_database.checkpoint()
    assert holding(roots, mine) == []
    assert not set(_kept_rows(dep, "v1.1")) & set(mine) and _kept_rows(dep, "v1.1")


def test_sample_rows_name_what_they_cannot_reach():
    """Every strategy that stores samples has a row view, except one unknown to
    `sample_rows`: that one is named (forget gives it as the reason a file holds bytes)."""
    from types import SimpleNamespace

    from lifelong.deploy.sample_rows import PAST_SLOT, sample_rows, unknown
    from lifelong.strategies.base import Strategy
    from lifelong.strategies.registry import registry

    class Keeper(Strategy):
        name = "keeper"
        stores_samples = True

    keepers = [cls() for cls in registry().values() if cls.stores_samples]
    assert len(keepers) >= 5 and unknown(SimpleNamespace(strategies=keepers)) == []
    learner = SimpleNamespace(
        strategies=[Keeper(), registry()["gem"](), registry()["cumulative"]()]
    )
    assert unknown(learner) == ["keeper"]
    assert [slot for slot, _ in sample_rows(learner)] == [1, PAST_SLOT]


def test_retention_expiry_reaches_a_gem_memory(tmp_path: Path, data, holding):
    x, y = data
    dep = tmp_path / "dep"
    spec = "gem(mem_size=40)"
    deploy.create(dep, model="mlp(hidden=(16,))", strategy=spec, max_age_days=1, now=0.0)
    deploy.ingest(dep, x[:80], y[:80], now=0.0)
    assert deploy.update(dep, force=True, now=10.0)["memory_rows"] == 40
    assert len(_kept_rows(dep, "v1.0")) == 40
    deploy.ingest(dep, x[80:160], y[80:160], now=2 * 86400.0)  # the first 80 expire
    assert holding([dep], [x[i].tobytes() for i in range(80)]) == []
    assert _kept_rows(dep, "v1.0") == []  # expired samples left the memory
    out = deploy.update(dep, force=True, now=2 * 86400.0 + 10)
    assert out["version"] == "v1.1" and out["memory_rows"] == 20  # the new experience's half
