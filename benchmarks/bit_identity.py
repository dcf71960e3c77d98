"""Seed-0 accuracy matrices of every strategy x scenario of `strategy_catalogue.py`, compared with a
recorded file: the check that a refactoring changed no result.

    python benchmarks/bit_identity.py --record results/redesign/before-seed0.json  # before
    python benchmarks/bit_identity.py --compare results/redesign/before-seed0.json # after

`--compare` prints, per run, `same` or the final accuracy before -> after and the largest
change of a matrix cell, and writes the new matrices beside the old file (`-after.json`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lifelong.experiment.compare import run_all
from lifelong.experiment.run import RunConfig
from lifelong.strategies import registry

SETTINGS = {"class": "split-mnist-5k", "task": "split-mnist-5k", "domain": "permuted-mnist-5k"}


def matrices(workers: int) -> dict[str, dict[str, object]]:
    names = sorted(n for n, c in registry().items() if c.__module__.startswith("lifelong."))
    configs = [
        RunConfig(benchmark=bench, scenario=sc, strategy=n, seed=0, threads=1)
        for sc, bench in SETTINGS.items()
        for n in names
        if sc in registry()[n].scenarios
    ]
    rows = run_all(configs, workers=workers, quiet=True)
    return {
        f"{r['scenario']}/{r['strategy']}": {
            "status": r["status"],
            "error": r.get("error"),
            "matrix": r["accuracy_matrix"],
            "final": r["final_average_accuracy"],
        }
        for r in rows
    }


def compare(old: dict[str, dict], new: dict[str, dict]) -> int:
    changed = 0
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a is None or b is None or b["status"] != "ok":
            print(f"{key:28s} {'missing' if a is None or b is None else b['error']}")
            changed += 1
            continue
        if a["matrix"] == b["matrix"]:
            print(f"{key:28s} same")
            continue
        cells = [abs(x - y) for ra, rb in zip(a["matrix"], b["matrix"]) for x, y in zip(ra, rb)]
        print(
            f"{key:28s} {a['final']:.3f} -> {b['final']:.3f} (largest cell change {max(cells):.3f})"
        )
        changed += 1
    print(f"{changed} of {len(set(old) | set(new))} runs changed")
    return changed


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--record", type=Path)
    p.add_argument("--compare", type=Path)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    new = matrices(args.workers)
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps(new, indent=1, sort_keys=True))
    if args.compare:
        old = json.loads(args.compare.read_text())
        out = args.compare.with_name(args.compare.stem.replace("before", "after") + ".json")
        if out == args.compare:
            out = args.compare.with_name(args.compare.stem + "-after.json")
        out.write_text(json.dumps(new, indent=1, sort_keys=True))
        compare(old, new)


if __name__ == "__main__":
    main()
