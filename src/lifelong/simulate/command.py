"""`lifelong simulate`: the command line of `lifelong.simulate.simulate`. Only the
standard library at import, so `lifelong --help` stays free of torch."""

from __future__ import annotations

import argparse
from typing import Any

STREAM_NAMES = ("mnist-stable", "mnist-abrupt", "mnist-rotating", "sea-stable", "sea-abrupt",
                "agrawal-abrupt")  # fmt: skip
POLICY_NAMES = ("manual", "scheduled", "stateful", "triggered")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of `lifelong simulate`."""
    p.add_argument(
        "--stream", default="sea-abrupt", choices=STREAM_NAMES, help="the production stream"
    )
    p.add_argument("--data", default=None, metavar="FILE",
                   help="replay your own CSV/TSV/Parquet table instead of --stream (rows in "
                   "file order, or by --time-column); needs --target")  # fmt: skip
    p.add_argument("--target", default=None, help="--data: the label column")
    p.add_argument("--text-column", default=None,
                   help="--data: a column of texts, the one feature (with --model text:minilm)")  # fmt: skip
    p.add_argument("--time-column", default=None, help="--data: replay rows sorted by this column")
    p.add_argument("--out", default="simulation", help="folder for simulation.json, the plot, "
                   "the deployments (default: ./simulation)")  # fmt: skip
    p.add_argument(
        "--policy", action="append", default=[], metavar="SPEC",
        help="a policy to run: a stage name with the simulator's defaults, or a spec such as "
        "'triggered(cooldown_s=7200,drift_alpha=0.05)' (repeatable; default: all four)",
    )  # fmt: skip
    p.add_argument("--rows", type=int, default=None, help="rows of the stream (default: all)")
    p.add_argument("--drift-at", type=int, default=None,
                   help="row where the drift starts (--data: where you know it drifted)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="the stream's seed")
    p.add_argument("--warmup", type=int, default=1000, help="labelled rows v1.0 is trained on")
    p.add_argument("--batch-size", type=int, default=100, help="rows per production batch")
    p.add_argument("--label-delay", type=int, default=1, help="batches until labels arrive")
    p.add_argument("--hours-per-batch", type=float, default=1.0, help="simulated time per batch")
    p.add_argument("--model", default="mlp", help="model spec (default: mlp)")
    p.add_argument("--strategy", default="naive", help="the deployment's strategy spec")
    p.add_argument("--epochs", type=int, default=5, help="training epochs per update")
    p.add_argument("--report", action="store_true", help="also write report.html and report.md")


def _stream_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {"seed": args.seed}
    if args.rows is not None:
        opts["n"] = args.rows
    if args.drift_at is not None:
        if args.stream.endswith("stable"):
            raise ValueError(f"--drift-at: the stream {args.stream} has no drift")
        opts["position"] = args.drift_at
    return opts


def _stream(args: argparse.Namespace) -> Any:
    """The stream's name, or (with --data) the `ProductionStream` read from the file."""
    file_only = {"--target": args.target, "--text-column": args.text_column,
                 "--time-column": args.time_column}  # fmt: skip
    if args.data is None:
        given = [flag for flag, v in file_only.items() if v is not None]
        if given:
            raise ValueError(f"{given[0]} goes with --data FILE")
        return args.stream
    if args.target is None:
        raise ValueError("--data needs --target, the label column")
    from lifelong.simulate.streams import from_file

    return from_file(
        args.data, args.target, text_column=args.text_column, time_column=args.time_column,
        n=args.rows, drift_at=None if args.drift_at is None else [args.drift_at],
    )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    """Run the simulation, print the table and where the files are."""
    from lifelong.simulate import simulate
    from lifelong.simulate.report import text_table, write_report

    if args.hours_per_batch <= 0:
        raise ValueError(f"--hours-per-batch={args.hours_per_batch}: must be positive")
    stream = _stream(args)
    result = simulate(
        stream, out=args.out, policies=args.policy or None,
        stream_options=_stream_options(args) if isinstance(stream, str) else None,
        model=args.model, strategy=args.strategy,
        warmup=args.warmup, batch_size=args.batch_size, label_delay=args.label_delay,
        seconds_per_batch=3600.0 * args.hours_per_batch,
        train={"epochs": args.epochs, "lr": 0.05, "momentum": 0.9},
    )  # fmt: skip
    print(text_table(result))
    print(f"results: {args.out}/simulation.json\nplot: {result.get('plot')}")
    if args.report:
        for path in write_report(args.out):
            print(f"report: {path}")
    return 0
