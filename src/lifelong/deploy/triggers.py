"""Triggers for the `triggered` policy: input drift, accuracy decline, data volume,
staleness. Each returns a `TriggerResult` (a score, the threshold it fires at, fired).

**Input drift** is a permutation two-sample test between the inputs production was
trained on (`reference_x`) and those received since (`recent_x`). The statistic is the
maximum mean discrepancy (MMD, Gaussian kernel) between the two samples, computed with
random Fourier features on a PCA projection. The projection and the kernel width are
fitted on the pooled sample (a symmetric function of it), so under no drift the rows
stay exchangeable and the permutation null is exact: the test fires when the p-value
`(1 + #{null >= observed}) / (1 + permutations)` is at most `alpha`, so a stable stream
fires at most a fraction `alpha` of checks. Its score is `1 - p` and its threshold
`1 - alpha`. Everything is seeded: the same inputs give the same answer.

**Accuracy decline** replays production's right/wrong record on the labelled feedback
since it was trained (`recent_correct`, arrival order) through river's ADWIN (or
Page-Hinkley, mode "up") on the error indicator; it fires on a detected *rise* of the
error rate, or, when the observation carries production's holdout accuracy from when it
was trained, on a steady shortfall: the feedback's accuracy below that baseline minus
`margin` beyond Hoeffding's bound (a change detector does not fire again on a model that
is steadily bad). Its score is the number of such alarms, its threshold 1.

**Where the change was** (`concept_change`): when the accuracy trigger fires on a rise
of the error rate, the change point is estimated on the record up to the last alarm as
the split that maximises the standardised rise of the error rate after it over before it
(the maximum-likelihood single mean shift, a CUSUM estimate); a steady shortfall with no
alarm puts it at the start of the record. When, in addition, the input drift test does
*not* fire, the change is one of P(y | x) (a real concept drift: the same inputs now take
other labels), so the labels before it are outdated: a `triggered` update learns only the
rows after it, and the gate may waive its forgetting check. A decline that comes with new
inputs (new classes, a new domain) keeps both the old rows and the check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DETECTORS: tuple[str, ...] = ("adwin", "page_hinkley", "none")


@dataclass(frozen=True)
class TriggerResult:
    name: str
    score: float
    threshold: float  # fires when score reaches it (see each trigger)
    fired: bool
    detail: str = ""


def _rows(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x[np.sort(rng.choice(len(x), n, replace=False))] if len(x) > n else x


def _project(z: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The top-k principal components of `z` (randomized range finder)."""
    z = z - z.mean(axis=0)
    k = min(k, z.shape[1], z.shape[0] - 1)
    if z.shape[1] <= k:
        return z
    q = z @ rng.standard_normal((z.shape[1], k + 8))
    for _ in range(2):  # power iterations sharpen the top directions
        q, _r = np.linalg.qr(z @ (z.T @ q))
    _u, _s, vt = np.linalg.svd(q.T @ z, full_matrices=False)
    return z @ vt[:k].T


def _features(p: np.ndarray, n_features: int, rng: np.random.Generator) -> np.ndarray:
    """Random Fourier features of a Gaussian kernel whose width is the median distance."""
    sub = p[rng.choice(len(p), min(len(p), 400), replace=False)]
    d = np.sqrt(((sub[:, None, :] - sub[None, :, :]) ** 2).sum(-1))
    width = float(np.median(d[d > 0])) if (d > 0).any() else 1.0
    w = rng.standard_normal((p.shape[1], n_features)) / width
    b = rng.uniform(0, 2 * math.pi, n_features)
    return np.sqrt(2.0 / n_features) * np.cos(p @ w + b)


