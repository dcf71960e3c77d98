"""`lifelong advise --verify`: run the shortlist (plus `joint`, retraining from scratch, as
a reference) on the user's data or benchmark, write `results.json` for `lifelong report`,
and name the winner against naive and against retraining. Imports torch when run."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from lifelong.advise.constraints import Constraints
from lifelong.advise.rules import Entry

REFERENCE = "joint"
#: Each run in a fresh worker process (its own peak memory); tests turn it off for speed.
ISOLATE = True


def configs(
    entries: list[Entry],
    c: Constraints,
    source: dict[str, Any],
    epochs: int,
    seeds: list[int],
    model: str,
) -> list[Any]:
    """One `RunConfig` per shortlisted spec and seed, plus the `joint` reference."""
    from lifelong.config import TrainConfig
    from lifelong.experiment.run import RunConfig

    specs = [e.spec for e in entries] + [REFERENCE]
    train = TrainConfig(epochs=epochs)
    return [
        RunConfig(
            strategy=spec,
            scenario=c.scenario,
            model=c.backbone or model,
            train=train,
            seed=seed,
            threads=1,
            **source,
        )  # fmt: skip
        for spec in specs
        for seed in seeds
    ]


def _means(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] == "ok":
            by.setdefault(r["_spec"], []).append(r)
    keys = ("final_average_accuracy", "average_forgetting", "train_seconds")
    return {s: {k: statistics.fmean(r[k] for r in rs) for k in keys} for s, rs in by.items()}


def run(
    entries: list[Entry],
    c: Constraints,
    source: dict[str, Any],
    out: str,
    epochs: int = 2,
    seeds: list[int] | None = None,
    model: str = "mlp",
    workers: int = 1,
) -> tuple[Path, list[str]]:
    """Run and write `out/results.json`; returns its path and the lines to print."""
    from lifelong.experiment.compare import provenance, run_all, write_results

    cfgs = configs(entries, c, source, epochs, seeds or [0], model)
    rows = run_all(cfgs, workers=workers, isolate=ISOLATE, quiet=True)
    path = write_results(out, rows, provenance("cpu", 1))
    for cfg, r in zip(cfgs, rows):
        r["_spec"] = cfg.strategy
    means = _means(rows)
    for r in rows:
        del r["_spec"]
    return path, report_lines(entries, means, c)


def report_lines(
    entries: list[Entry], means: dict[str, dict[str, float]], c: Constraints
) -> list[str]:
    """The winner (best mean accuracy among the shortlist past naive) vs naive and joint."""

    def fmt(spec: str) -> str:
        m = means.get(spec)
        if m is None:
            return f"{spec}: failed"
        return (
            f"{spec}: accuracy {m['final_average_accuracy']:.3f}, forgetting "
            f"{m['average_forgetting']:.3f}, train {m['train_seconds']:.2f} s"
        )

    lines = [fmt(e.spec) for e in entries] + [fmt(REFERENCE) + " (retraining from scratch)"]
    candidates = [e.spec for e in entries[1:] if e.spec in means]
    if not candidates:
        return [*lines, "no shortlisted method finished"]
    win = max(candidates, key=lambda s: means[s]["final_average_accuracy"])
    acc = means[win]["final_average_accuracy"]
    naive = means.get("naive", {}).get("final_average_accuracy")
    lines.append(
        f"winner: {win} (accuracy {acc:.3f} vs naive {naive if naive is None else f'{naive:.3f}'})"
    )
    if c.min_accuracy is not None and acc < c.min_accuracy:
        lines.append(f"below the minimum accuracy {c.min_accuracy:g}")
    lines.append(f"paste: lifelong compare --strategies 'naive,{win}'")
    return lines
