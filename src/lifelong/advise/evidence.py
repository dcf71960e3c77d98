"""The measured figures `lifelong advise` cites: one compact summary per scenario.

`benchmarks/strategy_catalogue.py` writes `lifelong/advise/evidence/<scenario>.json` from its
`benchmarks/results/<scenario>/results.json` with `summarize`; the advisor reads the
shipped files with `load` (importlib.resources). Nothing here is typed in by hand.
Standard library only."""

from __future__ import annotations

import json
import statistics
from importlib import resources
from typing import Any

#: `params` keys that describe the protocol (model and training), not a strategy.
PROTOCOL_KEYS = (
    "model",
    "head",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "epochs",
    "batch_size",
    "online",
    "precision",
)


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def summarize(results: dict[str, Any], train_samples: int | None = None) -> dict[str, Any]:
    """A compact per-strategy summary of a `results.json` document (rows grouped by
    canonical strategy; means over the rows whose status is ok)."""
    runs = results["runs"]
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["strategy"], []).append(r)
    first = runs[0]
    protocol = {k: first["params"].get(k) for k in PROTOCOL_KEYS if k in first["params"]}
    protocol["seeds"] = sorted({int(r["seed"]) for r in runs})
    protocol["n_experiences"] = first["n_experiences"]
    strategies = {}
    for name, rows in sorted(by.items()):
        ok = [r for r in rows if r["status"] == "ok"]
        strategies[name] = {
            "final_accuracy": _mean([r["final_average_accuracy"] for r in ok]),
            "forgetting": _mean([r["average_forgetting"] for r in ok]),
            "train_seconds": _mean([r["train_seconds"] for r in ok]),
            "runs": len(ok),
            "runs_total": len(rows),
        }
    return {
        "scenario": first["scenario"],
        "benchmark": first["benchmark"],
        "protocol": protocol,
        "train_samples": train_samples,
        "source": f"benchmarks/results/{first['scenario']}/results.json",
        "lifelong_version": results.get("lifelong_version"),
        "git_commit": results.get("git_commit"),
        "strategies": strategies,
    }


def load(scenario: str) -> dict[str, Any] | None:
    """The shipped summary for `scenario`, or None when there is none."""
    path = resources.files("lifelong.advise").joinpath("evidence").joinpath(f"{scenario}.json")
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def cite(summary: dict[str, Any] | None, name: str) -> str:
    """One line of figures for strategy `name`, or why there is none."""
    if summary is None:
        return "no measured results for this scenario"
    s = summary["strategies"].get(name)
    if s is None or s["final_accuracy"] is None:
        return f"not measured on {summary['benchmark']} {summary['scenario']}"
    base = summary["strategies"].get("naive", {}).get("final_accuracy")
    vs = "" if base is None or name == "naive" else f" (naive {base:.3f})"
    return (
        f"{summary['benchmark']} {summary['scenario']}: accuracy {s['final_accuracy']:.3f}{vs}, "
        f"forgetting {s['forgetting']:.3f}, train {s['train_seconds']:.2f} s, {s['runs']} runs"
    )
