"""The production simulator: one real deployment per policy (an SQLite database in the
out folder), fed a `ProductionStream` batch by batch over simulated time.

    warm-up rows, labelled, at t=0 -> update(force=True): v1.0
    for each batch b at t = (b + 1) * seconds_per_batch:
        predict(batch, now=t)        # prequential: scored before anything learns from it
        label(batch b - k)           # labels arrive `label_delay` batches late
        update(now=t)                # the deployment's policy decides

Reported per policy: accuracy per batch and overall (prequential), after each drift,
updates made (and their modes and gate verdicts), training seconds, samples retained in
the store, trigger alarms.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.simulate.settings import SimulationSettings
from lifelong.simulate.streams import ProductionStream


def default_policies(seconds_per_batch: float, batch_size: int = 100) -> dict[str, dict[str, Any]]:
    """The four stages as the simulator runs them by default (times in batches):
    scheduled retrains every 10 batches, stateful fine-tunes after every batch, triggered
    updates on a drift or accuracy alarm (2 batches' cooldown) or after 10 batches' labels."""
    b = float(seconds_per_batch)
    return {
        "manual": {"name": "manual"},
        "scheduled": {"name": "scheduled", "every_s": 10 * b},
        "stateful": {"name": "stateful", "every_s": b},
        "triggered": {
            "name": "triggered",
            "cooldown_s": 2 * b,
            "drift_alpha": 0.01,
            "max_labelled": 10 * batch_size,
        },  # fmt: skip
    }


_ALARMS = ("drift", "accuracy", "volume", "staleness")


def _alarms(scores: dict[str, float]) -> list[str]:
    return [k[: -len("_fired")] for k, v in scores.items() if k.endswith("_fired") and v]


def run_policy(
    stream: ProductionStream,
    policy: dict[str, Any],
    folder: Path,
    settings: SimulationSettings,
) -> dict[str, Any]:
    """Replay `stream` through a fresh deployment in `folder` under `policy`, as `settings`
    say (the model, strategy, pace, training, retention and gate of every policy)."""
    from lifelong import deploy
    from lifelong.config import TrainConfig

    st = settings
    config = TrainConfig.from_dict(st.train) if st.train else None
    deploy.create(folder, model=st.model, strategy=st.strategy, policy=policy, config=config,
                  gate=st.gate, **(st.retention or {}))  # fmt: skip
    warmup, batch_size = st.warmup, st.batch_size
    deploy.ingest(folder, stream.x[:warmup], stream.y[:warmup], now=0.0)
    first = deploy.update(folder, force=True, now=0.0)
    ticks: list[dict[str, Any]] = []
    pending: deque[tuple[list[int], np.ndarray]] = deque()
    train_s = float(first.get("train_seconds", 0.0))
    for b, start in enumerate(range(warmup, len(stream), batch_size)):
        now = (b + 1) * float(st.seconds_per_batch)
        x, y = stream.x[start : start + batch_size], stream.y[start : start + batch_size]
        p = deploy.predict(folder, x, now=now)  # stored, with ids for the late labels
        classes = np.asarray(p.classes)
        pending.append((p.ids, y))
        if len(pending) > st.label_delay:
            ids, labels = pending.popleft()
            deploy.label(folder, ids, labels, now=now)
        t0 = time.perf_counter()
        r = deploy.update(folder, now=now)
        wall = time.perf_counter() - t0
        train_s += float(r.get("train_seconds", 0.0)) if r.get("ran") else 0.0
        ticks.append({
            "batch": b, "start": start, "end": start + len(y), "now": now,
            "correct": int((classes == y).sum()), "n": len(y), "predicted_by": p.version,
            "ran": bool(r.get("ran")), "mode": r.get("mode"), "verdict": r.get("verdict"),
            "version": r.get("version"), "reason": r.get("reason"),
            "alarms": _alarms(r.get("scores") or {}), "scores": r.get("scores") or {},
            "train_seconds": r.get("train_seconds", 0.0) if r.get("ran") else 0.0,
            "update_wall_s": round(wall, 4),
        })  # fmt: skip
    status = deploy.status(folder)
    return summarize(stream, policy, ticks, train_s, status, warmup)


def summarize(
    stream: ProductionStream,
    policy: dict[str, Any],
    ticks: list[dict[str, Any]],
    train_s: float,
    status: dict[str, Any],
    warmup: int,
) -> dict[str, Any]:
    """The per-policy figures from the tick records."""
    correct = sum(t["correct"] for t in ticks)
    n = sum(t["n"] for t in ticks)
    after: dict[str, float | None] = {}
    for d in stream.drifts:
        sel = [t for t in ticks if t["start"] >= d]
        m = sum(t["n"] for t in sel)
        after[str(d)] = sum(t["correct"] for t in sel) / m if m else None
    ran = [t for t in ticks if t["ran"]]
    return {
        "policy": policy,
        "accuracy": correct / n if n else None,
        "accuracy_after_drift": after,
        "updates": len(ran),
        "promoted": sum(1 for t in ran if t["verdict"] == "promoted"),
        "modes": {m: sum(1 for t in ran if t["mode"] == m) for m in ("scratch", "stateful")},
        "train_seconds": round(train_s, 3),
        "samples_retained": int(status.get("samples", 0)),
        "memory_rows": int((status.get("memory") or {}).get("rows", 0)),
        "checks": len(ticks),
        "alarm_ticks": sum(1 for t in ticks if t["alarms"]),
        "alarms": {a: sum(a in t["alarms"] for t in ticks) for a in _ALARMS},
        "warmup": warmup,
        "ticks": ticks,
    }
