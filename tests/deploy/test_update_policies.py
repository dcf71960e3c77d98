"""`update` asks the deployment's policy: decisions and their scores go to the audit log,
scratch retrains take the next major version, stateful updates the next minor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifelong import deploy


def _decisions(dep: Path) -> list[dict]:
    s = deploy.status(dep, last=1000)
    return [e["details"] for e in s["last_decisions"] if e["action"] == "decision"]


def test_manual_runs_only_when_forced_and_retrains_from_scratch(tmp_path: Path, run_dir, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir, policy={"name": "manual"}, now=0.0)
    deploy.ingest(dep, x[:60], y[:60], now=10.0)
    out = deploy.update(dep, now=20.0)
    assert not out["ran"] and "manual" in out["reason"]
    out = deploy.update(dep, force=True, now=30.0)
    assert (out["version"], out["kind"], out["mode"]) == ("v2.0", "full", "scratch")
    assert out["trained_on"] == 48 and out["holdout"] == 12
    deploy.ingest(dep, x[60:100], y[60:100], now=40.0)
    out = deploy.update(dep, force=True, now=50.0)
    # from scratch on everything retained except the holdouts
    assert (out["version"], out["trained_on"]) == ("v3.0", 48 + 32)
    assert [d["ran"] for d in _decisions(dep)] == [True, True, False]


def test_scheduled_retrains_when_due(tmp_path: Path, run_dir, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir, policy="scheduled(every_s=100)", now=0.0)
    deploy.ingest(dep, x[:40], y[:40], now=1.0)
    assert not deploy.update(dep, now=50.0)["ran"]
    out = deploy.update(dep, now=150.0)
    assert out["ran"] and out["version"] == "v2.0" and "due" in out["reason"]
    assert out["scores"]["age_s"] == 150.0
    s = deploy.status(dep)
    assert s["last_trigger_scores"] == {"age_s": 150.0, "age_s_threshold": 100.0}
    assert s["last_gate"]["version"] == "v2.0"


def test_stateful_updates_by_volume_take_minor_versions(tmp_path: Path, run_dir, data):
    x, y = data
    dep = tmp_path / "dep"
    policy = {"name": "stateful", "every_s": None, "every_labelled": 20}
    deploy.create(dep, from_run=run_dir, policy=policy, now=0.0)
    deploy.ingest(dep, x[:30], y[:30], now=1.0)
    out = deploy.update(dep, now=2.0)
    assert (out["version"], out["kind"], out["parent"]) == ("v1.1", "stateful", "v1.0")
    deploy.promote(dep, "v1.1")
    deploy.ingest(dep, x[30:40], y[30:40], now=3.0)
    out = deploy.update(dep, now=4.0)
    assert not out["ran"] and out["scores"]["labelled"] == 10.0
    deploy.ingest(dep, x[40:60], y[40:60], now=5.0)
    out = deploy.update(dep, now=6.0)
    assert (out["version"], out["parent"]) == ("v1.2", "v1.1")


def test_triggered_logs_its_trigger_scores(tmp_path: Path, run_dir, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir, policy={"name": "triggered", "cooldown_s": 0}, now=0.0)
    deploy.ingest(dep, x[:50], y[:50], now=1.0)
    out = deploy.update(dep, now=2.0)
    assert out["policy"] == "triggered" and out["scores"]
    last = deploy.status(dep)["last_decision"]
    assert last["scores"] == out["scores"] and last["reason"] == out["reason"]


def test_bad_policies_are_refused_by_name(tmp_path: Path, run_dir, capsys):
    from lifelong.cli import main

    with pytest.raises(deploy.DeployError, match="unknown policy 'weekly'"):
        deploy.create(tmp_path / "a", from_run=run_dir, policy={"name": "weekly"})
    with pytest.raises(deploy.DeployError, match="no parameter 'every'"):
        deploy.create(tmp_path / "b", from_run=run_dir, policy={"name": "scheduled", "every": 1})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    dep = tmp_path / "c"
    args = ["deploy", "create", str(dep), "--from", str(run_dir), "--policy", "triggered"]
    assert (
        main([*args, "--policy-option", "cooldown_s=60", "--policy-option", "max_age_s=none"]) == 0
    )
    capsys.readouterr()
    assert main(["deploy", "status", str(dep), "--json"]) == 0
    pol = json.loads(capsys.readouterr().out)["policy"]
    assert (pol["name"], pol["cooldown_s"], pol["max_age_s"]) == ("triggered", 60.0, None)
    assert main([*args[:2], str(tmp_path / "d"), *args[3:], "--policy-option", "x"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_repeated_no_op_decisions_add_one_audit_row(tmp_path: Path, run_dir, data):
    """A cron job told "not due" at every call logs that once (figures aside); `status`
    shows the latest decision all the same, and any other decision is logged."""
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir, policy="scheduled(every_s=100)", now=0.0)
    deploy.ingest(dep, x[:40], y[:40], now=1.0)
    for t in (10.0, 20.0, 30.0):
        assert not deploy.update(dep, now=t)["ran"]
    assert [d["reason"] for d in _decisions(dep)] == ["not due: 10s < every_s=100"]
    last = deploy.status(dep)["last_decision"]
    assert (last["at"], last["reason"], last["scores"]["age_s"]) == (
        30.0,
        "not due: 30s < every_s=100",
        30.0,
    )
    assert (last["repeats"], last["logged_at"], last["logged"]) == (2, 10.0, False)
    assert deploy.update(dep, now=150.0)["ran"]  # a run is always logged
    for t in (160.0, 170.0):
        assert not deploy.update(dep, now=t)["ran"]
    assert [(d["ran"], d["scores"]["age_s"]) for d in _decisions(dep)] == [
        (False, 10.0), (True, 150.0), (False, 10.0),
    ]  # fmt: skip
    assert deploy.status(dep)["last_decision"]["at"] == 170.0


def test_a_no_op_run_still_logs_daily_and_on_a_new_reason(tmp_path: Path, run_dir, data):
    from lifelong.deploy.stateful import NOOP_LOG_EVERY_S

    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=run_dir, policy={"name": "manual"}, now=0.0)
    for t in (10.0, 20.0, 10.0 + NOOP_LOG_EVERY_S - 1):
        deploy.update(dep, now=t)
    assert len(_decisions(dep)) == 1  # "0 labelled samples since the last update (...)"
    deploy.update(dep, now=10.0 + NOOP_LOG_EVERY_S)
    assert len(_decisions(dep)) == 2
    deploy.ingest(dep, x[:10], y[:10], now=NOOP_LOG_EVERY_S + 20)
    deploy.update(dep, now=NOOP_LOG_EVERY_S + 30)
    reasons = [d["reason"] for d in _decisions(dep)]
    assert len(reasons) == 3 and reasons[0] == "manual: runs only when asked"
