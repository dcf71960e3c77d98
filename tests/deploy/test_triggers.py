"""The triggers: a calibrated input-drift test, accuracy decline (river), volume, staleness."""

from __future__ import annotations

import numpy as np
import pytest

from lifelong.deploy import triggers as T


def _blobs(n: int, d: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_drift_false_alarm_rate_is_calibrated_on_a_stable_stream(alpha: float) -> None:
    """Over many reference/recent splits of one stable sample, the test fires at most
    `alpha` of the time (plus the binomial noise of 120 trials)."""
    pool = _blobs(600, seed=1)
    fires = 0
    trials = 120
    for s in range(trials):
        order = np.random.default_rng(100 + s).permutation(len(pool))
        r = T.input_drift(pool[order[:300]], pool[order[300:450]], alpha, seed=s)
        fires += r.fired
    tolerance = 2.5 * np.sqrt(alpha * (1 - alpha) / trials)
    assert fires / trials <= alpha + tolerance
    assert fires > 0  # a test that never fires is not calibrated either (alpha=0.05: P(0) < 1%)


def test_drift_fires_on_shifted_inputs_and_reports_p_value() -> None:
    ref, rec = _blobs(400, seed=2), _blobs(200, seed=3) + 0.5
    r = T.input_drift(ref, rec, 0.01)
    assert r.fired and r.name == "drift"
    assert r.threshold == pytest.approx(0.99) and r.score >= r.threshold
    assert "p=" in r.detail
    assert not T.input_drift(ref, _blobs(200, seed=4), 0.01).fired


def test_drift_is_reproducible_and_seeded() -> None:
    ref, rec = _blobs(300, seed=5), _blobs(150, seed=6) + 0.15
    assert T.input_drift(ref, rec, 0.05, seed=7) == T.input_drift(ref, rec, 0.05, seed=7)


def test_drift_works_on_images_and_needs_enough_rows() -> None:
    imgs = np.random.default_rng(0).random((300, 1, 8, 8)).astype(np.float32)
    assert T.input_drift(imgs[:200], imgs[200:] * 0.2, 0.01).fired
    few = T.input_drift(imgs[:200], imgs[200:220], 0.01, min_recent=50)
    assert not few.fired and few.score == 0.0 and "too few" in few.detail
    with pytest.raises(ValueError, match="12 values"):
        T.input_drift(_blobs(200), _blobs(200, d=5), 0.01)


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
def test_accuracy_decline_fires_on_a_drop_only(detector: str) -> None:
    rng = np.random.default_rng(0)
    drop = np.r_[rng.random(600) < 0.9, rng.random(600) < 0.5]
    rise = np.r_[rng.random(600) < 0.5, rng.random(600) < 0.9]
    stable = rng.random(1200) < 0.9
    r = T.accuracy_decline(drop, detector)
    assert r.fired and r.score >= 1 and r.threshold == 1.0
    first = T.decline_alarms(drop, detector)[0]
    assert 600 <= first < 900  # after the drop, within 300 labels
    assert not T.accuracy_decline(rise, detector).fired
    assert not T.accuracy_decline(stable, detector).fired
    assert not T.accuracy_decline(np.zeros(0, bool), detector).fired


def test_unknown_detector_is_named() -> None:
    with pytest.raises(ValueError, match="'kswin'"):
        T.decline_alarms(np.ones(10, bool), "kswin")


def test_volume_and_staleness() -> None:
    assert T.data_volume(500, 500).fired and not T.data_volume(499, 500).fired
    s = T.staleness(7200.0, 3600.0)
    assert s.fired and s.score == 7200.0 and s.threshold == 3600.0


def test_evaluate_switches_triggers_by_config_and_scores_them() -> None:
    from lifelong.deploy.policies import Observation, check_policy

    obs = Observation(
        now=10_000.0, last_update_at=0.0, labelled_since=50,
        reference_x=_blobs(200), recent_x=_blobs(200, seed=9) + 1.0,
        recent_correct=np.ones(50, bool),
    )  # fmt: skip
    cfg = check_policy({"name": "triggered", "max_labelled": 40, "max_age_s": 20_000})
    results = {r.name: r for r in T.evaluate(obs, cfg)}
    assert set(results) == {"drift", "accuracy", "volume", "staleness"}
    assert results["drift"].fired and results["volume"].fired
    assert not results["accuracy"].fired and not results["staleness"].fired
    scores = T.as_scores(list(results.values()))
    assert scores["volume"] == 50 and scores["volume_threshold"] == 40
    assert scores["drift_fired"] == 1.0 and scores["staleness_fired"] == 0.0
    off = check_policy({"name": "triggered", "drift_alpha": None, "detector": "none"})
    assert T.evaluate(obs, off) == []


def test_a_steady_shortfall_against_production_baseline_fires() -> None:
    """A model that is steadily bad gives ADWIN no change to see; the level test does."""
    rng = np.random.default_rng(3)
    steady = rng.random(300) < 0.6
    assert not T.accuracy_decline(steady).fired
    low = T.accuracy_decline(steady, baseline=0.9, margin=0.05)
    assert low.fired and "below production's 0.900" in low.detail
    assert not T.accuracy_decline(steady, baseline=0.62, margin=0.05).fired
    assert not T.accuracy_decline(steady[:20], baseline=0.9).fired  # too few labels
    assert not T.accuracy_decline(steady, baseline=0.9, margin=None).fired
