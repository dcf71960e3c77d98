"""`lifelong tune`: search a strategy's hyper-parameters with Optuna, on validation data only.

The protocol, explicit so that a tuned number can be trusted:

1. Each experience's training data is split into train and validation
   (`lifelong.data.with_validation`, `valid_fraction` of it, stratification-free random
   split with the run's seed). The stream is cut to its first K experiences
   (`tune_experiences`, default all) and every test set is replaced by a guard that raises
   `TestSetAccessError` on any use: no test data can reach the objective.
2. Each trial trains a fresh model through the K experiences with `train_experience`
   (same seed, model and optimizer settings for every trial). After experience i it
   reports the mean validation accuracy over all K experiences (those not trained yet
   included) to the pruner (`MedianPruner`: a trial whose best report so far is below the
   median of completed trials at the same experience is stopped). The objective is that
   mean after the last experience, the average validation accuracy. (The mean over the
   experiences seen so far would fall as old ones are forgotten, so the best report of every
   trial would be its first one and nothing would ever be pruned.)
3. The best setting is printed as a ready strategy spec (paste it into
   `lifelong compare --strategies`) and saved in `OUT/best.json`. With `evaluate`, it is
   then run once per seed on the whole stream (all experiences, full training data) and
   scored on the test sets with `run()`; rows go to `OUT/results.json`.

Studies live in an Optuna storage (default `sqlite:///OUT/study.db`; any RDB URL works), so
running the same command again resumes the study and adds trials to it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lifelong.experiment.tune_config import TuneConfig, add_arguments, config_from_args
from lifelong.experiment.tune_guard import (
    TestSetAccessError,
    WithheldTestSet,
    guard_stream,
    validation_accuracy,
    validation_sets,
)
from lifelong.experiment.tune_space import ParamSpace, check_spaces, parse_param

if TYPE_CHECKING:  # torch-free at import time, so `lifelong --help` stays quick
    import optuna

    from lifelong.data.experience import Stream

Log = Callable[[str], None]

#: public names; the guard's, the search space's and the study settings' (with the command
#: line's arguments) are re-exported from `tune_guard`, `tune_space` and `tune_config`
__all__ = [
    "ParamSpace",
    "TestSetAccessError",
    "TuneConfig",
    "WithheldTestSet",
    "add_arguments",
    "check_spaces",
    "config_from_args",
    "evaluate",
    "guard_stream",
    "main",
    "make_objective",
    "open_study",
    "parse_param",
    "save_best",
    "tune",
    "tuning_stream",
    "validation_accuracy",
    "validation_sets",
]


def tuning_stream(config: TuneConfig) -> Stream:
    """The stream trials train on: validation carved out, cut to K experiences, test
    sets withheld (guarded)."""
    from lifelong.data import with_validation
    from lifelong.experiment.run import make_stream
    from lifelong.learner import resolve_device

    stream = with_validation(make_stream(config.run), config.valid_fraction, config.run.seed)
    k = config.tune_experiences or len(stream)
    if not 1 <= k <= len(stream):
        raise ValueError(f"--tune-experiences must be in 1..{len(stream)}, got {k}")
    stream = replace(stream, experiences=stream.experiences[:k])
    return guard_stream(stream.to(resolve_device(config.run.device)))


def make_objective(
    config: TuneConfig, stream: Stream, name: str, fixed: dict[str, Any]
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: train through `stream` with the trial's setting; after each
    experience, report the mean validation accuracy over all K tuned experiences (for the
    pruner; the last report is the objective)."""
    import optuna

    from lifelong.experiment.run import train_config
    from lifelong.learner import Learner, Result
    from lifelong.strategies.registry import build_one, canonical_spec

    r = config.run
    tcfg = train_config(r, stream)  # the same loop settings as the real run
    valid = validation_sets(stream)

    def objective(trial: optuna.Trial) -> float:
        strategy = build_one(name, {**fixed, **{p.name: p.suggest(trial) for p in config.params}})
        trial.set_user_attr("spec", canonical_spec([strategy]))
        learner = Learner(
            r.model,
            [strategy],
            config=tcfg,
            scenario=stream.scenario,
            head=r.head,
            device=r.device,
            seed=r.seed,
        )
        scores: list[float] = []

        def report(learner: Learner, result: Result) -> None:
            assert learner.model is not None
            accs = [validation_accuracy(learner.model, learner.strategies, v) for v in valid]
            scores.append(sum(accs) / len(accs))
            trial.report(scores[-1], result.next_experience - 1)
            if trial.should_prune():
                i = result.next_experience - 1
                raise optuna.TrialPruned(f"pruned after experience {i}: {scores[-1]:.4f}")

        learner.fit_stream(stream, report, evaluate=False)
        return scores[-1] if scores else 0.0

    return objective


