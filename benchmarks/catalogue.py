"""Every strategy x scenario on the reference protocol: the table of benchmarks/RESULTS.md.

Reference protocol: MLP 784-400-400-10, SGD lr 0.01 momentum 0.9, batch 32, 2 epochs per
experience, seeds 0, 1, 2, default hyper-parameters of every strategy; class and task
scenarios on split-mnist-5k, domain scenario on permuted-mnist-5k. Each run gets a fresh
worker process (2 workers x 1 torch thread). Writes `benchmarks/results/<scenario>/results.json`
and `benchmarks/RESULTS.md`.

    python benchmarks/catalogue.py [--seeds 0,1,2] [--workers 2] [--only class,task,domain]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from lifelong import metrics
from lifelong.experiment.compare import provenance, run_all, write_results
from lifelong.experiment.run import RunConfig
from lifelong.strategies import registry

HERE = Path(__file__).parent
SETTINGS = {"class": "split-mnist-5k", "task": "split-mnist-5k", "domain": "permuted-mnist-5k"}


def fmt(values: list[float | None], spec: str) -> str:
    mean, std = metrics.mean_std(values)
    return "-" if mean is None else f"{mean:{spec}} ± {std:{spec}}"


def table(rows: list[dict]) -> list[str]:
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["strategy"], []).append(r)
    out = [
        "| strategy | final accuracy | forgetting | train seconds | runs ok |",
        "|---|---|---|---|---|",
    ]
    order = sorted(
        by,
        key=lambda s: (
            -(
                metrics.mean_std(
                    [r["final_average_accuracy"] for r in by[s] if r["status"] == "ok"]
                )[0]
                or -1
            )
        ),
    )
    for s in order:
        ok = [r for r in by[s] if r["status"] == "ok"]
        out.append(
            f"| `{s}` | {fmt([r['final_average_accuracy'] for r in ok], '.3f')} | "
            f"{fmt([r['average_forgetting'] for r in ok], '.3f')} | {fmt([r['train_seconds'] for r in ok], '.2f')} | "
            f"{len(ok)}/{len(by[s])} |"
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--only", default="class,task,domain")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = sorted(
        n for n, c in registry().items() if c.__module__.startswith("lifelong.strategies.")
    )
    lines = [
        "# Strategy catalogue on the reference protocol",
        "",
        f"Produced by `python benchmarks/catalogue.py` on {time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()} CPU, {args.workers} workers x 1 torch thread, torch {torch.__version__}.",
        "MLP 784-400-400-10, SGD lr 0.01 momentum 0.9, batch 32, 2 epochs per experience, "
        f"seeds {args.seeds}, default hyper-parameters; mean ± std over seeds. "
        "Seconds are each run's training loop on a shared 2-core machine: compare them within a table.",
    ]
    for scenario in args.only.split(","):
        bench = SETTINGS[scenario]
        served = [n for n in names if scenario in registry()[n].scenarios]
        configs = [
            RunConfig(benchmark=bench, scenario=scenario, strategy=n, seed=s, threads=1)
            for n in served
            for s in seeds
        ]
        t0 = time.perf_counter()
        rows = run_all(configs, workers=args.workers, quiet=True)
        write_results(HERE / "results" / scenario, rows, provenance("cpu", 1))
        lines += [
            "",
            f"## {scenario} scenario, {bench} ({len(configs)} runs, {time.perf_counter() - t0:.0f} s)",
            "",
        ]
        lines += table(rows)
        print("\n".join(lines[-len(served) - 2 :]), flush=True)
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
