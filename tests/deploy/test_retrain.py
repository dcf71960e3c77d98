"""`memory: none` (no real sample kept beyond the update that learns it; memory methods
refused with what fits) and `forget --retrain` (production rebuilt without the subject)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifelong import deploy

LENIENT = {"max_drop": 1.0, "max_forgetting_drop": 1.0}


def _blobs(folder: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file())


def test_memory_none_refuses_memory_methods_and_proposes_others(tmp_path: Path, capsys):
    from lifelong.cli import main

    for spec in ("replay", "der", "gem", "cumulative", "lwf+replay"):
        with pytest.raises(deploy.DeployError, match=r"memory: none .* use regularization \(ewc"):
            deploy.create(tmp_path / spec, model="mlp", strategy=spec, memory="none")
    args = ["deploy", "create", str(tmp_path / "c"), "--model", "mlp", "--memory", "none"]
    assert main([*args, "--strategy", "icarl"]) == 2
    assert "generative replay" in capsys.readouterr().err
    assert main([*args, "--strategy", "ewc"]) == 0


def test_memory_none_keeps_no_sample_after_the_update(tmp_path: Path, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, model="mlp(hidden=(16,))", strategy="ewc", memory="none")
    deploy.ingest(dep, x[:60], y[:60], "someone")
    deploy.ingest(dep, x[60:70])  # unlabelled: kept until labelled (or retention)
    assert x[5].tobytes() in _blobs(dep)
    out = deploy.update(dep, force=True)
    assert out["deleted_after_use"] == 60
    s = deploy.status(dep)
    assert (s["samples"], s["holdouts"], s["production"]) == (10, 0, "v1.0")
    assert not any(x[i].tobytes() in _blobs(dep) for i in range(60))
    deploy.ingest(dep, x[70:120], y[70:120])
    out = deploy.update(dep, force=True)  # the gate checks the new holdout only
    assert out["earlier_holdout"] == 0 and out["deleted_after_use"] == 50


def test_forget_retrain_rebuilds_production_without_the_subject(tmp_path: Path, data, capsys):
    from lifelong.cli import main

    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, model="mlp(hidden=(16,))", strategy="naive", gate=LENIENT)
    deploy.ingest(dep, x[:50], y[:50], "a")
    assert deploy.update(dep, force=True)["version"] == "v1.0"
    deploy.ingest(dep, x[50:100], y[50:100], ["z" if i % 2 else "b" for i in range(50)])
    assert deploy.update(dep, force=True)["version"] == "v1.1"
    deploy.ingest(dep, x[100:150], y[100:150], "c")
    assert deploy.update(dep, force=True)["version"] == "v1.2"
    out = deploy.forget(dep, "z", retrain=True)
    assert out["deleted"] == 25
    r = out["retrain"]
    assert r["rebuilt"] and r["from"] == "v1.0" and r["updates_replayed"] == 2
    # v1.1 learned 40 (20 of them z's, 5 of z's held out), v1.2 learned 40
    assert r["samples_replayed"] == 40 - 20 + 40
    assert r["seconds"] > 0 and 0 <= r["holdout_accuracy_after"] <= 1
    assert (r["version"], r["verdict"]) == ("v2.0", "promoted")
    s = deploy.status(dep)
    assert s["production"] == "v2.0" and s["versions"][-1]["kind"] == "rebuild"
    assert s["pending_labelled"] == 0
    assert main(["deploy", "forget", str(dep), "--subject", "nobody", "--retrain"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["deleted"] == 0 and done["retrain"]["rebuilt"] is False