def open_study(config: TuneConfig) -> optuna.Study:
    """Create the study, or load it from its storage (checking it follows the same protocol)."""
    import optuna

    config.out_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=config.name,
        storage=config.storage_url,
        direction="maximize",
        load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=config.pruner_startup_trials, n_warmup_steps=1
        ),
    )
    protocol = json.loads(json.dumps(config.protocol()))
    stored = study.user_attrs.get("protocol")
    if stored is None:
        study.set_user_attr("protocol", protocol)
    elif stored != protocol:
        diff = sorted(
            k for k in protocol.keys() | stored.keys() if protocol.get(k) != stored.get(k)
        )
        raise ValueError(
            f"study {config.name!r} in {config.storage_url} was tuned with other settings "
            f"({', '.join(diff)}); use another --study-name or the same settings"
        )
    # a fresh seed per resumption, so a resumed study does not replay the same draws
    study.sampler = optuna.samplers.TPESampler(seed=config.run.seed + len(study.trials))
    return study


def tune(config: TuneConfig, log: Log | None = None) -> dict[str, Any]:
    """Run `config.trials` more trials of the study; write and return `best.json`'s content."""
    import optuna

    name, fixed, spaces = check_spaces(config.run.strategy, config.params)
    config = replace(config, params=spaces)
    if config.trials < 1:
        raise ValueError(f"trials must be >= 1, got {config.trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial, ours
    stream = tuning_stream(config)
    study = open_study(config)

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if log:
            value = "-" if trial.value is None else f"{trial.value:.4f}"
            spec = trial.user_attrs.get("spec", "")
            log(f"trial {trial.number}: {trial.state.name.lower()} {spec} validation {value}")

    study.optimize(make_objective(config, stream, name, fixed), config.trials, callbacks=[report])
    return save_best(config, study, log)


def save_best(config: TuneConfig, study: optuna.Study, log: Log | None) -> dict[str, Any]:
    """Write `best.json` (and, with `evaluate`, the test-set evaluation and results.json)."""
    from optuna.trial import TrialState

    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not done:
        raise ValueError(f"no trial of study {config.name!r} has completed yet")
    best = study.best_trial
    states = [t.state for t in study.trials]
    record: dict[str, Any] = {
        "spec": best.user_attrs["spec"],
        "params": best.params,
        "validation_accuracy": best.value,
        "best_trial": best.number,
        "study_name": config.name,
        "storage": config.storage_url,
        "trials": {
            "total": len(states),
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL),
        },
        "protocol": config.protocol(),
    }
    if config.evaluate:
        record["evaluation"] = evaluate(config, record["spec"], log)
    path = config.out_dir / "best.json"
    path.write_text(json.dumps(record, indent=2))
    return record


def evaluate(config: TuneConfig, spec: str, log: Log | None = None) -> list[dict[str, Any]]:
    """Run `spec` on the whole stream (test sets) once per seed; write OUT/results.json."""
    from lifelong.experiment.compare import provenance, run_all, write_results

    seeds = config.seeds or (config.run.seed,)
    configs = [replace(config.run, strategy=spec, seed=s) for s in seeds]
    rows = run_all(configs, isolate=False, quiet=log is None)
    write_results(config.out_dir, rows, provenance(config.run.device, config.run.threads))
    keep = ("seed", "status", "final_average_accuracy", "average_forgetting", "error")
    return [{k: r.get(k) for k in keep} for r in rows]


# -- command line (its arguments: `tune_config`) --------------------------------------------
def main(
    args: argparse.Namespace, data: dict[str, Any] | None = None, data_dir: str | None = None
) -> int:
    """`lifelong tune`: progress on stderr; the best spec alone on stdout."""

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    config = config_from_args(args, data, data_dir)
    best = tune(config, None if args.quiet else log)
    t = best["trials"]
    log(
        f"best of {t['total']} trials ({t['complete']} complete, {t['pruned']} pruned) in study "
        f"{best['study_name']!r}: validation accuracy {best['validation_accuracy']:.4f}"
    )
    for row in best.get("evaluation", []):
        acc = row["final_average_accuracy"]
        log(f"test evaluation seed={row['seed']}: " + ("failed" if acc is None else f"{acc:.4f}"))
    log(
        f"saved: {config.out_dir / 'best.json'}; use it with: lifelong compare --strategies '{best['spec']}'"
    )
    print(best["spec"])
    return 0
