"""Update policies: the four stages of keeping a deployed model learning.

A policy looks at an `Observation` of the deployment (when production was trained, how
many labelled samples arrived since, the inputs it was trained on and those received
since, whether production was right on the labelled feedback) and returns a `Decision`:
run an update or not, from scratch or stateful, why, and the trigger scores. Decisions
are pure functions of the observation, so a deployment that restarts recomputes them
from its database and decides the same.

| stage | name | runs | mode |
|---|---|---|---|
| 1 | `manual` | only when asked (`forced`) | scratch |
| 2 | `scheduled` | every `every_s` seconds, or when asked | scratch |
| 3 | `stateful` | every `every_s` seconds or `every_labelled` labelled samples | stateful |
| 4 | `triggered` | when a trigger fires (drift, accuracy, volume, staleness) and the cooldown has passed | stateful |

When the accuracy trigger fires and the inputs did not drift (a change of P(y | x): the
old rows' labels are outdated), a `triggered` update learns only the labelled rows after
the estimated change point (`Decision.since`; it waits for `min_after_change` of them)
and the decision carries the change (`Decision.change`) so the gate can waive its
forgetting check. With new inputs (a new domain, new classes) the old rows' labels still
hold: it learns them all and the forgetting check stays.

Every policy trains the first version (mode `scratch`) once `min_labelled` labelled
samples are there, except `manual`, which waits to be asked. A config is a dict
(`{"name": "triggered", "cooldown_s": 600}`) or a spec string (`"triggered(cooldown_s=600)"`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from lifelong.deploy import triggers

POLICY_NAMES: tuple[str, ...] = ("manual", "scheduled", "stateful", "triggered")

_DAY = 86400.0
_DEFAULTS: dict[str, dict[str, Any]] = {
    "manual": {"min_labelled": 2},
    "scheduled": {"every_s": _DAY, "min_labelled": 2},
    "stateful": {"every_s": _DAY, "every_labelled": None, "min_labelled": 2},
    "triggered": {
        "cooldown_s": 3600.0,
        "min_labelled": 2,
        "drift_alpha": 0.01,
        "drift_min_recent": 100,
        "detector": "adwin",
        "delta": 0.002,
        "ph_threshold": 25.0,
        "margin": 0.05,
        "min_after_change": 50,
        "max_labelled": None,
        "max_age_s": None,
        "seed": 0,
    },
}


@dataclass(frozen=True)
class Observation:
    """What a policy sees of a deployment at time `now` (seconds, any epoch)."""

    now: float
    last_update_at: float | None  # when production was trained (None: no version yet)
    labelled_since: int  # labelled samples newer than production's window
    reference_x: np.ndarray  # up to 2000 inputs production was trained on (float32, rows)
    recent_x: np.ndarray  # up to 2000 inputs received since (ingested or predicted)
    recent_correct: np.ndarray  # bool: production right on each labelled sample since
    baseline_accuracy: float | None = None  # production's holdout accuracy when trained
    last_attempt_at: float | None = None  # when the last update ran (its candidate may be rejected)
    recent_lseq: np.ndarray | None = None  # label sequence numbers of `recent_correct`'s rows


@dataclass(frozen=True)
class Decision:
    run: bool
    mode: str  # "scratch" | "stateful"
    reason: str
    scores: dict[str, float] = field(default_factory=dict)
    since: int = 0  # rows of the labelled record before a detected change: not learned
    change: str = ""  # the detected concept change ("" none): the gate may waive forgetting


def policy_defaults(name: str) -> dict[str, Any]:
    """The parameters of policy `name` with their default values."""
    if name not in _DEFAULTS:
        raise ValueError(f"unknown policy {name!r}: choose one of {', '.join(POLICY_NAMES)}")
    return {"name": name, **_DEFAULTS[name]}


def _positive(key: str, value: Any, *, integer: bool = False, zero: bool = False) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value >= 0 if zero else value > 0)
    if ok and integer and float(value) != int(value):
        ok = False
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"policy {key}={value!r}: must be {kind} {'>= 0' if zero else '> 0'}")
    return int(value) if integer else float(value)


def _check_value(name: str, key: str, value: Any) -> Any:
    """`value` for `key` of policy `name`, checked (None switches an optional part off)."""
    optional = {"every_s", "every_labelled", "drift_alpha", "max_labelled", "max_age_s", "margin"}
    if value is None:
        if key in optional:
            return None
        raise ValueError(f"policy {key}=None: {name} needs a value")
    if key == "detector":
        if value not in triggers.DETECTORS:
            choices = ", ".join(triggers.DETECTORS)
            raise ValueError(f"policy detector={value!r}: choose one of {choices}")
        return value
    if key == "drift_alpha":
        if not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"policy drift_alpha={value!r}: a false-alarm rate in (0, 1)")
        return float(value)
    if key == "seed":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"policy seed={value!r}: must be an integer")
        return value
    integer = key in {"every_labelled", "min_labelled", "max_labelled", "drift_min_recent",
                      "min_after_change"}  # fmt: skip
    return _positive(key, value, integer=integer, zero=key == "cooldown_s")


def check_policy(config: dict[str, Any] | str) -> dict[str, Any]:
    """The full config (defaults filled in) of a policy config dict or spec string;
    `ValueError` naming the bad key or value."""
    if isinstance(config, str):
        from lifelong.spec import parse_one

        name, kwargs = parse_one(config)
        config = {"name": name, **kwargs}
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"a policy config is a dict with a 'name', got {config!r}")
    name = config["name"]
    out = policy_defaults(name)
    for key, value in config.items():
        if key == "name":
            continue
        if key not in out:
            known = ", ".join(k for k in out if k != "name") or "none"
            raise ValueError(f"policy {name!r} has no parameter {key!r} (it has: {known})")
        out[key] = _check_value(name, key, value)
    if name == "stateful" and out["every_s"] is None and out["every_labelled"] is None:
        raise ValueError("policy stateful: set every_s or every_labelled (or both)")
    return out


class Policy:
    """Base class: `decide(obs, forced)` -> `Decision`. Subclasses set `name`, `mode`
    and `due`."""

    name: ClassVar[str] = ""
    mode: ClassVar[str] = "scratch"

    def __init__(self, config: dict[str, Any] | str | None = None) -> None:
        self.config = check_policy(config if config is not None else {"name": self.name})

    def decide(self, obs: Observation, forced: bool = False) -> Decision:
        if forced:
            mode = self.mode if obs.last_update_at is not None else "scratch"
            return Decision(True, mode, "asked (forced)", self.scores(obs))
        if obs.labelled_since < self.config["min_labelled"]:
            why = f"{obs.labelled_since} labelled samples since the last update"
            why += f" (fewer than min_labelled={self.config['min_labelled']})"
            return Decision(False, self.mode, why, self.scores(obs))
        if obs.last_update_at is None:
            if self.name == "manual":
                return Decision(False, "scratch", "no version yet: waiting to be asked")
            return Decision(True, "scratch", "no version yet: first training", self.scores(obs))
        return self.due(obs)

    def scores(self, obs: Observation) -> dict[str, float]:
        return {}

    def due(self, obs: Observation) -> Decision:
        raise NotImplementedError


def _age(obs: Observation) -> float:
    """Seconds since the last update ran (promoted or not): schedules and cooldowns count
    from it, so a rejected candidate is not retried at every call."""
    times = [t for t in (obs.last_update_at, obs.last_attempt_at) if t is not None]
    return obs.now - max(times) if times else 0.0


class Manual(Policy):
    """Stage 1: retrain from scratch on the retained data, only when asked."""

    name = "manual"

    def due(self, obs: Observation) -> Decision:
        return Decision(False, "scratch", "manual: runs only when asked")


class Scheduled(Policy):
    """Stage 2: retrain from scratch every `every_s` seconds (what a cron job runs)."""

    name = "scheduled"

    def scores(self, obs: Observation) -> dict[str, float]:
        return {"age_s": _age(obs), "age_s_threshold": self.config["every_s"]}

    def due(self, obs: Observation) -> Decision:
        age, every = _age(obs), self.config["every_s"]
        if age >= every:
            return Decision(
                True, "scratch", f"due: {age:.0f}s >= every_s={every:g}", self.scores(obs)
            )
        return Decision(
            False, "scratch", f"not due: {age:.0f}s < every_s={every:g}", self.scores(obs)
        )


class Stateful(Policy):
    """Stage 3: fine-tune production on the data since the last update, when due by time
    (`every_s`) or by labelled volume (`every_labelled`)."""

    name = "stateful"
    mode = "stateful"

    def scores(self, obs: Observation) -> dict[str, float]:
        out: dict[str, float] = {"age_s": _age(obs), "labelled": float(obs.labelled_since)}
        if self.config["every_s"] is not None:
            out["age_s_threshold"] = self.config["every_s"]
        if self.config["every_labelled"] is not None:
            out["labelled_threshold"] = float(self.config["every_labelled"])
        return out

    def due(self, obs: Observation) -> Decision:
        every_s, every_n = self.config["every_s"], self.config["every_labelled"]
        if every_s is not None and _age(obs) >= every_s:
            why = f"due by time: {_age(obs):.0f}s >= every_s={every_s:g}"
        elif every_n is not None and obs.labelled_since >= every_n:
            why = f"due by volume: {obs.labelled_since} >= every_labelled={every_n}"
        else:
            return Decision(False, "stateful", "not due", self.scores(obs))
        return Decision(True, "stateful", why, self.scores(obs))


class Triggered(Policy):
    """Stage 4: a stateful update only when a trigger fires (input drift, accuracy
    decline, data volume, staleness) and `cooldown_s` has passed since the last one."""

    name = "triggered"
    mode = "stateful"

    def results(self, obs: Observation) -> list[triggers.TriggerResult]:
        return triggers.evaluate(obs, self.config)

    def scores(self, obs: Observation) -> dict[str, float]:
        return triggers.as_scores(self.results(obs))

    def due(self, obs: Observation) -> Decision:
        results = self.results(obs)
        scores = triggers.as_scores(results)
        fired = [r.name for r in results if r.fired]
        if not fired:
            return Decision(False, "stateful", "no trigger fired", scores)
        cooldown = self.config["cooldown_s"]
        if _age(obs) < cooldown:
            why = f"{', '.join(fired)} fired, but in cooldown ({_age(obs):.0f}s < {cooldown:g}s)"
            return Decision(False, "stateful", why, scores)
        change = triggers.concept_change(obs, self.config) if "accuracy" in fired else None
        if change is None or not change.real:  # new inputs: the old rows' labels still hold
            return Decision(True, "stateful", f"fired: {', '.join(fired)}", scores)
        after, need = obs.labelled_since - change.at, self.config["min_after_change"]
        if after < need and fired == ["accuracy"]:
            why = f"accuracy fired; {after} labelled rows after the change"
            return Decision(False, "stateful", f"{why} (min_after_change={need})", scores)
        since = change.at if after >= need else 0
        why = f"fired: {', '.join(fired)}; learns the {obs.labelled_since - since} rows after"
        return Decision(True, "stateful", f"{why} the change", scores, since, change.detail)


_CLASSES: dict[str, type[Policy]] = {c.name: c for c in (Manual, Scheduled, Stateful, Triggered)}


def make_policy(config: dict[str, Any] | str) -> Policy:
    """The policy object for a config dict (`{"name": ..., **params}`) or spec string."""
    full = check_policy(config)
    return _CLASSES[full["name"]](full)
