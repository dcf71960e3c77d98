"""Run many configs (each in a fresh worker process), collect rows, write `results.json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from lifelong import metrics
from lifelong.experiment.run import RunConfig

SCHEMA_VERSION = 1
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _label(config: RunConfig) -> str:
    return f"{config.strategy} seed={config.seed}"


def run_safely(config: RunConfig, label: str = "", log: Log | None = None) -> dict[str, Any]:
    """`run(config)`, turning any exception into a `status: "failed"` row."""
    from lifelong.experiment.run import run

    def progress(msg: str) -> None:
        if log:
            log(f"{label} {_label(config)}: {msg}")

    try:
        row = run(config, progress=progress)
        row.pop("_model", None)
        row.pop("_strategies", None)
        if log:
            log(
                f"{label} {_label(config)}: done, final accuracy {row['final_average_accuracy']:.3f}"
            )
        return row
    except Exception as e:  # noqa: BLE001 - one failing run must not lose the others
        if log:
            log(f"{label} {_label(config)}: FAILED: {e}")
        return failed_row(config, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}")


def failed_row(config: RunConfig, error: str) -> dict[str, Any]:
    """A results row for a run that did not complete."""
    return {
        "run_id": None,
        "benchmark": config.benchmark,
        "scenario": config.scenario,
        "strategy": config.strategy,
        "params": asdict(config),
        "seed": config.seed,
        "status": "failed",
        "error": error,
        "n_experiences": None,
        "accuracy_matrix": None,
        "final_average_accuracy": None,
        "average_forgetting": None,
        "backward_transfer": None,
        "forward_transfer": None,
        "train_seconds": None,
        "eval_seconds": None,
        "wall_seconds": None,
        "peak_memory_mb": None,
    }


def _worker(config: RunConfig, label: str, quiet: bool) -> dict[str, Any]:
    return run_safely(config, label, None if quiet else _stderr)


def run_all(
    configs: Sequence[RunConfig], workers: int = 1, isolate: bool = True, quiet: bool = False
) -> list[dict[str, Any]]:
    """Run every config; rows come back in the configs' order.

    With `isolate=True` each run gets a fresh worker process, so `peak_memory_mb` is that
    run's own peak; `workers` runs go at once.
    """
    n = len(configs)
    labels = [f"[{i + 1}/{n}]" for i in range(n)]
    if not isolate:
        return [run_safely(c, lab, None if quiet else _stderr) for c, lab in zip(configs, labels)]

    ctx = get_context("spawn")

    def one(i: int) -> dict[str, Any]:
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                return pool.submit(_worker, configs[i], labels[i], quiet).result()
        except Exception as e:  # noqa: BLE001 - a crashed worker (e.g. out of memory)
            return failed_row(configs[i], f"worker process failed: {type(e).__name__}: {e}")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as threads:
        return list(threads.map(one, range(n)))


def git_commit() -> str | None:
    """The git commit of the lifelong source tree, where it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(device: str, threads: int | None) -> dict[str, Any]:
    """The top-level fields of `results.json`."""
    import torch

    import lifelong
    from lifelong.experiment.run import resolve_device

    try:
        dev = str(resolve_device(device))
    except ValueError:
        dev = device
    return {
        "schema_version": SCHEMA_VERSION,
        "lifelong_version": lifelong.__version__,
        "torch_version": torch.__version__,
        "device": dev,
        "threads": threads or torch.get_num_threads(),
        "git_commit": git_commit(),
    }


def write_results(
    out_dir: str | os.PathLike[str], rows: list[dict[str, Any]], header: dict[str, Any]
) -> Path:
    """Write `out_dir/results.json` atomically (a crash never leaves half a file)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**header, "runs": rows}, indent=2))
    os.replace(tmp, path)
    return path


COLUMNS = (
    ("final_average_accuracy", "accuracy", "{:.3f}"),
    ("average_forgetting", "forgetting", "{:.3f}"),
    ("backward_transfer", "BWT", "{:+.3f}"),
    ("forward_transfer", "FWT", "{:+.3f}"),
    ("train_seconds", "train s", "{:.1f}"),
    ("peak_memory_mb", "peak MB", "{:.0f}"),
)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text comparison table: mean ± std over seeds per benchmark/scenario/strategy."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["benchmark"], r["scenario"], r["strategy"]), []).append(r)
    head = ["benchmark", "scenario", "strategy", "seeds"] + [c[1] for c in COLUMNS]
    lines = []
    for (bench, scen, strat), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        cells = [bench, scen, strat, f"{len(ok)}/{len(rs)}"]
        for key, _, fmt in COLUMNS:
            mean, std = metrics.mean_std([r[key] for r in ok])
            cells.append(
                "-" if mean is None else f"{fmt.format(mean)} ± {fmt.format(std).lstrip('+')}"
            )
        lines.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt_row = "  ".join("{:<%d}" % w for w in widths).format
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt_row(*head), sep] + [fmt_row(*cells) for cells in lines])
