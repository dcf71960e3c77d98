"""Every strategy x scenario on the reference protocol: the table of benchmarks/RESULTS.md.

Reference protocol: MLP 784-400-400-10, SGD lr 0.01 momentum 0.9, batch 32, 2 epochs per
experience, seeds 0, 1, 2, default hyper-parameters of every strategy; class and task
scenarios on split-mnist-5k, domain scenario on permuted-mnist-5k. Each run gets a fresh
worker process (2 workers x 1 torch thread). Writes `benchmarks/results/<scenario>/results.json`,
`benchmarks/RESULTS.md` (from every scenario recorded so far, so `--only` reruns one) and the
evidence `lifelong advise` ships, `src/lifelong/advise/evidence/<scenario>.json`
(`write_evidence`, also callable alone: it only reads the results.json files).

    python benchmarks/strategy_catalogue.py [--seeds 0,1,2] [--workers 2] [--only class,task,domain]
                                   [--strategies ewc,si]   # rerun some, keep the other rows
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from lifelong import metrics
from lifelong.advise.evidence import summarize
from lifelong.data.benchmarks import get_benchmark
from lifelong.experiment.compare import provenance, run_all, write_results
from lifelong.experiment.run import RunConfig
from lifelong.strategies import registry

HERE = Path(__file__).parent
EVIDENCE = HERE.parent / "src" / "lifelong" / "advise" / "evidence"
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


def write_evidence() -> list[Path]:
    """Write `lifelong advise`'s evidence (a per-strategy summary per scenario) from the
    results.json files recorded so far; returns the paths written."""
    EVIDENCE.mkdir(parents=True, exist_ok=True)
    written = []
    for scenario, bench in SETTINGS.items():
        path = HERE / "results" / scenario / "results.json"
        if not path.exists():
            continue
        stream = get_benchmark(bench, scenario)
        samples = sum(len(e.train.y) for e in stream.experiences)
        summary = summarize(json.loads(path.read_text()), train_samples=samples)
        out = EVIDENCE / f"{scenario}.json"
        out.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        written.append(out)
    return written


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--only", default="class,task,domain")
    p.add_argument(
        "--strategies", default="", help="rerun only these (comma-separated); keep the other rows"
    )
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = sorted(
        n for n, c in registry().items() if c.__module__.startswith("lifelong.strategies.")
    )
    lines = [
        "# Strategy catalogue on the reference protocol",
        "",
        f"Produced by `python benchmarks/strategy_catalogue.py` on {time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()} CPU, {args.workers} workers x 1 torch thread, torch {torch.__version__}.",
        "MLP 784-400-400-10, SGD lr 0.01 momentum 0.9, batch 32, 2 epochs per experience, "
        f"seeds {args.seeds}, default hyper-parameters; mean ± std over seeds. "
        "Seconds are each run's training loop on a shared 2-core machine: compare them within a table.",
    ]
    for scenario in args.only.split(","):
        bench = SETTINGS[scenario]
        served = [n for n in names if scenario in registry()[n].scenarios]
        if args.strategies:
            served = [n for n in served if n in args.strategies.split(",")]
        configs = [
            RunConfig(benchmark=bench, scenario=scenario, strategy=n, seed=s, threads=1)
            for n in served
            for s in seeds
        ]
        rows = run_all(configs, workers=args.workers, quiet=True)
        old = HERE / "results" / scenario / "results.json"
        if args.strategies and old.exists():  # keep the other strategies' rows
            kept = [
                r
                for r in json.loads(old.read_text())["runs"]
                if r["strategy"].split("(")[0] not in served
            ]
            rows = kept + rows
        write_results(HERE / "results" / scenario, rows, provenance("cpu", 1))
        print("\n".join(table(rows)), flush=True)
    for scenario, bench in SETTINGS.items():  # every scenario recorded so far
        path = HERE / "results" / scenario / "results.json"
        if path.exists():
            rows = json.loads(path.read_text())["runs"]
            lines += ["", f"## {scenario} scenario, {bench} ({len(rows)} runs)", "", *table(rows)]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    write_evidence()


if __name__ == "__main__":
    main()
