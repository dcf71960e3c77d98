"""The four update policies: pure decisions from an `Observation`."""

from __future__ import annotations

import numpy as np
import pytest

from lifelong.deploy.policies import (
    POLICY_NAMES,
    Decision,
    Observation,
    check_policy,
    make_policy,
    policy_defaults,
)

HOUR = 3600.0


def _obs(
    now: float = 10 * HOUR,
    last: float | None = 0.0,
    labelled: int = 100,
    shift: float = 0.0,
    correct: np.ndarray | None = None,
) -> Observation:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((300, 8)).astype(np.float32)
    rec = (rng.standard_normal((200, 8)) + shift).astype(np.float32)
    ok = np.ones(labelled, bool) if correct is None else correct
    return Observation(now, last, labelled, ref, rec, ok)


def test_names_defaults_and_spec_strings() -> None:
    assert POLICY_NAMES == ("manual", "scheduled", "stateful", "triggered")
    assert policy_defaults("scheduled") == {
        "name": "scheduled",
        "every_s": 86400.0,
        "min_labelled": 2,
    }
    cfg = check_policy("triggered(cooldown_s=60, detector=page_hinkley)")
    assert cfg["cooldown_s"] == 60.0 and cfg["detector"] == "page_hinkley"
    assert check_policy(cfg) == cfg  # idempotent: a stored config checks to itself
    assert make_policy({"name": "stateful", "every_labelled": 50}).name == "stateful"


@pytest.mark.parametrize(
    "config, match",
    [
        ({"name": "hourly"}, "unknown policy 'hourly'"),
        ({"name": "scheduled", "every_s": -5}, "every_s=-5"),
        ({"name": "scheduled", "every": 5}, "no parameter 'every'"),
        ({"name": "stateful", "every_labelled": 2.5}, "every_labelled=2.5"),
        ({"name": "stateful", "every_s": None}, "set every_s or every_labelled"),
        ({"name": "triggered", "drift_alpha": 1.5}, "drift_alpha=1.5"),
        ({"name": "triggered", "detector": "kswin"}, "detector='kswin'"),
        ({"name": "triggered", "cooldown_s": None}, "cooldown_s=None"),
        ({"every_s": 5}, "with a 'name'"),
        ("triggered(cooldown_s=", "malformed|unclosed"),
    ],
)
def test_bad_configs_name_the_key_and_value(config: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_policy(config)  # type: ignore[arg-type]


def test_manual_runs_only_when_asked_and_from_scratch() -> None:
    p = make_policy({"name": "manual"})
    assert not p.decide(_obs()).run
    assert not p.decide(_obs(last=None)).run  # no version: it still waits to be asked
    d = p.decide(_obs(), forced=True)
    assert d == Decision(True, "scratch", d.reason, d.scores) and "forced" in d.reason


def test_scheduled_runs_from_scratch_when_due() -> None:
    p = make_policy({"name": "scheduled", "every_s": 4 * HOUR})
    assert p.decide(_obs(now=5 * HOUR)).run
    assert p.decide(_obs(now=5 * HOUR)).mode == "scratch"
    not_due = p.decide(_obs(now=3 * HOUR))
    assert not not_due.run and "not due" in not_due.reason
    assert not_due.scores == {"age_s": 3 * HOUR, "age_s_threshold": 4 * HOUR}
    first = p.decide(_obs(last=None))
    assert first.run and first.mode == "scratch" and "first" in first.reason
    assert not p.decide(_obs(now=5 * HOUR, labelled=1)).run  # below min_labelled


def test_stateful_is_due_by_time_or_by_volume() -> None:
    p = make_policy({"name": "stateful", "every_s": 4 * HOUR, "every_labelled": 500})
    by_time = p.decide(_obs(now=5 * HOUR, labelled=10))
    assert by_time.run and by_time.mode == "stateful" and "time" in by_time.reason
    by_volume = p.decide(_obs(now=HOUR, labelled=600))
    assert by_volume.run and "volume" in by_volume.reason
    assert not p.decide(_obs(now=HOUR, labelled=10)).run
    assert p.decide(_obs(last=None)).mode == "scratch"  # nothing to fine-tune yet
    assert p.decide(_obs(last=None), forced=True).mode == "scratch"
    assert p.decide(_obs(), forced=True).mode == "stateful"


def test_triggered_runs_on_a_trigger_after_the_cooldown() -> None:
    p = make_policy({"name": "triggered", "cooldown_s": 2 * HOUR, "drift_alpha": 0.01})
    stable = p.decide(_obs(now=5 * HOUR))
    assert not stable.run and stable.reason == "no trigger fired"
    assert stable.scores["drift_fired"] == 0.0 and stable.scores["drift_threshold"] == 0.99
    drift = p.decide(_obs(now=5 * HOUR, shift=1.0))
    assert drift.run and drift.mode == "stateful" and "drift" in drift.reason
    cooling = p.decide(_obs(now=HOUR, shift=1.0))
    assert not cooling.run and "cooldown" in cooling.reason
    rng = np.random.default_rng(1)
    worse = np.r_[rng.random(400) < 0.95, rng.random(400) < 0.5]
    decline = p.decide(_obs(now=5 * HOUR, labelled=800, correct=worse))
    assert decline.run and "accuracy" in decline.reason
    assert p.decide(_obs(now=HOUR), forced=True).run  # asked: runs even in cooldown


def test_schedules_and_cooldowns_count_from_the_last_attempt() -> None:
    """A rejected candidate leaves production as it was; the next try waits its turn."""
    from dataclasses import replace

    sched = make_policy({"name": "scheduled", "every_s": 4 * HOUR})
    assert sched.decide(_obs(now=5 * HOUR)).run
    assert not sched.decide(replace(_obs(now=5 * HOUR), last_attempt_at=3 * HOUR)).run
    trig = make_policy({"name": "triggered", "cooldown_s": 2 * HOUR})
    drift = _obs(now=5 * HOUR, shift=1.0)
    assert trig.decide(drift).run
    assert "cooldown" in trig.decide(replace(drift, last_attempt_at=4 * HOUR)).reason


def test_decisions_are_pure_functions_of_the_observation() -> None:
    """Restart-safe: a fresh policy object decides the same on the same observation."""
    obs = _obs(now=5 * HOUR, shift=0.3)
    cfg = {"name": "triggered", "cooldown_s": 0.0, "drift_alpha": 0.05}
    assert make_policy(cfg).decide(obs) == make_policy(cfg).decide(obs)
    p = make_policy(cfg)
    assert p.decide(obs) == p.decide(obs)
