"""How fast and how falsely the triggers fire: a model trained on the rows before the
stream starts is left as it is (no update), the stream arrives in batches, and after each
batch every detector looks at the window since its last alarm (inputs for the drift test,
the model's right/wrong record for the accuracy detectors). An alarm restarts the window.

Reported per detector: the delay of the first alarm after each known drift (in rows),
and the alarms before the first drift (false alarms), per 10,000 stable rows. Two
baselines frame them: `always` (fires at every check) and `periodic` (every `period` rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lifelong.deploy import triggers
from lifelong.simulate.streams import ProductionStream

DETECTORS = ("drift", "adwin", "page_hinkley", "always", "periodic")


def _fires(name: str, ref: np.ndarray, x: np.ndarray, ok: np.ndarray, opts: dict[str, Any]) -> bool:
    if name == "drift":
        seed = opts.get("seed", 0)
        return triggers.input_drift(ref, x, opts.get("alpha", 0.01), seed=seed).fired
    if name in ("adwin", "page_hinkley"):
        return triggers.accuracy_decline(ok, name, opts.get("delta", 0.002)).fired
    if name == "always":
        return True
    raise ValueError(f"unknown detector {name!r}: choose one of {', '.join(DETECTORS)}")


def alarms(
    stream: ProductionStream,
    correct: np.ndarray,
    start: int,
    name: str,
    batch_size: int = 100,
    **opts: Any,
) -> list[int]:
    """The rows (end of the batch) at which detector `name` fired on `stream[start:]`;
    `correct[i]`: the fixed model was right on row `start + i`."""
    ref = stream.x[max(0, start - 2000) : start]
    out: list[int] = []
    since = start
    for end in range(start + batch_size, len(stream) + 1, batch_size):
        if name == "periodic":
            fired = end - since >= opts.get("period", 1000)
        else:
            lo = max(since, end - 2000)
            fired = _fires(name, ref, stream.x[lo:end], correct[lo - start : end - start], opts)
        if fired:
            out.append(end)
            since = end
    return out


def score(stream: ProductionStream, start: int, fired_at: list[int]) -> dict[str, Any]:
    """Detection delays after each drift, and false alarms per 10,000 stable rows."""
    stable_end = stream.drifts[0] if stream.drifts else len(stream)
    false = sum(1 for a in fired_at if a <= stable_end)
    delays = []
    for i, d in enumerate(stream.drifts):
        nxt = stream.drifts[i + 1] if i + 1 < len(stream.drifts) else len(stream) + 1
        after = [a - d for a in fired_at if d < a < nxt]
        delays.append(after[0] if after else None)
    found = [d for d in delays if d is not None]
    return {
        "alarms": len(fired_at),
        "false_alarms": false,
        "stable_rows": stable_end - start,
        "false_per_10k": 1e4 * false / max(1, stable_end - start),
        "delays": delays,
        "mean_delay": float(np.mean(found)) if found else None,
        "missed": len(delays) - len(found),
    }


def fixed_model_correct(
    stream: ProductionStream, start: int, model: str = "mlp", epochs: int = 5, seed: int = 0
) -> np.ndarray:
    """Train a learner on `stream[:start]` and return whether it is right on each later row."""
    from lifelong.config import TrainConfig
    from lifelong.learner import Learner

    learner = Learner(model, "naive", config=TrainConfig(epochs=epochs), seed=seed)
    learner.learn(stream.x[:start], stream.y[:start])
    pred = learner.predict(stream.x[start:]).numpy()
    return pred == stream.y[start:]
