"""The `lifelong advise` command: its arguments (standard library only, so `--help`
answers without torch) and `main`, which prints the advice and optionally verifies it."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from dataclasses import replace
from typing import Any

from lifelong.advise import constraints as cons
from lifelong.advise import evidence as ev
from lifelong.advise import needed, rules


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of `lifelong advise` (the `--data` options are added by the CLI)."""
    p.add_argument("--config", default=None, help="YAML file of constraints (keys as the flags, e.g. keep_data: 500)")  # fmt: skip
    p.add_argument("--benchmark", default=None, help="a named benchmark (instead of --data)")
    p.add_argument("--scenario", default=None, choices=cons.SCENARIOS, help="default: inferred from the data")  # fmt: skip
    p.add_argument("--keep-data", default=None, help="may past data be kept: none, all or N samples")  # fmt: skip
    p.add_argument("--retention", dest="retention_days", default=None, help="days past data may be kept (inf: no limit)")  # fmt: skip
    p.add_argument("--generated-ok", action="store_const", const=True, default=None, help="generated samples may be stored")  # fmt: skip
    p.add_argument("--task-ids-at-prediction", default=None, choices=("yes", "no"), help="is the task id known at prediction time")  # fmt: skip
    p.add_argument("--backbone", default=None, help="a pretrained backbone (model spec)")
    p.add_argument("--priority", default=None, choices=cons.PRIORITIES, help="retain the past, adapt fast, or balanced")  # fmt: skip
    p.add_argument("--min-accuracy", default=None, help="minimum acceptable accuracy (0-1)")
    p.add_argument("--budget-seconds", default=None, help="compute allowed per update (seconds)")
    p.add_argument("--update-every", default=None, help="how often new data arrives: 1d, 12h, 7d, 1y")  # fmt: skip
    g = p.add_argument_group("--verify: run the shortlist on the data")
    g.add_argument("--verify", action="store_true", help="run the shortlist and write results.json")  # fmt: skip
    g.add_argument("--out", default="runs/advise", help="output folder (default runs/advise)")
    g.add_argument("--epochs", type=int, default=2, help="epochs per experience (default 2)")
    g.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    g.add_argument("--model", default="mlp", help="model spec when no --backbone (default mlp)")
    g.add_argument("--workers", type=int, default=1, help="runs at once (default 1)")
    g.add_argument("--tune-trials", type=int, default=4, help="Optuna trials per method with a strength to choose, on validation splits (default 4; 0: none)")  # fmt: skip


def load_catalogue() -> dict[str, rules.StrategyInfo]:
    """Every registered strategy's scenarios and default hyper-parameters."""
    from lifelong.strategies.registry import registry

    out = {}
    for name, cls in registry().items():
        sig = inspect.signature(cls.__init__).parameters
        params = {
            n: sig[n].default
            for n in cls.param_names()
            if sig[n].default is not inspect.Parameter.empty
        }
        out[name] = rules.StrategyInfo(tuple(cls.scenarios), params)
    return out


def constraints_from(
    args: argparse.Namespace, data: dict[str, Any] | None
) -> tuple[cons.Constraints, str]:
    """The constraints (flags > YAML > prompt on a terminal > default) and why the scenario."""
    given = {name: getattr(args, name, None) for name in cons.FIELDS}
    from_file = cons.read_yaml(args.config) if args.config else None
    c = cons.resolve(given, from_file)
    if args.scenario or (from_file and "scenario" in from_file):
        return c, "given"
    scenario, why = cons.infer_scenario(data, args.benchmark, c.task_ids_at_prediction)
    return dataclasses.replace(c, scenario=scenario), why


def retrain_cost(
    args: argparse.Namespace, c: cons.Constraints, data: dict[str, Any] | None, summary: Any
) -> needed.RetrainCost | None:
    """Measured on the data or benchmark when one is given, else scaled from the evidence."""
    if data is None and args.benchmark is None:
        return needed.from_evidence(summary, None)
    from lifelong.experiment.run import RunConfig, make_stream

    source = {"data": data} if data is not None else {"benchmark": args.benchmark}
    stream = make_stream(RunConfig(scenario=c.scenario, **source))
    return needed.measure(stream, c.backbone or args.model, args.epochs)


def render(c: cons.Constraints, why: str, advice: rules.Advice, stage2: list[str]) -> str:
    lines = [f"scenario: {c.scenario} ({why})"]
    lines.append("constraints: " + ", ".join(f"{k}={v}" for k, v in c.to_dict().items()))
    lines += ["", "Is continual learning needed?", *(f"  {x}" for x in stage2)]
    lines += ["", "Shortlist (naive first as the baseline):"]
    for i, e in enumerate(advice.entries, 1):
        lines.append(f"  {i}. {e.spec:<28} {e.family:<15} {e.reason}")
        lines.append(f"     evidence: {e.evidence}")
    if advice.ruled_out:
        lines += ["", "Ruled out:", *(f"  - {why}" for _, why in advice.ruled_out)]
    specs = ",".join(e.spec for e in advice.entries)
    lines += ["", f"compare them: lifelong compare --strategies '{specs}'"]
    return "\n".join(lines)


def main(args: argparse.Namespace, data: dict[str, Any] | None = None) -> int:
    """`lifelong advise`: print the shortlist; with --verify, run it and write results.json."""
    if data is not None and args.benchmark is not None:
        raise ValueError("give --data or --benchmark, not both")
    c, why = constraints_from(args, data)
    summary = ev.load(c.scenario)
    advice = rules.shortlist(c, load_catalogue(), summary)
    cost = retrain_cost(args, c, data, summary)
    _, stage2 = needed.assess(c, cost, summary)
    print(render(c, why, advice, stage2), flush=True)
    if not args.verify:
        return 0
    if data is None and args.benchmark is None:
        raise ValueError("--verify needs --data or --benchmark")
    from lifelong.advise import tuning, verify

    source = {"data": data} if data is not None else {"benchmark": args.benchmark}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    entries, tuned = tuning.tune_entries(
        advice.entries, c, source, args.out, args.tune_trials, args.epochs, args.model
    )
    print(*(f"  {x}" for x in tuned), sep="\n", file=sys.stderr)
    advice = replace(advice, entries=entries)
    print(f"\nverifying {len(advice.entries) + 1} specs x {len(seeds)} seeds ...", file=sys.stderr)
    path, lines = verify.run(
        advice.entries, c, source, args.out, args.epochs, seeds, args.model, args.workers
    )
    print("\nVerified on your data:", *(f"  {x}" for x in lines), f"results: {path} (lifelong report {args.out})", sep="\n")  # fmt: skip
    return 0