def input_drift(
    reference_x: np.ndarray,
    recent_x: np.ndarray,
    alpha: float = 0.01,
    *,
    min_recent: int = 100,
    components: int = 8,
    n_features: int = 64,
    permutations: int | None = None,
    max_rows: int = 2000,
    seed: int = 0,
) -> TriggerResult:
    """The calibrated two-sample test described in the module docstring; it does not
    fire with fewer than `min_recent` recent (or reference) rows."""
    threshold = 1.0 - alpha
    n_ref, n_rec = len(reference_x), len(recent_x)
    if n_rec < min_recent or n_ref < min_recent:
        detail = f"too few inputs to test ({n_ref} reference, {n_rec} recent; {min_recent} needed)"
        return TriggerResult("drift", 0.0, threshold, False, detail)
    rng = np.random.default_rng(seed)
    ref, rec = _rows(reference_x, max_rows, rng), _rows(recent_x, max_rows, rng)
    if ref.shape[1] != rec.shape[1]:
        raise ValueError(f"reference rows have {ref.shape[1]} values, recent rows {rec.shape[1]}")
    phi = _features(_project(np.vstack([ref, rec]), components, rng), n_features, rng)
    n_perm = permutations or max(199, math.ceil(2.0 / alpha))
    base = np.concatenate([np.full(len(ref), 1.0 / len(ref)), np.full(len(rec), -1.0 / len(rec))])
    observed = float(((base @ phi) ** 2).sum())
    null = ((rng.permuted(np.tile(base, (n_perm, 1)), axis=1) @ phi) ** 2).sum(axis=1)
    p = (1 + int((null >= observed).sum())) / (1 + n_perm)
    detail = f"MMD^2={observed:.3g}, p={p:.3g} ({n_perm} permutations, {len(ref)} vs {len(rec)})"
    return TriggerResult("drift", 1.0 - p, threshold, p <= alpha, detail)


def decline_alarms(
    correct: np.ndarray, detector: str = "adwin", delta: float = 0.002, threshold: float = 25.0
) -> list[int]:
    """Positions in `correct` where the detector saw the error rate rise."""
    from river import drift

    if detector == "adwin":
        det: Any = drift.ADWIN(delta=delta)
    elif detector == "page_hinkley":
        det = drift.PageHinkley(threshold=threshold, mode="up")
    else:
        raise ValueError(f"detector={detector!r}: choose one of {', '.join(DETECTORS[:2])}")
    alarms = []
    for i, ok in enumerate(np.asarray(correct, dtype=bool).tolist()):
        before = getattr(det, "estimation", 0.0)
        det.update(0.0 if ok else 1.0)
        if det.drift_detected and (detector != "adwin" or det.estimation > before):
            alarms.append(i)
    return alarms


def below_baseline(correct: np.ndarray, baseline: float, margin: float, delta: float) -> bool:
    """True when the accuracy on `correct` is below `baseline - margin` beyond Hoeffding's
    bound at confidence `delta` (a level test: ADWIN sees changes, not a steady shortfall)."""
    n = len(correct)
    if n < 30:
        return False
    return float(np.mean(correct)) < baseline - margin - math.sqrt(math.log(1 / delta) / (2 * n))


def accuracy_decline(
    correct: np.ndarray,
    detector: str = "adwin",
    delta: float = 0.002,
    threshold: float = 25.0,
    *,
    baseline: float | None = None,
    margin: float | None = 0.05,
) -> TriggerResult:
    """Fires when the detector sees production's error rate rise on the feedback, or
    (with `baseline`, production's holdout accuracy when it was trained, and `margin`)
    when the feedback's accuracy is significantly below `baseline - margin`."""
    alarms = decline_alarms(correct, detector, delta, threshold)
    acc = float(np.mean(correct)) if len(correct) else float("nan")
    detail = f"{detector}: {len(alarms)} alarms on {len(correct)} labelled (accuracy {acc:.3f})"
    if alarms:
        detail += f", first at {alarms[0]}"
    low = baseline is not None and margin is not None
    low = low and below_baseline(correct, float(baseline), float(margin), delta)  # type: ignore[arg-type]
    if low:
        detail += f"; below production's {baseline:.3f} - {margin:g}"
    score = float(len(alarms) + low)
    return TriggerResult("accuracy", score, 1.0, score >= 1, detail)


