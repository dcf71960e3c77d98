"""The compiled training step against eager training, on the reference protocol.

Reference protocol: split-mnist-5k, class scenario, MLP 784-400-400-10, SGD lr 0.01
momentum 0.9, batch 32, 2 epochs per experience, evaluation on every experience after each.
For each strategy, every round runs, in alternating order and with the round's seed:
* `plain`: the hand-written eager PyTorch loop of `benchmarks/plain.py` doing the same work;
* `eager`: `lifelong.run` with the eager loop;
* `compiled`: `lifelong.run` with `compile=True` (CUDA graphs on CUDA).
One compiled run before the rounds pays the compilation (printed, not in the medians).
Printed per strategy: median seconds of the whole protocol (setup, training, evaluation)
and of lifelong's training loop, the median per-round ratios plain/compiled and
eager/compiled, and the final accuracies (mean and sd over the seeds). The check: the
compiled runs' mean accuracy is within `max(0.02, 3 standard errors)` of the eager runs'
(same accuracy in distribution); on CPU the same seed must also give nearly the same
accuracy matrix (each cell within 0.05: inductor's fused kernels round differently in the
last bits, which over 250 SGD steps moves a few test predictions). It exits with status 1 when a check fails.

    python benchmarks/compiled_speed.py --rounds 5 --threads 1 [--device cuda] [--only naive,replay]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))
from plain import plain  # noqa: E402

from lifelong.compiled import not_compile_safe  # noqa: E402
from lifelong.config import TrainConfig  # noqa: E402
from lifelong.data import Stream, get_benchmark  # noqa: E402
from lifelong.experiment.run import RunConfig, run  # noqa: E402
from lifelong.strategies import build_strategies  # noqa: E402

#: strategy spec -> the extra work of its plain loop (`benchmarks/plain.py`)
STRATEGIES = {
    "naive": "naive",
    "replay(mem_size=500)": "replay",
    "der(mem_size=500)": "der",
    "er-ace(mem_size=500)": "replay",
    "agem": "agem",
    "ewc": "ewc",
    "lwf": "lwf",
}


def lifelong(stream: Stream, spec: str, seed: int, device: str, compile: bool) -> dict[str, Any]:
    """One lifelong run: its row, plus `seconds` (the whole call)."""
    t0 = time.perf_counter()
    cfg = RunConfig(strategy=spec, seed=seed, device=device, train=TrainConfig(compile=compile))
    row = run(cfg, stream=stream)
    return {**row, "seconds": time.perf_counter() - t0}


def compare(stream: Stream, spec: str, ref: str, rounds: int, device: str) -> bool:
    """Rounds of plain / eager / compiled for one strategy; print a line; True if it passes."""
    dev = torch.device(device)
    t0 = time.perf_counter()
    lifelong(stream, spec, 0, device, True)  # compiles (cached for the rounds)
    compile_s = time.perf_counter() - t0
    times: dict[str, list[float]] = {"plain": [], "eager": [], "compiled": []}
    train: dict[str, list[float]] = {"eager": [], "compiled": []}
    acc: dict[str, list[float]] = {"plain": [], "eager": [], "compiled": []}
    same_seed_diff = 0.0
    for r in range(rounds):
        order = ["plain", "eager", "compiled"]
        for name in order[r % 3 :] + order[: r % 3]:
            if name == "plain":
                sec, matrix = plain(stream, r, dev, ref)
                times["plain"].append(sec)
                acc["plain"].append(sum(matrix[-1]) / len(matrix[-1]))
                continue
            row = lifelong(stream, spec, r, device, name == "compiled")
            times[name].append(row["seconds"])
            train[name].append(row["train_seconds"])
            acc[name].append(row["final_average_accuracy"])
            if name == "compiled":
                compiled_matrix = row["accuracy_matrix"]
            else:
                eager_matrix = row["accuracy_matrix"]
        same_seed_diff = max(
            same_seed_diff,
            max(
                abs(a - b) for ra, rb in zip(eager_matrix, compiled_matrix) for a, b in zip(ra, rb)
            ),
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    r_plain = statistics.median(p / c for p, c in zip(times["plain"], times["compiled"]))
    r_eager = statistics.median(e / c for e, c in zip(times["eager"], times["compiled"]))
    r_train = statistics.median(e / c for e, c in zip(train["eager"], train["compiled"]))
    mean = {k: statistics.fmean(v) for k, v in acc.items()}
    sd = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in acc.items()}
    tol = max(0.02, 3 * (sd["eager"] ** 2 + sd["compiled"] ** 2) ** 0.5 / rounds**0.5)
    ok = abs(mean["compiled"] - mean["eager"]) <= tol
    if dev.type == "cpu":  # float rounding may move a few of a cell's 200 test predictions
        ok = ok and same_seed_diff <= 0.05
    print(
        f"| {spec} | {compile_s:.1f} | {med['plain']:.3f} | {med['eager']:.3f} | "
        f"{med['compiled']:.3f} | {statistics.median(train['compiled']):.3f} | {r_plain:.2f}x | "
        f"{r_eager:.2f}x | {r_train:.2f}x | "
        + " / ".join(f"{mean[k]:.3f}±{sd[k]:.3f}" for k in ("plain", "eager", "compiled"))
        + f" | {same_seed_diff:.4f} | {'ok' if ok else 'MISMATCH'} |",
        flush=True,
    )
    return ok


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default="", help="comma-separated strategy names (default: all)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", DeprecationWarning)
    stream = get_benchmark("split-mnist-5k", "class").to(args.device)
    specs = {
        s: ref
        for s, ref in STRATEGIES.items()
        if not args.only or s.split("(")[0] in args.only.split(",")
    }
    plain(stream, 0, torch.device(args.device), "naive")  # warm-up of the eager paths
    lifelong(stream, "naive", 0, args.device, False)
    print(
        f"# torch {torch.__version__}, device {args.device}, threads {args.threads}, "
        f"rounds {args.rounds}, {time.strftime('%Y-%m-%d')}"
    )
    print(
        "| strategy | compile s | plain s | eager s | compiled s | compiled train s | "
        "plain/compiled | eager/compiled | eager/compiled (train) | "
        "final acc plain / eager / compiled | same-seed max diff | check |"
    )
    print("|---" * 12 + "|")
    results = []
    for spec, ref in specs.items():
        unsafe = not_compile_safe(build_strategies(spec))
        if unsafe:
            print(f"| {spec} | not compile-safe ({', '.join(unsafe)}): skipped |")
            continue
        results.append(compare(stream, spec, ref, args.rounds, args.device))
    from torch._dynamo.utils import counters

    print(
        f"graph breaks: {sum(counters['graph_break'].values())}, inductor: {dict(counters['inductor'])}"
    )
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
