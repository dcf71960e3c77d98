"""Holdouts and the gate: each update holds out the newest part of its window (rows of
the store, never trained on); a candidate that forgets earlier windows is rejected (kept
as a version, not promoted), with its figures in the audit log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from lifelong import deploy
from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment


def _two_windows(dep: Path, x: np.ndarray, y: np.ndarray) -> tuple[dict, dict]:
    """v1.0 learns classes 0-2, then a stateful update sees only classes 3-5."""
    old, new = np.flatnonzero(y < 3)[:100], np.flatnonzero(y >= 3)[:100]
    deploy.ingest(dep, x[old], y[old])
    first = deploy.update(dep, force=True)
    deploy.ingest(dep, x[new], y[new])
    return first, deploy.update(dep, force=True)


def test_holdouts_are_rows_of_each_window_and_never_trained_on(tmp_path: Path, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, model="mlp(hidden=(16,))", strategy="naive")
    first, second = _two_windows(dep, x, y)
    assert (first["holdout"], second["holdout"], second["earlier_holdout"]) == (20, 20, 20)
    h, s = store.holdouts, store.samples
    with Deployment(dep) as d, d.engine.connect() as conn:
        rows = conn.execute(select(h.c.window, s.c.label).join(s, s.c.id == h.c.sample_id)).all()
    assert sorted({w for w, _ in rows}) == ["v1.0", "v1.1"]
    assert all(lab < 3 for w, lab in rows if w == "v1.0")
    assert all(lab >= 3 for w, lab in rows if w == "v1.1")
    # v1.1 was rejected (it forgets): its training part is pending again, its holdout not
    assert deploy.status(dep)["pending_labelled"] == (0 if second["verdict"] == "promoted" else 80)


def test_a_candidate_that_forgets_is_rejected_and_kept(tmp_path: Path, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, model="mlp(hidden=(16,))", strategy="naive")
    _, out = _two_windows(dep, x, y)
    # production knows none of the new classes; naive forgets the old ones
    assert out["holdout_accuracy"] > out["production_accuracy"]
    assert out["earlier_holdout_accuracy"] < out["production_earlier_accuracy"] - 0.01
    assert out["verdict"] == "rejected" and "earlier holdouts" in out["verdict_reason"]
    s = deploy.status(dep)
    assert (s["production"], s["candidate"]) == ("v1.0", "v1.1")
    assert [v["verdict"] for v in s["versions"]] == ["promoted", "rejected"]
    gate = s["last_gate"]
    assert gate["verdict"] == "rejected" and gate["earlier_holdout_accuracy"] == pytest.approx(
        out["earlier_holdout_accuracy"]
    )


def test_the_thresholds_come_from_the_config(tmp_path: Path, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(
        dep, model="mlp(hidden=(16,))", strategy="naive", gate={"max_forgetting_drop": 1.0}
    )
    _, out = _two_windows(dep, x, y)
    assert out["verdict"] == "promoted" and deploy.status(dep)["production"] == "v1.1"
    with pytest.raises(deploy.DeployError, match="unknown gate setting 'max'"):
        deploy.create(tmp_path / "bad", model="mlp", strategy="naive", gate={"max": 1})
    with pytest.raises(deploy.DeployError, match="holdout_fraction=1.5"):
        deploy.create(
            tmp_path / "bad", model="mlp", strategy="naive", gate={"holdout_fraction": 1.5}
        )
