"""`lifelong tune`: search spaces, the test-set guard, resumable studies, the best spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from lifelong.config import TrainConfig
from lifelong.experiment import tune as tune_mod
from lifelong.experiment.run import RunConfig, run
from lifelong.experiment.tune import (
    ParamSpace,
    TestSetAccessError,
    TuneConfig,
    check_spaces,
    guard_stream,
    parse_param,
    tune,
)
from lifelong.strategies.base import Batch, Strategy
from lifelong.strategies.registry import STRATEGIES, build_strategies, register

try:
    import optuna
except ImportError:  # skipped without the `tune` extra; CI installs every extra
    if os.environ.get("CI"):
        raise
    pytest.skip("optuna is not installed", allow_module_level=True)


class Probe(Strategy):
    """Test-only: an L2 penalty on the weights, `alpha` strong (`k` is unused)."""

    def __init__(self, alpha: float = 0.0, k: int = 1) -> None:
        self.alpha = alpha
        self.k = k

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        return self.alpha * sum(p.pow(2).sum() for p in model.parameters())


class Peek(Probe):
    """Test-only: a strategy that (wrongly) looks at the test set after each experience."""

    def end(self, model: nn.Module, experience) -> None:  # type: ignore[no-untyped-def]
        self.seen_test_ = float(experience.test.x.mean())


@pytest.fixture(autouse=True)
def test_strategies() -> Iterator[None]:
    """Register the test-only strategies for one test, then remove them again."""
    register("tune-probe")(Probe)
    register("tune-peek")(Peek)
    yield
    STRATEGIES.pop("tune-probe", None)
    STRATEGIES.pop("tune-peek", None)


def config(tmp_path: Path, strategy: str = "tune-probe", **kw) -> TuneConfig:  # type: ignore[no-untyped-def]
    params = kw.pop("params", (parse_param("alpha=log:1e-4:1"),))
    base = RunConfig(
        benchmark="synthetic", scenario="class", strategy=strategy, train=TrainConfig(epochs=1)
    )
    return TuneConfig(
        run=base,
        params=params,
        trials=kw.pop("trials", 2),
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        out=str(tmp_path / "out"),
        **kw,
    )


def test_parse_param() -> None:
    assert parse_param("lambda=log:1:10000") == ParamSpace("lambda", 1.0, 10000.0, log=True)
    assert parse_param("alpha=0.1:2") == ParamSpace("alpha", 0.1, 2.0)
    assert parse_param("mem_size=int:log:10:500").integer
    assert parse_param("mode=a|b|3").choices == ("a", "b", 3)
    for bad, msg in [
        ("alpha", "expected NAME=LOW:HIGH"),
        ("alpha=2:1", "LOW must be below HIGH"),
        ("alpha=log:0:1", "LOW > 0"),
        ("alpha=x:1", "LOW and HIGH must be numbers"),
        ("alpha=cube:1:2", "malformed"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_param(bad)


def test_check_spaces() -> None:
    name, fixed, spaces = check_spaces("tune-probe(alpha=0.5)", [parse_param("k=1:8")])
    assert name == "tune-probe" and fixed == {"alpha": 0.5}
    assert spaces[0].integer  # `k: int` is drawn as an integer
    with pytest.raises(ValueError, match="has no parameter 'beta'; valid: alpha, k"):
        check_spaces("tune-probe", [parse_param("beta=0:1")])
    with pytest.raises(ValueError, match="both fixed"):
        check_spaces("tune-probe(alpha=0.5)", [parse_param("alpha=0:1")])
    with pytest.raises(ValueError, match="one strategy at a time"):
        check_spaces("tune-probe+tune-peek", [parse_param("alpha=0:1")])


def test_guard_withholds_every_test_set(synthetic_class) -> None:
    guarded = guard_stream(synthetic_class)
    for e, orig in zip(guarded.experiences, synthetic_class.experiences):
        assert e.train is orig.train and e.classes == orig.classes
        touches = (lambda s: s.x, len, lambda s: s[:2], lambda s: s.to("cpu"))
        for touch in touches:
            with pytest.raises(TestSetAccessError, match=f"experience {e.index}"):
                touch(e.test)
        assert "withheld" in repr(e.test)


def test_study_resumes_and_best_spec_parses(tmp_path: Path) -> None:
    cfg = config(tmp_path, tune_experiences=2)
    first = tune(cfg)
    assert first["trials"]["total"] == 2
    second = tune(cfg)  # a new call on the same storage continues the study
    assert second["trials"]["total"] == 4
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert len({t.params["alpha"] for t in study.trials}) == 4  # no replayed draws
    for t in study.trials:
        assert set(t.intermediate_values) <= {0, 1}  # one report per tuned experience (K=2)
    best = json.loads((Path(cfg.out_dir) / "best.json").read_text())
    assert best == json.loads(json.dumps(second))
    (strategy,) = build_strategies(best["spec"])
    assert strategy.name == "tune-probe"
    assert strategy.alpha == pytest.approx(best["params"]["alpha"])
    assert best["validation_accuracy"] == max(t.value for t in study.trials if t.value is not None)
    with pytest.raises(ValueError, match="valid_fraction"):
        tune(replace(cfg, valid_fraction=0.2))  # same study, other protocol: refused


def test_a_strategy_that_peeks_at_the_test_set_is_caught(tmp_path: Path) -> None:
    row = run(RunConfig(benchmark="synthetic", strategy="tune-peek", train=TrainConfig(epochs=1)))
    assert row["status"] == "ok"  # outside tuning the test set is there to read
    with pytest.raises(TestSetAccessError, match="test set of experience 0"):
        tune(config(tmp_path, strategy="tune-peek", trials=1))


def test_an_objective_scored_on_test_sets_is_caught(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tune_mod, "validation_sets", lambda s: [e.test for e in s.experiences])
    with pytest.raises(TestSetAccessError, match="during tuning"):
        tune(config(tmp_path, trials=1))


def test_pruner_stops_bad_trials(tmp_path: Path) -> None:
    cfg = config(tmp_path, params=(parse_param("alpha=0|3"),), trials=8, pruner_startup_trials=1)
    best = tune(cfg)
    assert best["params"] == {"alpha": 0}
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all(t.params["alpha"] == 3 for t in pruned)


def test_cli_resumes_in_a_new_process_and_evaluates(tmp_path: Path, capsys) -> None:
    from lifelong.cli import main

    args = ["tune", "--benchmark", "synthetic", "--strategy", "replay", "--param",
            "mem_size=int:10:60", "--epochs", "1", "--out", str(tmp_path), "--quiet"]  # fmt: skip
    assert main([*args, "--trials", "1"]) == 0
    spec = capsys.readouterr().out.strip()
    assert build_strategies(spec)[0].name == "replay"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "lifelong.cli", *args, "--trials", "1", "--evaluate"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["trials"]["total"] == 2  # the second process continued the first's study
    assert done.stdout.strip() == best["spec"]
    (row,) = best["evaluation"]
    assert row["status"] == "ok" and 0 < row["final_average_accuracy"] <= 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["runs"][0]["strategy"] == best["spec"]
    torch.set_num_threads(1)
