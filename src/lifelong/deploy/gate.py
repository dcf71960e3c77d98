"""Holdouts and the evaluation gate.

Each update holds out the newest `holdout_fraction` of its window's labelled samples
(rows of the `holdouts` table, tagged with the version that took them): they are never
trained on. The gate compares the candidate with production on the newest holdout (this
window's) and on the holdouts of earlier windows (the forgetting check): the candidate
passes when it is no worse than production by more than `max_drop` on the first and
`max_forgetting_drop` on the second (1 point each by default). A candidate with no
production to compare with (the first version) passes; a check with no samples is skipped.

After a detected concept change (the update's `change`: production's accuracy on the
labelled feedback declined while its inputs did not drift, see `triggers.concept_change`),
the earlier holdouts are labelled by the old concept, where doing worse is the point: with
`waive_forgetting_on_change` (on by default; 0 switches it off) the forgetting check is
waived and the verdict says so. The newest-holdout check always applies.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lifelong.deploy.data import Samples
from lifelong.deploy.errors import DeployError

GATE_DEFAULTS: dict[str, float] = {
    "holdout_fraction": 0.2,
    "max_drop": 0.01,
    "max_forgetting_drop": 0.01,
    "waive_forgetting_on_change": 1.0,  # 1: on, 0: off (true/false accepted)
}
_SWITCHES = ("waive_forgetting_on_change",)


def check_gate(config: dict[str, Any] | None) -> dict[str, float]:
    """The gate's thresholds with defaults filled in; `DeployError` naming a bad key."""
    out = dict(GATE_DEFAULTS)
    for key, value in (config or {}).items():
        if key not in out:
            raise DeployError(f"unknown gate setting {key!r}; expected one of {', '.join(out)}")
        if key in _SWITCHES:
            if value not in (0, 1):  # True and False compare equal to 1 and 0
                raise DeployError(f"gate {key}={value!r}: must be true/false (1/0)")
            out[key] = float(value)
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and value >= 0
        if key == "holdout_fraction":
            ok = ok and value < 1
        if not ok:
            raise DeployError(f"gate {key}={value!r}: must be a number >= 0 (fraction < 1)")
        out[key] = float(value)
    return out


def split(window: Samples, fraction: float) -> tuple[Samples, Samples]:
    """(to train on, to hold out): the newest `fraction` of a window (none below 5 samples)."""
    n = len(window)
    n_hold = int(n * fraction) if n >= 5 else 0
    mask = np.arange(n) < n - n_hold
    return window.take(mask), window.take(~mask)


def accuracy(learner: Any, data: Samples) -> float | None:
    """Accuracy of `learner` on labelled samples (None when there are none)."""
    if len(data) == 0:
        return None
    task = data.t if learner.scenario == "task" else None
    return float((learner.predict(data.x, task=task).numpy() == data.y).mean())


def judge(
    thresholds: dict[str, float],
    candidate: dict[str, float | None],
    production: dict[str, float | None] | None,
    *,
    change: str = "",
) -> tuple[str, dict[str, Any]]:
    """The verdict ("promoted" | "rejected") and its figures, from the accuracies of the
    candidate and of production on the holdouts (`{"new": ..., "earlier": ...}`);
    `change`: the concept change detected before the update ("" none)."""
    figures: dict[str, Any] = {
        "holdout_accuracy": candidate["new"],
        "earlier_holdout_accuracy": candidate["earlier"],
    }
    if production is None:
        return "promoted", {
            **figures,
            "verdict_reason": "first version: nothing to compare against",
        }
    figures.update(
        production_accuracy=production["new"],
        production_earlier_accuracy=production["earlier"],
    )
    failed, keys = [], ["new", "earlier"]
    if change and thresholds.get("waive_forgetting_on_change"):
        keys = ["new"]
        figures["forgetting_check"] = f"waived: concept drift detected ({change})"
    for key, limit in (("new", "max_drop"), ("earlier", "max_forgetting_drop")):
        if key not in keys:
            continue
        c, p = candidate[key], production[key]
        if c is not None and p is not None and c < p - thresholds[limit]:
            what = "newest holdout" if key == "new" else "earlier holdouts"
            failed.append(f"{what}: {c:.4f} < production {p:.4f} - {limit}={thresholds[limit]:g}")
    checked = [k for k in keys if candidate[k] is not None and production[k] is not None]
    figures["checked"] = checked
    waived = "; forgetting check waived: concept drift detected" if keys == ["new"] else ""
    if failed:
        return "rejected", {**figures, "verdict_reason": "; ".join(failed) + waived}
    why = "passed " + (" and ".join(checked) if checked else "(no holdout to check: passes)")
    return "promoted", {**figures, "verdict_reason": why + waived}
