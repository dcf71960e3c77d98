"""Many seeds at once: `run_batched` (S runs on stacked parameters, one process) against S
separate `run()` calls, on the reference protocol.

Reference protocol: split-mnist-5k, class scenario, MLP 784-400-400-10, SGD lr 0.01
momentum 0.9, batch 32, 2 epochs per experience, evaluation on every experience's test set
after each one. For each S, every round times both sides (their order alternating from
round to round) on seeds `round*S .. round*S+S-1`, checks that they give the same
accuracy matrices, and the script prints medians over the rounds:

* `batched s` / `sequential s`: the whole call(s), setup and evaluation included;
* `speed-up`: sequential / batched (how much faster than one run after another);
* `x one run`: batched(S) / one separate run (the issue's target on a GPU: S=50 in at
  most 3x one eager run).

    python benchmarks/many_seeds.py --sizes 1,5,20 --rounds 5 --threads 1 [--device cuda]

Recorded (torch 2.13.0+cpu, one thread of a shared 2-core machine, 5 rounds; S=50 one
round); the accuracy matrices were identical (max |acc diff| 0) at every size:

       S  batched s  sequential s  speed-up  x one run
       1       0.57          0.70     1.22x      0.82x
       5       3.10          2.91     0.94x      5.31x
      20       8.66          7.34     0.85x     23.58x
      50      29.49         29.14     0.99x     50.60x

On one CPU core the MLP step is compute-bound (the batched matrix products do the same
arithmetic as S separate ones) and the stacked weights no longer fit in cache, so there is
no gain; the gain is on a GPU, where one run is bound by kernel launches. Not yet measured
on a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from typing import Any

import torch

from lifelong.data import Stream, get_benchmark
from lifelong.experiment.batched import run_batched
from lifelong.experiment.run import RunConfig, run


def sequential(config: RunConfig, seeds: list[int], stream: Stream) -> list[dict[str, Any]]:
    """S separate runs, one after another."""
    return [run(replace(config, seed=s), stream) for s in seeds]


def timed(fn: Any, *args: Any) -> tuple[float, list[dict[str, Any]]]:
    """(seconds, rows) of one call."""
    t0 = time.perf_counter()
    rows = fn(*args)
    return time.perf_counter() - t0, rows


def max_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> float:
    """Largest accuracy difference between two lists of rows, run by run."""
    return max(
        abs(x - y)
        for ra, rb in zip(a, b)
        for xa, xb in zip(ra["accuracy_matrix"], rb["accuracy_matrix"])
        for x, y in zip(xa, xb)
    )


def measure(config: RunConfig, stream: Stream, size: int, rounds: int) -> dict[str, float]:
    """Median times of batched and sequential S=`size` runs over `rounds` rounds."""
    batched_s, seq_s, one_s, diff = [], [], [], 0.0
    for r in range(rounds):
        seeds = list(range(r * size, (r + 1) * size))
        sides = [("b", run_batched), ("s", sequential)]
        out = {}
        for key, fn in sides if r % 2 == 0 else sides[::-1]:
            out[key] = timed(fn, config, seeds, stream)
        batched_s.append(out["b"][0])
        seq_s.append(out["s"][0])
        one_s.append(out["s"][0] / size)
        diff = max(diff, max_difference(out["b"][1], out["s"][1]))
    b, s, one = statistics.median(batched_s), statistics.median(seq_s), statistics.median(one_s)
    return {"batched": b, "sequential": s, "speedup": s / b, "x_one": b / one, "diff": diff}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default="1,5,20", help="comma-separated numbers of seeds")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    stream = get_benchmark("split-mnist-5k", "class")
    config = RunConfig(strategy="naive", device=args.device)
    run_batched(config, [0, 1], stream)  # warm-up both paths
    sequential(config, [0], stream)
    print(
        f"torch {torch.__version__}, device {args.device}, threads {args.threads}, "
        f"rounds {args.rounds}"
    )
    print("   S  batched s  sequential s  speed-up  x one run  max |acc diff|")
    for size in (int(v) for v in args.sizes.split(",")):
        m = measure(config, stream, size, args.rounds)
        print(
            f"{size:4d}  {m['batched']:9.2f}  {m['sequential']:12.2f}  {m['speedup']:7.2f}x"
            f"  {m['x_one']:8.2f}x  {m['diff']:.3g}"
        )


if __name__ == "__main__":
    main()
