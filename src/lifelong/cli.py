"""The `lifelong` command. Only the standard library is imported at start-up, so
`lifelong --help` answers without importing torch; each command imports what it needs."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

DEFAULT_STRATEGIES = "naive,cumulative,joint"


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds must be integers separated by commas, got {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return seeds


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    p = argparse.ArgumentParser(
        prog="lifelong",
        description="Continual learning for PyTorch models: compare methods on a stream of data.",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("compare", help="run strategies on a benchmark and compare them")
    c.add_argument(
        "--benchmark", default="split-mnist-5k", help="benchmark name (see `lifelong benchmarks`)"
    )
    c.add_argument(
        "--scenario", default=None, help="class, domain or task (default: the benchmark's first)"
    )
    c.add_argument(
        "--strategies",
        default=DEFAULT_STRATEGIES,
        help=f"comma-separated strategy specs, e.g. 'naive,ewc(lambda=100)' (default {DEFAULT_STRATEGIES})",
    )
    c.add_argument("--model", default="mlp", help="model spec, e.g. mlp or 'mlp(hidden=(256,256))'")
    c.add_argument(
        "--head",
        default="fixed",
        choices=["fixed", "grow"],
        help="class/domain head: sized up front, or growing with new classes",
    )
    c.add_argument("--epochs", type=_positive, default=2)
    c.add_argument("--batch-size", type=_positive, default=32)
    c.add_argument("--lr", type=float, default=0.01)
    c.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    c.add_argument("--momentum", type=float, default=0.9)
    c.add_argument("--weight-decay", type=float, default=0.0)
    c.add_argument("--online", action="store_true", help="single pass over each experience")
    c.add_argument(
        "--seeds", type=_seeds, default=[0, 1, 2], help="comma-separated seeds (default 0,1,2)"
    )
    c.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    c.add_argument("--threads", type=_positive, default=None, help="torch threads per run")
    c.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="runs at once, each in its own process (default: 2 on >= 2 cores, else 1)",
    )
    c.add_argument("--out", default=None, help="output folder (default runs/compare-TIMESTAMP)")
    c.add_argument("--quiet", action="store_true", help="no progress lines")

    sub.add_parser("benchmarks", help="list the benchmarks, one line each")
    sub.add_parser("strategies", help="list the strategies, one line each")
    return p


def cmd_compare(args: argparse.Namespace) -> int:
    """`lifelong compare`: run the grid, print the table, write results.json."""
    from lifelong.data.benchmarks import BENCHMARKS
    from lifelong.experiment.compare import provenance, run_all, summary_table, write_results
    from lifelong.experiment.run import RunConfig
    from lifelong.strategies.registry import build_strategies, canonical_spec, split_top_level

    if args.benchmark not in BENCHMARKS:
        raise ValueError(
            f"unknown benchmark {args.benchmark!r}; expected one of {', '.join(sorted(BENCHMARKS))}"
        )
    info = BENCHMARKS[args.benchmark]
    scenario = args.scenario or info.scenarios[0]
    if scenario not in ("class", "domain", "task"):
        raise ValueError(f"unknown scenario {scenario!r}; expected one of class, domain, task")
    if scenario not in info.scenarios:
        raise ValueError(
            f"benchmark {args.benchmark!r} does not define the {scenario!r} scenario; "
            f"it defines {', '.join(info.scenarios)}"
        )
    specs = [s for s in split_top_level(args.strategies, ",")]
    if not all(specs):
        raise ValueError(f"malformed strategy list {args.strategies!r}: empty entry")
    specs = [canonical_spec(build_strategies(s)) for s in specs]  # validate before any run
    cores = os.cpu_count() or 1
    workers = args.workers or (2 if cores >= 2 else 1)
    threads = args.threads or max(1, cores // workers)
    configs = [
        RunConfig(
            benchmark=args.benchmark,
            scenario=scenario,
            strategy=spec,
            model=args.model,
            head=args.head,
            optimizer=args.optimizer,
            lr=args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            epochs=args.epochs,
            batch_size=args.batch_size,
            online=args.online,
            seed=seed,
            device=args.device,
            threads=threads,
        )
        for spec in specs
        for seed in args.seeds
    ]
    out = args.out or os.path.join("runs", time.strftime("compare-%Y%m%d-%H%M%S"))
    if not args.quiet:
        print(
            f"lifelong compare: {len(configs)} runs ({len(specs)} strategies x {len(args.seeds)} seeds) "
            f"on {args.benchmark} [{scenario}], {workers} worker(s) x {threads} thread(s)",
            file=sys.stderr,
        )
    rows = run_all(configs, workers=workers, quiet=args.quiet)
    path = write_results(out, rows, provenance(args.device, threads))
    print(summary_table(rows))
    print(f"\nresults: {path}")
    failed = [r for r in rows if r["status"] != "ok"]
    for r in failed:
        print(
            f"FAILED {r['strategy']} seed={r['seed']}: {r['error'].splitlines()[0]}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    """`lifelong benchmarks`: one line per benchmark."""
    from lifelong.data.benchmarks import BENCHMARKS

    width = max(len(n) for n in BENCHMARKS)
    for name, info in sorted(BENCHMARKS.items()):
        print(f"{name:<{width}}  [{','.join(info.scenarios)}]  {info.description}")
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    """`lifelong strategies`: one line per strategy, its first docstring line."""
    from lifelong.strategies.registry import registry

    reg = registry()
    width = max(len(n) for n in reg)
    for name, cls in sorted(reg.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:<{width}}  [{','.join(cls.scenarios)}]  {doc}")
    return 0


COMMANDS = {"compare": cmd_compare, "benchmarks": cmd_benchmarks, "strategies": cmd_strategies}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lifelong` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from lifelong._version import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except ValueError as e:
        print(f"lifelong {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
