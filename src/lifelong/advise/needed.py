"""Stage 2 of the guide: is continual learning needed at all?

From how often new data arrives, the data size and a measured cost of retraining from
scratch (a fresh `Learner(...).learn(...)` on the data, or the evidence's `joint` train
seconds scaled to the data size when no data is given), say whether retraining from
scratch each time is cheap and good enough. torch is imported only by `measure`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lifelong.advise.constraints import Constraints

#: Retraining costing under this share of the time between updates counts as cheap.
CHEAP_SHARE = 0.01
#: Updates this far apart (days) are rare enough to retrain from scratch.
RARE_DAYS = 180.0
#: At most this many samples are trained on when measuring (the time is scaled up).
MEASURE_SAMPLES = 4000


@dataclass(frozen=True)
class RetrainCost:
    seconds: float
    samples: int
    how: str


def measure(stream: Any, model: str, epochs: int, seed: int = 0) -> RetrainCost:
    """Time a from-scratch `Learner(model, "naive").learn(...)` on the stream's training
    data (at most `MEASURE_SAMPLES` of it, the time scaled linearly to all of it)."""
    import torch

    from lifelong import Learner, TrainConfig

    xs = torch.cat([e.train.x for e in stream.experiences])
    ys = torch.cat([e.train.y for e in stream.experiences])
    n = int(ys.shape[0])
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:MEASURE_SAMPLES]
    learner = Learner(model, "naive", config=TrainConfig(epochs=epochs), seed=seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the evidence's protocol (1 torch thread per run)
    try:
        t0 = time.perf_counter()
        learner.learn(xs[idx], ys[idx])
        seconds = (time.perf_counter() - t0) * n / len(idx)
    finally:
        torch.set_num_threads(threads)
    how = f"measured: a fresh {model} learner, {epochs} epoch(s), 1 thread, on {len(idx):,} samples"
    return RetrainCost(seconds, n, how + ("" if len(idx) == n else f", scaled to {n:,}"))


def from_evidence(evidence: dict[str, Any] | None, samples: int | None) -> RetrainCost | None:
    """The evidence's `joint` (else `cumulative`) train seconds, scaled to `samples`."""
    if evidence is None or not evidence.get("train_samples"):
        return None
    for name in ("joint", "cumulative"):
        s = evidence["strategies"].get(name)
        if s and s.get("train_seconds") is not None:
            base = int(evidence["train_samples"])
            n = samples or base
            how = f"scaled from {name}'s {s['train_seconds']:.2f} s on {base:,} samples ({evidence['benchmark']})"
            return RetrainCost(float(s["train_seconds"]) * n / base, n, how)
    return None


def assess(
    c: Constraints, cost: RetrainCost | None, evidence: dict[str, Any] | None
) -> tuple[bool | None, list[str]]:
    """(needed, lines): False when retraining from scratch each time is cheap and good
    enough (stage 2), True when continual learning is needed, None when it cannot say."""
    lines = []
    if cost is not None:
        lines.append(
            f"retraining from scratch: {cost.seconds:.2f} s on {cost.samples:,} samples ({cost.how})"
        )
    bench = (evidence or {}).get("benchmark", "the reference benchmark")
    joint = ((evidence or {}).get("strategies") or {}).get("joint") or {}
    if joint.get("final_accuracy") is not None:
        lines.append(
            f"retraining on all data reaches accuracy {joint['final_accuracy']:.3f} on {bench} (joint)"
        )
    days = c.update_days
    if days is None:
        lines.append("new data arrives: not given (--update-every), so no verdict")
        return None, lines
    lines.append(f"new data arrives every {days:g} days ({365 / days:.0f} updates a year)")
    if c.memory_cap is not None:
        kept = "no past data" if c.memory_cap == 0 else f"only {c.memory_cap} samples"
        lines.append(
            f"continual learning is needed: retraining from scratch needs all past data, and {kept} may be kept"
        )
        return True, lines
    if days >= RARE_DAYS:
        lines.append(
            "updates are rare: retrain from scratch each time (stage 2); continual learning is not worth it"
        )
        return False, lines
    if cost is None:
        lines.append("retraining cost unknown: give --data or --benchmark to measure it")
        return None, lines
    budget = c.budget_seconds
    if budget is not None and cost.seconds > budget:
        lines.append(
            f"continual learning is needed: retraining ({cost.seconds:.1f} s) exceeds the budget per update ({budget:g} s)"
        )
        return True, lines
    share = cost.seconds / (days * 86400)
    if share <= CHEAP_SHARE:
        good = c.min_accuracy is None or joint.get("final_accuracy", 1.0) >= c.min_accuracy
        if good:
            lines.append(
                f"retraining takes {100 * share:.3g}% of the time between updates: retraining from "
                "scratch each time is cheap and good enough (stage 2); continual learning is not worth it"
            )
            return False, lines
    lines.append(
        f"retraining takes {100 * share:.3g}% of the time between updates: continual learning is worth it"
    )
    return True, lines
