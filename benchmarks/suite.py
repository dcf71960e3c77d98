"""Speed suite: every strategy on the reference protocol next to plain PyTorch loops.

Reference protocol: split-mnist-5k, class scenario, MLP 784-400-400-10, SGD lr 0.01
momentum 0.9, batch 32, 2 epochs per experience, evaluation on every experience after each.
For each strategy the suite alternates, round after round in one process, lifelong's run
and the plain loop that does the same extra work in the simplest correct way
(`benchmarks/plain.py`), and prints: seconds (median), samples per second, the ratio to
that plain loop and to the plain naive loop, the growth of the training time per
experience (last experience / second: the first has an empty memory), peak memory of an isolated run (a fresh process) and
final accuracy.

    python benchmarks/suite.py --rounds 3 --threads 1 [--device cuda] [--only replay,ewc]
    python benchmarks/suite.py --protocol cifar --rounds 3   # reduced ResNet-18, 3x32x32
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from plain import plain  # noqa: E402

from lifelong.config import TrainConfig  # noqa: E402
from lifelong.data import Stream, get_benchmark  # noqa: E402
from lifelong.experiment.compare import run_all  # noqa: E402
from lifelong.experiment.run import RunConfig  # noqa: E402
from lifelong.learner import Learner, Result  # noqa: E402
from lifelong.strategies import registry  # noqa: E402

#: the plain loop each strategy is compared with (its own extra work), others: naive
REFERENCE = {
    "joint": "joint",
    "cumulative": "cumulative",
    "replay": "replay",
    "er-ace": "replay",
    "der": "der",
    "derpp": "derpp",
    "lwf": "lwf",
    "ewc": "ewc",
    "online-ewc": "ewc",
    "mas": "ewc",
    "si": "si",
    "agem": "agem",
}
#: benchmark and model of each protocol; the CPU subset of the CIFAR-shaped protocol
PROTOCOLS = {"mnist": ("split-mnist-5k", "mlp"), "cifar": ("synthetic-images", "reduced-resnet18")}
CPU_CIFAR = ("naive", "replay", "derpp", "ewc", "lwf", "agem")
#: explicit specs so both sides do the same amount of work
SPECS = {
    "replay": "replay(mem_size=500)",
    "der": "der(mem_size=500)",
    "derpp": "derpp(mem_size=500)",
    "er-ace": "er-ace(mem_size=500)",
}


def timed_lifelong(
    stream: Stream, spec: str, seed: int, device: torch.device, model_name: str = "mlp"
) -> tuple[float, list[float], list[float]]:
    """One lifelong run: (seconds, per-experience training seconds, last accuracy row)."""
    t0 = time.perf_counter()
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.01, momentum=0.9)
    learner = Learner(
        model_name, spec, config=cfg, scenario=stream.scenario, device=device, seed=seed
    )
    per_exp: list[float] = []

    def timing(learner: Learner, result: Result) -> None:
        per_exp.append(result.train_seconds - sum(per_exp))

    result = learner.fit_stream(stream, timing)
    return time.perf_counter() - t0, per_exp, result.matrix[-1]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default="", help="comma-separated strategy names (default: all)")
    p.add_argument("--no-memory", action="store_true", help="skip the isolated peak-memory runs")
    p.add_argument(
        "--protocol",
        default="mnist",
        choices=["mnist", "cifar"],
        help="mnist: the reference protocol; cifar: reduced ResNet-18 on CIFAR-shaped images "
        "(synthetic-images, 2,000 samples; on CPU the subset " + ",".join(CPU_CIFAR) + ")",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bench, model_name = PROTOCOLS[args.protocol]
    stream = get_benchmark(bench, "class").to(device)
    names = [
        n
        for n in sorted(registry())
        if registry()[n].__module__.startswith("lifelong.strategies.")
        and "class" in registry()[n].scenarios
    ]
    if args.protocol == "cifar" and device.type == "cpu" and not args.only:
        names = [n for n in names if n in CPU_CIFAR]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    names = ["naive"] + [n for n in names if n != "naive"]  # the plain naive baseline first
    n_samples = sum(len(e.train) for e in stream) * 2
    plain(stream, 0, device, "naive", model_name)  # warm-up
    timed_lifelong(stream, "naive", 0, device, model_name)
    naive_plain: list[float] = []
    print(
        f"# torch {torch.__version__}, device {args.device}, threads {args.threads}, "
        f"rounds {args.rounds}, {time.strftime('%Y-%m-%d')}"
    )
    print(
        "| strategy | seconds | samples/s | x own plain loop | x plain naive | exp5/exp2 train time | peak MB | final acc |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        spec, ref = SPECS.get(name, name), REFERENCE.get(name, "naive")
        ours, theirs, growth, acc = [], [], [], 0.0
        for r in range(args.rounds):
            if r % 2 == 0:
                sec, per_exp, row = timed_lifelong(stream, spec, r, device, model_name)
                psec, _ = plain(stream, r, device, ref, model_name)
            else:
                psec, _ = plain(stream, r, device, ref, model_name)
                sec, per_exp, row = timed_lifelong(stream, spec, r, device, model_name)
            ours.append(sec)
            theirs.append(psec)
            growth.append(
                per_exp[-1] / per_exp[1]
                if name not in ("joint", "cumulative", "gdumb")
                else float("nan")
            )
            acc = sum(row) / len(row)
            if ref == "naive" and name == "naive":
                naive_plain.append(psec)
        base = statistics.median(naive_plain) if naive_plain else float("nan")
        med = statistics.median(ours)
        ratio = statistics.median(o / t for o, t in zip(ours, theirs))
        peak = float("nan")
        if not args.no_memory:
            [res] = run_all(
                [
                    RunConfig(
                        benchmark=bench,
                        model=model_name,
                        strategy=spec,
                        device=args.device,
                        threads=args.threads,
                    )
                ],
                quiet=True,
            )
            peak = res["peak_memory_mb"] or float("nan")
        print(
            f"| {spec} | {med:.2f} | {n_samples / med:,.0f} | {ratio:.2f} ({ref}) | {med / base:.2f} | "
            f"{statistics.median(growth):.2f} | {peak:.0f} | {acc:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
