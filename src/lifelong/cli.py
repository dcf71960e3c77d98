"""The `lifelong` command. Only the standard library is imported at start-up, so
`lifelong --help` answers without importing torch; each command imports what it needs."""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
from collections.abc import Sequence


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

    c = sub.add_parser(
        "compare",
        help="run strategies on a benchmark (or an experiment file) and compare them",
        description="Run a grid of runs, resumably: rerunning the same command skips the "
        "runs already saved in the output folder. `lifelong init` writes an example file.",
    )
    from lifelong.experiment.config import add_compare_options

    add_compare_options(c)
    _add_data_options(c)

    ini = sub.add_parser("init", help="write a commented example experiment file")
    ini.add_argument("path", nargs="?", default="experiment.yaml", help="default experiment.yaml")
    ini.add_argument("--force", action="store_true", help="overwrite an existing file")

    sub.add_parser("benchmarks", help="list the benchmarks, one line each")
    st = sub.add_parser(
        "strategies",
        help="list the strategies, one line each; NAME: its description and hyper-parameters",
    )
    st.add_argument("name", nargs="?", default=None, help="a strategy: print its whole help")

    pr = sub.add_parser("predict", help="predict with the model a run saved")
    pr.add_argument("run_dir", help="a run's folder (OUT/runs/<key>) or an exported model")
    pr.add_argument(
        "--data",
        required=True,
        help="what training reads (CSV/TSV/Parquet table, matched by column name; .npz; "
        "an image folder) or .npy",
    )
    pr.add_argument("--out", default=None, help="CSV to write (default: standard output)")
    pr.add_argument("--task", type=int, default=None, help="task id (task scenario)")
    pr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")

    ex = sub.add_parser(
        "export",
        help="write a run's model for prediction only: no training samples",
        description="Write the model of RUN_DIR to --out for prediction only: the weights "
        "and what prediction needs, without the replay memory, exemplars, optimizer or past "
        "data (which hold or derive from training samples). `lifelong predict` and "
        "`lifelong.load` read it; it cannot go on learning.",
    )
    ex.add_argument("run_dir", help="a run's folder (OUT/runs/<key>) or a saved learner")
    ex.add_argument("--out", required=True, help="the folder to write")

    from lifelong.experiment import report, tune  # standard library only at import

    report.add_arguments(sub.add_parser("report", help="HTML and Markdown report of a sweep"))
    tun = sub.add_parser("tune", help="tune a strategy's hyper-parameters on validation data")
    tune.add_arguments(tun)
    _add_data_options(tun)
    from lifelong.deploy import cli as deploy_cli  # standard library only at import

    deploy_cli.add_arguments(sub.add_parser("deploy", help="keep a deployed model learning"))
    from lifelong import serve  # standard library only at import

    serve.add_arguments(
        sub.add_parser("serve", help="serve a deployment over HTTP (keys, updates)")
    )
    from lifelong.simulate import command as simulate  # standard library only at import

    simulate.add_arguments(
        sub.add_parser("simulate", help="replay a stream through each update policy")
    )
    from lifelong.advise import command as advise  # standard library only at import

    adv = sub.add_parser("advise", help="shortlist methods for your constraints; --verify runs it")
    advise.add_arguments(adv)
    _add_data_options(adv)
    return p


def cmd_compare(args: argparse.Namespace) -> int:
    """`lifelong compare [FILE]`: run the grid (resumably), print the table, write the store."""
    from lifelong.experiment.compare import run_sweep, summary_table
    from lifelong.experiment.config import cli_overrides, load_config
    from lifelong.experiment.table import terminal_width

    experiment = load_config(args.config, {**cli_overrides(args), **_data_overrides(args)})
    result = run_sweep(experiment, config_path=args.config)
    print(summary_table(result.rows, width=terminal_width()))  # compact when narrow
    print(f"\nresults: {result.results}")
    failed = [r for r in result.rows if r["status"] != "ok"]
    for r in failed:
        print(
            f"FAILED {r['strategy']} seed={r['seed']}: {r['error'].splitlines()[0]}",
            file=sys.stderr,
        )
    return 1 if failed else 0


#: `lifelong compare` flags describing the user's own data -> `stream_from_files` options.
DATA_FLAGS = {
    "target": "label column (tables)",
    "features": "comma-separated feature columns (default: all other columns)",
    "text_column": "column of texts, the one feature (tables; with --model text:minilm)",
    "task_column": "column giving each row's task (task scenario: one experience per value)",
    "domain_column": "column giving each row's domain (domain scenario: one experience per value)",
    "classes_per_experience": "classes per experience (class/task scenario)",
    "class_order": "comma-separated class ids or names, e.g. 3,1,2,0",
    "n_experiences": "number of experiences (class/task scenario)",
}


def _add_data_options(c: argparse.ArgumentParser) -> None:
    g = c.add_argument_group("your own data (instead of --benchmark; see README 'Your own data')")
    g.add_argument("--data", default=None, help="CSV/TSV/Parquet table, .npz, or image folder")
    for key, text in DATA_FLAGS.items():
        kind = _positive if key in ("classes_per_experience", "n_experiences") else str
        g.add_argument("--" + key.replace("_", "-"), type=kind, default=None, help=text)
    g.add_argument("--data-dir", default=None, help="where file-based benchmarks live and are downloaded (default $LIFELONG_DATA or ~/.cache/lifelong)")  # fmt: skip


