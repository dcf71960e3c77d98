"""A tuning study's settings (`TuneConfig`), and how `lifelong tune`'s command line builds
them (`add_arguments`, `config_from_args`).

What a study is: the run to tune (`run`, whose `strategy` is the base spec), the search
space, the storage, and the protocol a resumed study must share with the one it continues.
The protocol itself is described in `lifelong.experiment.tune`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong.config import add_train_arguments, train_from_args
from lifelong.experiment.paths import missing_data
from lifelong.experiment.tune_space import ParamSpace, parse_param

if TYPE_CHECKING:  # torch-free at import time, so `lifelong --help` stays quick
    from lifelong.experiment.run import RunConfig


@dataclass(frozen=True)
class TuneConfig:
    """A tuning study: the training settings (`run`, whose `strategy` is the base spec),
    the search space, and the study's storage. See the module docstring for the protocol."""

    run: RunConfig
    params: tuple[ParamSpace, ...]
    trials: int = 20
    storage: str | None = None
    study_name: str | None = None
    tune_experiences: int | None = None
    valid_fraction: float = 0.1
    out: str | None = None
    evaluate: bool = False
    seeds: tuple[int, ...] = ()
    pruner_startup_trials: int = 5
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The study's name (default `<benchmark or data file>-<scenario>-<strategy>`)."""
        base = self.run.strategy.partition("(")[0].strip()
        source = self.run.benchmark
        if self.run.data is not None:
            source = Path(str(self.run.data.get("path", "data"))).stem or "data"
        return self.study_name or f"{source}-{self.run.scenario}-{base}"

    @property
    def out_dir(self) -> Path:
        """Where best.json (and the default SQLite study) go."""
        return Path(self.out or f"runs/tune-{self.name}")

    @property
    def storage_url(self) -> str:
        """The Optuna storage URL (default: SQLite in the output folder)."""
        return self.storage or f"sqlite:///{(self.out_dir / 'study.db').resolve()}"

    def protocol(self) -> dict[str, Any]:
        """What a resumed study must share with the one it continues."""
        r, t = self.run, self.run.train
        return {
            "benchmark": r.benchmark,
            "scenario": r.scenario,
            "strategy": r.strategy,
            "params": [p.name for p in self.params],
            "tune_experiences": self.tune_experiences,
            "valid_fraction": self.valid_fraction,
            "objective": "mean validation accuracy on the tuned experiences after the last one",
            "model": r.model,
            "head": r.head,
            "optimizer": t.optimizer,
            "lr": t.lr,
            "momentum": t.momentum,
            "weight_decay": t.weight_decay,
            "epochs": t.epochs,
            "batch_size": t.batch_size,
            "seed": r.seed,
            # settings added later: recorded only when set, so older studies still resume
            **{k: v for k, v in t.to_dict().items() if k in _LATER and v != _LATER[k]},
            **({} if r.data is None else {"data": r.data}),
        }


#: training settings a study's protocol records only when they differ from these defaults
_LATER = {"eval_batch_size": None, "online": False, "reset_optimizer": True, "precision": "fp32"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of `lifelong tune`."""
    p.add_argument(
        "--benchmark", default=None, help="benchmark name (default split-mnist-5k; or --data)"
    )
    p.add_argument(
        "--scenario", default=None, help="class, domain or task (default: the benchmark's first)"
    )
    p.add_argument("--strategy", required=True, help="strategy to tune: NAME or NAME(fixed=..)")
    p.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="SPEC",
        help="a range to search: NAME=LOW:HIGH, NAME=log:LOW:HIGH, NAME=int:LOW:HIGH or NAME=A|B",
    )
    p.add_argument("--trials", type=int, default=20, help="trials to add to the study (20)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (sqlite:///OUT/study.db)")
    p.add_argument("--study-name", default=None, help="default BENCHMARK-SCENARIO-STRATEGY")
    p.add_argument(
        "--tune-experiences", type=int, default=None, help="tune on the first K experiences"
    )
    p.add_argument("--valid-fraction", type=float, default=0.1, help="validation share (0.1)")
    p.add_argument(
        "--evaluate", action="store_true", help="then run the best setting on the test sets"
    )
    p.add_argument("--seeds", default=None, help="evaluation seeds, e.g. 0,1,2 (default --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of every trial (0)")
    p.add_argument("--model", default="mlp")
    p.add_argument("--head", default="fixed", choices=["fixed", "grow"])
    add_train_arguments(p, skip=("compile",))
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--out", default=None, help="output folder (default runs/tune-STUDY)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def config_from_args(
    args: argparse.Namespace, data: dict[str, Any] | None = None, data_dir: str | None = None
) -> TuneConfig:
    """Build a `TuneConfig` from `lifelong tune`'s arguments; `data` (the `--data` options,
    as `lifelong compare` reads them) tunes on the user's own data instead of a benchmark."""
    from lifelong.data.benchmarks import BENCHMARKS
    from lifelong.experiment.run import RunConfig

    if data is not None and args.benchmark is not None:
        raise ValueError("give either --benchmark or --data, not both")
    if data is not None and (problem := missing_data(data.get("path"), "--data")) is not None:
        raise ValueError(problem)
    benchmark = args.benchmark or RunConfig.benchmark
    if benchmark not in BENCHMARKS:
        known = ", ".join(sorted(BENCHMARKS))
        raise ValueError(f"unknown --benchmark {benchmark!r}; expected one of {known}")
    scenario = args.scenario or ("class" if data else BENCHMARKS[benchmark].scenarios[0])
    if scenario not in ("class", "domain", "task"):
        raise ValueError(f"unknown --scenario {scenario!r}; expected class, domain or task")
    try:
        seeds = tuple(int(s) for s in (args.seeds or "").split(",") if s.strip())
    except ValueError:
        raise ValueError(
            f"--seeds must be integers separated by commas, got {args.seeds!r}"
        ) from None
    train = train_from_args(args)  # checked here: a bad value fails before any trial
    run = RunConfig(
        benchmark=benchmark,
        scenario=scenario,
        strategy=args.strategy,
        model=args.model,
        head=args.head,
        train=train,
        seed=args.seed,
        device=args.device,
        data=data,
        data_dir=data_dir,
    )
    return TuneConfig(
        run=run,
        params=tuple(parse_param(p) for p in args.param),
        trials=args.trials,
        storage=args.storage,
        study_name=args.study_name,
        tune_experiences=args.tune_experiences,
        valid_fraction=args.valid_fraction,
        out=args.out,
        evaluate=args.evaluate,
        seeds=seeds,
    )
