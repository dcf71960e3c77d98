"""Deployments on SQLite: create from a run, ingest, predict, update + gate, promote and
rollback, status, refused batches, the update lock, the command line."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from lifelong import deploy
from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment


def _counts(path: Path) -> tuple[int, int, int]:
    """(samples, versions, audit rows)."""
    s = deploy.status(path, last=1000)
    return s["samples"], len(s["versions"]), len(s["last_decisions"])


def test_create_ingest_predict_update_promote_rollback(tmp_path: Path, run_dir: Path, data):
    x, y = data
    dep = tmp_path / "dep"
    assert deploy.create(dep, from_run=run_dir)["production"] == "v1.0"
    pred = deploy.predict(dep, x[:10], record=False)
    assert pred.version == "v1.0" and pred.classes.shape == (10,) and pred.ids == []
    subjects = [f"s{i % 4}" for i in range(100)]
    assert deploy.ingest(dep, x[:100], y[:100], subjects)["ingested"] == 100
    deploy.ingest(dep, x[100:150])  # unlabelled
    s = deploy.status(dep)
    assert (s["production"], s["samples"], s["pending_labelled"]) == ("v1.0", 150, 100)
    assert s["pending_unlabelled"] == 50

    out = deploy.update(dep, force=True)
    assert out["version"] == "v1.1" and out["parent"] == "v1.0" and out["kind"] == "stateful"
    assert out["trained_on"] == 80 and out["holdout"] == 20 and out["ran"]
    promoted = out["holdout_accuracy"] >= out["production_accuracy"] - 0.01
    assert out["verdict"] == ("promoted" if promoted else "rejected")
    s = deploy.status(dep)
    assert s["candidate"] == "v1.1" and s["holdouts"] == 20
    assert s["production"] == ("v1.1" if promoted else "v1.0")
    assert [e["action"] for e in s["last_decisions"][:2]] == ["update", "decision"]
    assert (dep / "versions" / "v1.1").is_dir()

    deploy.promote(dep, "v1.1")
    assert deploy.predict(dep, x[:3], record=False).version == "v1.1"
    assert deploy.rollback(dep) == {"production": "v1.0", "previous": "v1.1"}
    assert deploy.status(dep)["production"] == "v1.0"
    assert deploy.rollback(dep, "v1.1")["production"] == "v1.1"
    with pytest.raises(deploy.DeployError, match="no version 'v9.9'"):
        deploy.promote(dep, "v9.9")
    # v1.1 learned 80 labelled samples and held 20 out: nothing labelled is pending
    assert deploy.status(dep)["pending_labelled"] == 0
    deploy.ingest(dep, x[150:200], y[150:200])
    assert deploy.update(dep, force=True)["version"] == "v1.2"


def test_predictions_are_recorded_and_labels_arrive_later(tmp_path: Path, run_dir: Path, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir)
    pred = deploy.predict(dep, x[:30], subject="late-user", now=100.0)
    assert len(pred.ids) == 30 and pred.version == "v1.0"
    s = deploy.status(dep)
    assert (s["samples"], s["predictions"], s["pending_unlabelled"]) == (30, 30, 30)
    assert s["pending_labelled"] == 0
    with Deployment(dep) as d, d.engine.connect() as conn:
        row = conn.execute(
            store.predictions.select().order_by(store.predictions.c.sample_id)
        ).first()
        assert (row.sample_id, row.version, row.at) == (pred.ids[0], "v1.0", 100.0)
        assert row.predicted == int(pred.classes[0])
    with pytest.raises(deploy.DeployError, match=r"unknown sample ids: 999999"):
        deploy.label(dep, [pred.ids[0], 999999], [0, 1])
    with pytest.raises(deploy.DeployError, match="row 1: label -2"):
        deploy.label(dep, pred.ids[:2], [0, -2])
    assert deploy.status(dep)["pending_labelled"] == 0  # refused whole
    assert deploy.label(dep, pred.ids, y[:30])["labelled"] == 30
    s = deploy.status(dep)
    assert (s["pending_labelled"], s["pending_unlabelled"]) == (30, 0)
    out = deploy.update(dep, force=True)
    assert out["trained_on"] + out["holdout"] == 30
    assert deploy.forget(dep, "late-user")["deleted"] == 30
    assert deploy.status(dep)["predictions"] == 0  # predictions went with their samples


def test_record_predictions_for_a_server(tmp_path: Path, run_dir: Path, data):
    x, _ = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir)
    with Deployment(dep) as d, store.transaction(d.engine) as conn:
        ids = deploy.record_predictions(
            d, conn, x[:4], [1, 2, 3, 4], "v1.0", ["a", "b", None, "a"], None, 5.0
        )
    assert len(ids) == 4 and ids == sorted(ids)
    with Deployment(dep) as d, store.transaction(d.engine) as conn:
        with pytest.raises(deploy.DeployError, match="4 inputs but 3 predicted classes"):
            deploy.record_predictions(d, conn, x[:4], [1, 2, 3], "v1.0", None, None, 5.0)
    assert deploy.status(dep)["predictions"] == 4


def test_a_bad_batch_is_refused_whole(tmp_path: Path, run_dir: Path, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir)
    deploy.ingest(dep, x[:10], y[:10], "a")
    before = _counts(dep)
    bad = x[:5].astype(np.float64).copy()
    bad[3, 7] = np.inf
    with pytest.raises(deploy.DeployError, match=r"row 3, column 7: value inf"):
        deploy.ingest(dep, bad, y[:5])
    with pytest.raises(deploy.DeployError, match="expected 16 features per row"):
        deploy.ingest(dep, x[:5, :15], y[:5])
    cells = x[:4].astype(object)
    cells[2, 1] = "abc"
    with pytest.raises(deploy.DeployError, match=r"row 2, column 1: value 'abc'"):
        deploy.ingest(dep, cells)
    with pytest.raises(deploy.DeployError, match="row 1: label -1"):
        deploy.ingest(dep, x[:3], [0, -1, 2])
    with pytest.raises(deploy.DeployError, match="5 rows of features but 4 labels"):
        deploy.ingest(dep, x[:5], y[:4])
    with pytest.raises(deploy.DeployError, match="finite float32"):
        deploy.ingest(dep, np.full((2, 16), 1e39), [0, 1])
    assert _counts(dep) == before


def test_one_update_at_a_time(tmp_path: Path, run_dir: Path, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir)
    deploy.ingest(dep, x[:40], y[:40])
    with Deployment(dep) as d, store.transaction(d.engine) as conn:
        owner = f"{socket.gethostname()}:{os.getpid()}"  # a live process holds it
        conn.execute(store.locks.insert().values(name="update", owner=owner, since=0.0))
    with pytest.raises(deploy.UpdateRunning, match="another update of this deployment"):
        deploy.update(dep, force=True)
    assert len(deploy.status(dep)["versions"]) == 1
    with Deployment(dep) as d, store.transaction(d.engine) as conn:  # its process died
        conn.execute(store.locks.update().values(owner=f"{socket.gethostname()}:999999999"))
    assert deploy.update(dep, force=True)["version"] == "v1.1"


def test_retention_keeps_at_most_max_samples_and_expires_old_ones(
    tmp_path: Path, run_dir: Path, data
):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir, max_samples=30, max_age_days=1)
    deploy.ingest(dep, x[:20], y[:20], now=0.0)
    assert deploy.ingest(dep, x[20:40], y[20:40], now=1000.0)["expired"] == 10
    assert deploy.status(dep)["samples"] == 30
    assert deploy.expire(dep, now=86400.0 + 500) == 10  # the first batch's rest expired
    assert deploy.status(dep)["samples"] == 20


def test_a_deployment_from_specs_trains_its_first_version(tmp_path: Path, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, model="mlp(hidden=(16,))", strategy="naive")
    with pytest.raises(deploy.DeployError, match="no production version yet"):
        deploy.predict(dep, x[:2])
    out = deploy.update(dep)
    assert not out["ran"] and "0 labelled samples" in out["reason"]
    with pytest.raises(deploy.DeployError, match="nothing to learn"):
        deploy.update(dep, force=True)
    deploy.ingest(dep, x[:50], y[:50])
    with pytest.raises(deploy.DeployError, match="expected 16 features"):
        deploy.ingest(dep, x[:5, :8])
    out = deploy.update(dep)  # the policy trains the first version without being asked
    assert (out["version"], out["kind"], out["verdict"]) == ("v1.0", "initial", "promoted")
    assert deploy.predict(dep, x[:2]).version == "v1.0"


def test_the_command_line(tmp_path: Path, run_dir: Path, data, capsys):
    from lifelong.cli import main

    x, y = data
    dep, table = tmp_path / "dep", tmp_path / "batch.csv"
    names = [f"f{j}" for j in range(16)]
    lines = [",".join([*names, "label", "who"])]
    lines += [
        ",".join([*(repr(float(v)) for v in x[i]), str(y[i]), f"u{i % 3}"]) for i in range(60)
    ]
    table.write_text("\n".join(lines) + "\n")
    assert main(["deploy", "create", str(dep), "--from", str(run_dir)]) == 0
    args = ["deploy", "ingest", str(dep), "--data", str(table), "--target", "label"]
    assert main([*args, "--subject-column", "who"]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*lines[:3], lines[3].replace(lines[3].split(",")[5], "x?", 1)]))
    assert main(["deploy", "ingest", str(dep), "--data", str(bad), "--target", "label"]) == 2
    assert "1 unknown: 'who'" in capsys.readouterr().err
    assert main([*args[:4], str(bad), "--target", "label", "--subject-column", "who"]) == 2
    assert "row 2, column 'f5': value 'x?' is not a number" in capsys.readouterr().err
    assert main(["deploy", "update", str(dep)]) == 0  # the daily schedule is not due yet
    assert json.loads(capsys.readouterr().out)["ran"] is False
    assert main(["deploy", "update", str(dep), "--force"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "v1.1"
    out = tmp_path / "pred.csv"
    args = ["deploy", "predict", str(dep), "--data", str(table), "--out", str(out)]
    assert main([*args, "--target", "label", "--subject-column", "who"]) == 0
    rows = out.read_text().splitlines()
    assert len(rows) == 61 and rows[0] == "id,class,version"
    feedback = tmp_path / "feedback.csv"
    ids = [r.split(",")[0] for r in rows[1:11]]
    feedback.write_text("prediction,truth\n" + "".join(f"{i},{y[k]}\n" for k, i in enumerate(ids)))
    label = ["deploy", "label", str(dep), "--data", str(feedback), "--target", "truth"]
    assert main([*label, "--id-column", "prediction"]) == 0
    assert json.loads(capsys.readouterr().out)["labelled"] == 10
    assert main([*label, "--id-column", "nope"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
    assert main(["deploy", "rollback", str(dep), "v1.0"]) == 0
    assert main(["deploy", "forget", str(dep), "--subject", "u1"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["deleted"] == 40
    assert main(["deploy", "status", str(dep)]) == 0
    text = capsys.readouterr().out
    assert "production: v1.0" in text and "samples: 80 stored" in text and "forget" in text
    assert "policy: stateful" in text and "last decision: run stateful" in text


def test_ingest_and_predict_match_named_columns_by_name(tmp_path):
    """A CSV-like batch with its columns reordered is stored as the deployment's column
    order; an unknown column is refused by name and nothing is stored."""
    import pandas as pd

    from lifelong import deploy
    from lifelong.deploy.errors import DeployError

    d = tmp_path / "dep"
    deploy.create(d, model="mlp(hidden=(8,))", strategy="naive")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4)).astype(np.float32)
    y = np.arange(12) % 3
    cols = ["a", "b", "c", "d"]
    deploy.ingest(d, x, y, columns=cols)
    flipped = pd.DataFrame(x[:, ::-1], columns=cols[::-1])
    deploy.ingest(d, flipped.to_numpy(), y, columns=list(flipped.columns))
    with pytest.raises(DeployError, match="'e'"):
        deploy.ingest(d, x, y, columns=["a", "b", "c", "e"])
    from lifelong.deploy import store
    from lifelong.deploy.deployment import Deployment

    with Deployment(d) as dep, dep.engine.connect() as conn:
        rows = conn.execute(store.samples.select().order_by(store.samples.c.id)).all()
    assert len(rows) == 24
    first = [np.frombuffer(r.x, np.float32) for r in rows[:12]]
    second = [np.frombuffer(r.x, np.float32) for r in rows[12:]]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    deploy.update(d, force=True)
    a = deploy.predict(d, x, columns=cols, record=False).classes
    b = deploy.predict(d, flipped.to_numpy(), columns=list(flipped.columns), record=False).classes
    assert np.array_equal(a, b)