def _data_overrides(args: argparse.Namespace) -> dict[str, object]:
    """`--data` and its options as the `data` config key; `--data-dir` as `data_dir`."""
    out: dict[str, object] = {} if args.data_dir is None else {"data_dir": args.data_dir}
    given = {k: getattr(args, k) for k in DATA_FLAGS if getattr(args, k) is not None}
    if args.data is None:
        if given:
            raise ValueError(f"--{next(iter(given)).replace('_', '-')} needs --data PATH")
        return out
    for key in ("features", "class_order"):
        if key in given:
            items = [v.strip() for v in given[key].split(",") if v.strip()]
            given[key] = [int(v) if key == "class_order" and v.isdigit() else v for v in items]
    out["data"] = {"path": args.data, **given}
    return out


def cli_wording(message: str, args: argparse.Namespace) -> str:
    """An error about the data options in the words of the flags typed (`--target`, not
    the Python `target=...`), when the data came from `--data`."""
    if getattr(args, "data", None) is None:
        return message  # an experiment file: its keys read as in Python
    if args.command == "predict":
        message = message.replace(
            "pass task=<id> (an int, or one id per sample)",
            "pass --task ID (or give each row's task in the data's task column)",
        )
    for key in DATA_FLAGS:
        flag = "--" + key.replace("_", "-")
        # target=... and features=[...] -> --target ...; a bare target= -> --target
        message = re.sub(rf"(?<![\w-]){key}=(\.\.\.|\[\.\.\.\])", f"{flag} ...", message)
        message = re.sub(rf"(?<![\w-]){key}=(?![\w'\"\[(])", flag, message)
        if "_" in key:  # never a word of plain prose
            message = re.sub(rf"(?<![\w'\"-]){key}\b(?!['\"])", flag, message)
    return message


def cmd_init(args: argparse.Namespace) -> int:
    """`lifelong init [PATH]`: write a commented example experiment file."""
    from lifelong.experiment.example import write_example

    path = write_example(args.path, force=args.force)
    print(f"wrote {path}; run it with: lifelong compare {path}", file=sys.stderr)
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    """`lifelong benchmarks`: one line per benchmark."""
    from lifelong.data.benchmarks import BENCHMARKS

    width = max(len(n) for n in BENCHMARKS)
    for name, info in sorted(BENCHMARKS.items()):
        print(f"{name:<{width}}  [{','.join(info.scenarios)}]  {info.description}")
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    """`lifelong strategies [NAME]`: one line per strategy (its docstring's first paragraph,
    cut only on a narrow terminal), or NAME's docstring and hyper-parameters."""
    from lifelong.strategy_help import main as strategies_main

    return strategies_main(args.name)


def cmd_predict(args: argparse.Namespace) -> int:
    """`lifelong predict`: one prediction per input row, as CSV (class id, class name)."""
    from lifelong.predictor import load, predict_file

    predictor = load(args.run_dir, device=args.device)
    if args.out is None:
        predict_file(predictor, args.data, sys.stdout, task=args.task)
        return 0
    buf = io.StringIO()  # nothing is written when the data is refused
    n = predict_file(predictor, args.data, buf, task=args.task)
    with open(args.out, "w", newline="") as f:
        f.write(buf.getvalue())
    print(f"{n} predictions written to {args.out}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`lifelong export RUN_DIR --out FOLDER`: the model for prediction, no training samples."""
    from lifelong.predictor import export

    info = export(args.run_dir, args.out)
    dropped = "; ".join(info["left_out"]) or "nothing held training samples"
    print(f"wrote {args.out}: a model for prediction, no training samples (left out: "
          f"{dropped})", file=sys.stderr)  # fmt: skip
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`lifelong report DIR`: write DIR/report.html and DIR/report.md from results.json."""
    from lifelong.experiment.report import main as report_main

    return report_main(args)


def cmd_tune(args: argparse.Namespace) -> int:
    """`lifelong tune`: Optuna search on validation data; prints the best strategy spec."""
    from lifelong.experiment.tune import main as tune_main

    return tune_main(args, **_data_overrides(args))  # type: ignore[arg-type]


def cmd_advise(args: argparse.Namespace) -> int:
    """`lifelong advise`: a shortlist of methods for the constraints; --verify runs it."""
    from lifelong.advise.command import main as advise_main

    return advise_main(args, _data_overrides(args).get("data"))  # type: ignore[arg-type]


def cmd_serve(args: argparse.Namespace) -> int:
    """`lifelong serve DIR`: the deployment's HTTP API on uvicorn."""
    from lifelong.serve import main as serve_main

    return serve_main(args)


def cmd_deploy(args: argparse.Namespace) -> int:
    """`lifelong deploy ACTION DIR ...`: see `lifelong deploy --help`."""
    from lifelong.deploy.cli import main as deploy_cli_main

    return deploy_cli_main(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    """`lifelong simulate`: replay a production stream through each update policy."""
    from lifelong.simulate.command import main as simulate_main

    return simulate_main(args)


COMMANDS = {
    "compare": cmd_compare,
    "init": cmd_init,
    "benchmarks": cmd_benchmarks,
    "strategies": cmd_strategies,
    "predict": cmd_predict,
    "export": cmd_export,
    "report": cmd_report,
    "tune": cmd_tune,
    "advise": cmd_advise,
    "deploy": cmd_deploy,
    "serve": cmd_serve,
    "simulate": cmd_simulate,
}


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
        print(f"lifelong {args.command}: error: {cli_wording(str(e), args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # said once: a sweep's message names what was saved
        print(("\n" if sys.stderr.isatty() else "") + (str(e) or "interrupted"), file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lifelong strategies | head`: the reader left, nothing to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 0


if __name__ == "__main__":
    sys.exit(main())
