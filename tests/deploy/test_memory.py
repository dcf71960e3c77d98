"""Replay memory as rows of the store: a saved version holds no stored sample, loading it
for training refills the buffer from the store, deleted samples leave it, and buffer rows
of unknown origin stay only where retention allows."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from lifelong import deploy
from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment
from lifelong.deploy.memory import buffers
from lifelong.learner import Learner

SPEC = "replay(mem_size=40)"


def _blobs(folder: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file())


def _buffer_rows(dep: Path, version: str, memory: bool = True) -> list[bytes]:
    with Deployment(dep) as d, d.engine.connect() as conn:
        learner = d.load_learner(conn, version, memory=memory)
    (_, buf), *_ = buffers(learner)
    assert buf.x_ is not None
    return [buf.x_[i].numpy().tobytes() for i in range(buf.size_)]


def _memory_samples(dep: Path, version: str) -> list[tuple[bytes, str | None]]:
    m, s = store.memory, store.samples
    with Deployment(dep) as d, d.engine.connect() as conn:
        q = select(s.c.x, s.c.subject).join(m, m.c.sample_id == s.c.id)
        return [(bytes(r.x), r.subject) for r in conn.execute(q.where(m.c.version == version))]


def test_memory_rows_replace_samples_in_the_version_files(tmp_path: Path, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, model="mlp(hidden=(16,))", strategy=SPEC)
    subjects = ["ann" if i % 4 == 0 else "bob" for i in range(100)]
    deploy.ingest(dep, x[:100], y[:100], subjects)
    out = deploy.update(dep, force=True)
    assert (out["version"], out["memory_rows"], out["memory_unmatched"]) == ("v1.0", 40, 0)
    rows = _memory_samples(dep, "v1.0")
    assert len(rows) == 40
    blob = _blobs(dep / "versions" / "v1.0")
    assert not any(x[i].tobytes() in blob for i in range(100)), "a sample stayed in the files"
    refilled = _buffer_rows(dep, "v1.0")
    assert sorted(refilled) == sorted(b for b, _ in rows)  # a restart gets them back
    assert set(_buffer_rows(dep, "v1.0", memory=False)) == {bytes(16 * 4)}  # stripped

    ann = {b for b, who in rows if who == "ann"}
    assert ann, "the buffer should hold some of ann's samples"
    deploy.forget(dep, "ann")
    assert all(who != "ann" for _, who in _memory_samples(dep, "v1.0"))
    after = _buffer_rows(dep, "v1.0")
    assert len(after) == 40 - len(ann) and not ann & set(after)
    assert not any(x[i].tobytes() in _blobs(dep) for i in range(0, 100, 4))

    deploy.ingest(dep, x[100:160], y[100:160], "cid")
    out = deploy.update(dep, force=True)
    assert out["version"] == "v1.1" and out["memory_rows"] == 40  # the free rows refilled
    assert all(who != "ann" for _, who in _memory_samples(dep, "v1.1"))


def test_rows_from_outside_the_store_stay_only_where_retention_allows(tmp_path: Path, data):
    x, y = data
    saved = tmp_path / "saved"
    learner = Learner("mlp(hidden=(16,))", "replay(mem_size=20)")
    learner.learn(x[200:260], y[200:260])
    learner.save(saved)
    keep, timed = tmp_path / "keep", tmp_path / "timed"
    deploy.create(keep, from_run=saved)
    deploy.create(timed, from_run=saved, max_age_days=30)
    assert deploy.status(keep)["memory"] == {"rows": 0, "unmatched": 20, "unmatched_kept": True}
    assert deploy.status(timed)["memory"]["unmatched_kept"] is False
    assert len(_buffer_rows(keep, "v1.0")) == 20
    assert _buffer_rows(timed, "v1.0") == []  # of unknown age: dropped when loaded to train
    for dep in (keep, timed):
        deploy.ingest(dep, x[:50], y[:50])
        deploy.update(dep, force=True)
    v_keep = deploy.status(keep)["versions"][-1]["metrics"]
    v_timed = deploy.status(timed)["versions"][-1]["metrics"]
    assert v_keep["memory_rows"] + v_keep["memory_unmatched"] == 20
    assert v_keep["memory_unmatched"] > 0  # some of the run's rows survived the reservoir
    assert (v_timed["memory_rows"], v_timed["memory_unmatched"]) == (20, 0)
    old = [x[i].tobytes() for i in range(200, 260)]
    assert not any(b in _blobs(timed / "versions" / "v1.1") for b in old)


def test_forget_with_a_replay_memory_leaves_no_bytes(tmp_path: Path, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, model="mlp(hidden=(16,))", strategy="replay(mem_size=60)")
    subjects = ["patient-x1" if i % 3 == 0 else "other" for i in range(90)]
    deploy.ingest(dep, x[:90], y[:90], subjects)
    deploy.update(dep, force=True)
    deploy.ingest(dep, x[90:150], y[90:150], subjects[:60])
    deploy.update(dep, force=True)
    needles = [x[i].tobytes() for i in range(150) if subjects[i % 90] == "patient-x1"]
    needles.append(b"patient-x1")
    assert any(n in _blobs(dep) for n in needles)
    out = deploy.forget(dep, "patient-x1")
    assert out["versions_holding"] == []
    assert not any(n in _blobs(dep) for n in needles)
    assert 0 < deploy.status(dep)["memory"]["rows"] < 60  # the subject's rows went too
