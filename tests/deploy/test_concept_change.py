"""A detected concept change: where it was (the update learns only the rows after it),
and the gate's forgetting check waived when the inputs did not drift (P(y | x) changed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lifelong import deploy
from lifelong.config import TrainConfig
from lifelong.deploy import gate, triggers
from lifelong.deploy.policies import Observation, make_policy

HOUR = 3600.0


def _obs(correct: np.ndarray, shift: float = 0.0) -> Observation:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((300, 8)).astype(np.float32)
    rec = (rng.standard_normal((200, 8)) + shift).astype(np.float32)
    return Observation(10 * HOUR, 0.0, len(correct), ref, rec, correct)


def _record(before: int, after: int, seed: int = 0) -> np.ndarray:
    """Right 90% of the time for `before` rows, then 40%."""
    rng = np.random.default_rng(seed)
    return np.r_[rng.random(before) < 0.9, rng.random(after) < 0.4]


def test_change_point_finds_where_the_error_rate_rose() -> None:
    for seed in range(5):
        at = triggers.change_point(~_record(300, 150, seed))
        assert 280 <= at <= 320
    assert triggers.change_point(np.zeros(1)) == 0


def test_concept_change_tells_a_change_of_labels_from_new_inputs() -> None:
    cfg = make_policy("triggered").config
    real = triggers.concept_change(_obs(_record(300, 150)), cfg)
    assert real is not None and real.real and 280 <= real.at <= 320
    assert "inputs did not drift" in real.detail
    moved = triggers.concept_change(_obs(_record(300, 150), shift=1.0), cfg)
    assert moved is not None and not moved.real and "inputs drifted too" in moved.detail
    assert triggers.concept_change(_obs(np.ones(400, bool)), cfg) is None
    assert triggers.concept_change(_obs(_record(300, 150)), {"detector": "none"}) is None


def test_triggered_learns_after_the_change_and_waits_for_enough_rows() -> None:
    policy = make_policy({"name": "triggered", "cooldown_s": 0, "min_after_change": 100})
    d = policy.decide(_obs(_record(300, 150)))
    assert d.run and 280 <= d.since <= 320 and "inputs did not drift" in d.change
    assert f"learns the {450 - d.since} rows after the change" in d.reason
    early = policy.decide(_obs(_record(300, 60)))
    assert not early.run and "min_after_change=100" in early.reason
    moved = policy.decide(_obs(_record(300, 150), shift=1.0))
    assert moved.run and (moved.since, moved.change) == (0, "")  # new inputs: keep all


def test_the_gate_waives_the_forgetting_check_only_on_a_change() -> None:
    th = gate.check_gate(None)
    cand, prod = {"new": 0.9, "earlier": 0.5}, {"new": 0.6, "earlier": 0.9}
    verdict, figures = gate.judge(th, cand, prod)
    assert verdict == "rejected" and "earlier holdouts" in figures["verdict_reason"]
    verdict, figures = gate.judge(th, cand, prod, change="accuracy decline (...)")
    assert verdict == "promoted" and figures["checked"] == ["new"]
    assert "forgetting check waived: concept drift detected" in figures["verdict_reason"]
    assert figures["forgetting_check"].startswith("waived: concept drift detected")
    worse = gate.judge(th, {"new": 0.5, "earlier": 0.5}, prod, change="x")  # new still checked
    assert worse[0] == "rejected" and "newest holdout" in worse[1]["verdict_reason"]
    off = gate.check_gate({"waive_forgetting_on_change": False})
    assert gate.judge(off, cand, prod, change="x")[0] == "rejected"
    with pytest.raises(deploy.DeployError, match="waive_forgetting_on_change=2"):
        gate.check_gate({"waive_forgetting_on_change": 2})


def _drifted(dep: Path, data, waive: bool) -> dict:
    """v1.0 on 150 labelled rows; then 200 rows of the same inputs, the last 140 with
    their labels permuted (a change of P(y | x)); then a triggered update."""
    x, y = data
    train = TrainConfig(epochs=20, batch_size=16, lr=0.05, momentum=0.9)
    policy = {"name": "triggered", "cooldown_s": 0, "min_after_change": 50}
    deploy.create(dep, model="mlp(hidden=(32,))", strategy="naive", policy=policy,
                  config=train, gate={"waive_forgetting_on_change": waive})  # fmt: skip
    deploy.ingest(dep, x[:150], y[:150], now=0.0)
    deploy.update(dep, force=True, now=0.0)
    later = y[150:350].copy()
    later[60:] = (later[60:] + 1) % (int(y.max()) + 1)
    deploy.ingest(dep, x[150:350], later, now=HOUR)
    return deploy.update(dep, now=2 * HOUR)


def test_an_update_after_a_concept_change_learns_after_it_and_is_not_held_back(
    tmp_path: Path, data
) -> None:
    out = _drifted(tmp_path / "on", data, waive=True)
    assert out["ran"] and "rows after the change" in out["reason"]
    assert out["trained_on"] < 0.8 * 200  # the rows before the change are not learned
    assert "forgetting check waived: concept drift detected" in out["verdict_reason"]
    assert out["verdict"] == "promoted"
    log = deploy.status(tmp_path / "on")["last_gate"]
    assert "forgetting check waived" in log["verdict_reason"]
    off = _drifted(tmp_path / "off", data, waive=False)
    assert off["trained_on"] == out["trained_on"]
    assert "waived" not in off["verdict_reason"] and "earlier" in off["checked"]