@dataclass(frozen=True)
class Change:
    """A detected change: `at` rows of the labelled record came before it; `real`: the
    inputs did not drift (a change of P(y | x), whose old labels are outdated)."""

    at: int
    detail: str
    real: bool


def change_point(errors: np.ndarray) -> int:
    """The split `k` (1 <= k < n) of an error indicator record where the error rate
    rises most, in standard units: argmax of sqrt(k (n - k) / n) (mean after - mean before)."""
    e = np.asarray(errors, dtype=np.float64)
    n = len(e)
    if n < 2:
        return 0
    c, k = np.cumsum(e), np.arange(1, n)
    rise = (c[-1] - c[:-1]) / (n - k) - c[:-1] / k
    return int(k[np.argmax(np.sqrt(k * (n - k) / n) * rise)])


def concept_change(obs: Any, config: dict[str, Any]) -> Change | None:
    """The concept change the accuracy trigger of `config` sees in `obs.recent_correct`
    (None when it does not fire, or when its detector is "none")."""
    detector = config.get("detector", "none")
    if detector == "none":
        return None
    correct = np.asarray(obs.recent_correct, dtype=bool)
    result = accuracy_decline(
        correct, detector, config.get("delta", 0.002), config.get("ph_threshold", 25.0),
        baseline=getattr(obs, "baseline_accuracy", None), margin=config.get("margin", 0.05),
    )  # fmt: skip
    if not result.fired:
        return None
    alarms = decline_alarms(correct, detector, config.get("delta", 0.002),
                            config.get("ph_threshold", 25.0))  # fmt: skip
    at = change_point(~correct[: alarms[-1] + 1]) if alarms else 0
    where = f"after {at} of {len(correct)} labelled rows" if at else "before the record"
    inputs = input_drift(
        obs.reference_x, obs.recent_x, config.get("drift_alpha") or 0.01,
        min_recent=config.get("drift_min_recent", 100), seed=config.get("seed", 0),
    )  # fmt: skip
    kind = "inputs drifted too" if inputs.fired else "inputs did not drift"
    detail = f"accuracy decline ({result.detail}); change {where}; {kind} ({inputs.detail})"
    return Change(at, detail, not inputs.fired)


def data_volume(labelled_since: int, max_labelled: int) -> TriggerResult:
    fired = labelled_since >= max_labelled
    return TriggerResult("volume", float(labelled_since), float(max_labelled), fired)


def staleness(age_s: float, max_age_s: float) -> TriggerResult:
    return TriggerResult("staleness", float(age_s), float(max_age_s), age_s >= max_age_s)


def evaluate(obs: Any, config: dict[str, Any]) -> list[TriggerResult]:
    """The triggers a `triggered` policy config switches on, checked on `obs`."""
    out = []
    if config.get("drift_alpha") is not None:
        out.append(
            input_drift(
                obs.reference_x, obs.recent_x, config["drift_alpha"],
                min_recent=config.get("drift_min_recent", 100), seed=config.get("seed", 0),
            )
        )  # fmt: skip
    if config.get("detector", "none") != "none":
        out.append(
            accuracy_decline(
                obs.recent_correct, config["detector"], config.get("delta", 0.002),
                config.get("ph_threshold", 25.0),
                baseline=getattr(obs, "baseline_accuracy", None), margin=config.get("margin", 0.05),
            )
        )  # fmt: skip
    if config.get("max_labelled") is not None:
        out.append(data_volume(obs.labelled_since, config["max_labelled"]))
    if config.get("max_age_s") is not None and obs.last_update_at is not None:
        out.append(staleness(obs.now - obs.last_update_at, config["max_age_s"]))
    return out


def as_scores(results: list[TriggerResult]) -> dict[str, float]:
    """{name: score, name_threshold: threshold, name_fired: 0 or 1} for the audit log."""
    scores: dict[str, float] = {}
    for r in results:
        scores[r.name] = round(r.score, 6)
        scores[f"{r.name}_threshold"] = round(r.threshold, 6)
        scores[f"{r.name}_fired"] = float(r.fired)
    return scores
