"""Experiment config files: validation errors, sweeps, CLI overrides, `lifelong init`."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import yaml

from lifelong.cli import build_parser, main
from lifelong.config import TRAIN_FIELDS, TrainConfig, field_info
from lifelong.experiment.config import (
    SWEEPABLE,
    VALID_KEYS,
    ConfigError,
    ExperimentConfig,
    cli_overrides,
    expand_sweep,
    load_config,
)
from lifelong.experiment.example import EXAMPLE

BASE = {"benchmark": "synthetic", "strategies": ["naive", "replay"], "seeds": [0]}


def write(tmp_path, data, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_every_config_field_is_a_valid_key():
    own = {f.name for f in fields(ExperimentConfig)} - {"train"}
    assert set(VALID_KEYS) == own | set(TRAIN_FIELDS)  # training keys at the top level


def test_unknown_key_is_refused_with_the_valid_ones(tmp_path):
    path = write(tmp_path, {**BASE, "epochz": 2})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: unknown key 'epochz' (did you mean 'epochs'?)")
    assert "valid keys: benchmark, data, data_dir, scenario, strategies, sweep" in msg


@pytest.mark.parametrize(
    ("update", "parts"),
    [
        ({"epochs": "two"}, ["epochs must be an integer >= 1, got 'two'"]),
        ({"epochs": 0}, ["epochs must be an integer >= 1, got 0"]),
        ({"batch_size": 1.5}, ["batch_size must be an integer >= 1, got 1.5"]),
        ({"lr": -1}, ["lr must be a number > 0, got -1"]),
        ({"lr": "1e-3"}, ["lr must be a number > 0, got '1e-3'", "write 1.0e-3"]),
        ({"momentum": 1.5}, ["momentum must be a number >= 0 and < 1, got 1.5"]),
        ({"eval_batch_size": 0}, ["eval_batch_size must be an integer >= 1 (or null), got 0"]),
        ({"reset_optimizer": "no"}, ["reset_optimizer must be true or false, got 'no'"]),
        ({"online": "yes"}, ["online must be true or false, got 'yes'"]),
        ({"optimizer": "rmsprop"}, ["unknown optimizer 'rmsprop'; expected one of sgd, adam"]),
        ({"seeds": [0, "x"]}, ["seeds: expected an integer or a non-empty list of integers"]),
        ({"device": "tpu"}, ["device: expected cpu, cuda, cuda:N or auto, got 'tpu'"]),
        ({"executor": "dask"}, ["executor: expected one of local, ray, got 'dask'"]),
        ({"workers": 0}, ["workers: expected a positive integer, got 0"]),
        ({"tracker": 3}, ["tracker: expected a tracker name"]),
        ({"scenario": "sideways"}, ["scenario: unknown scenario 'sideways'"]),
        ({"scenario": "domain", "benchmark": "split-digits"}, ["does not define the 'domain'"]),
        ({"strategies": ["naive", "bogus"]}, ["strategies: unknown strategy 'bogus'"]),
        ({"strategies": "naive,"}, ["strategies: malformed list 'naive,': empty entry"]),
        ({"strategies": ["replay(mem_sz=5)"]}, ["strategies:", "no parameter 'mem_sz'"]),
        ({"benchmark": "nope"}, ["benchmark: unknown benchmark 'nope'", "synthetic"]),
        ({"data": [1, 2]}, ["data: expected a mapping of option names to values"]),
        ({"data": {"path": "x.csv"}}, ["give either benchmark or data, not both"]),
        ({"sweep": {"replay.mem_size": 100}}, ["sweep: expected a non-empty list of values"]),
        ({"sweep": {"ewc.lambda": [1, 10]}}, ["sweep: 'ewc.lambda'", "none of the strategies"]),
        ({"sweep": {"replay.mem_sz": [1]}}, ["sweep: strategy 'replay' has no parameter"]),
        ({"sweep": {"lr": [0.1, "zero"]}}, ["sweep: lr must be a number > 0, got 'zero'"]),
        ({"sweep": {"momentum": [0.5, 1]}}, ["sweep: momentum must be a number >= 0 and < 1"]),
        ({"sweep": {"gamma": [1]}}, ["sweep: unknown key 'gamma'", "lr, momentum"]),
        ({"sweep": {"compile": [False, True]}}, ["sweep: 'compile' cannot be swept"]),
    ],
)
def test_bad_values_name_file_key_value_and_expectation(tmp_path, update, parts):
    path = write(tmp_path, {**BASE, **update})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: "), msg
    for part in parts:
        assert part in msg, msg


@pytest.mark.parametrize(
    ("text", "part"),
    [("[1, 2]", "expected a mapping of keys to values at the top level, got list"),
     ("a: [1", "not valid YAML")],
)  # fmt: skip
def test_bad_files(tmp_path, text, part):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=part):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.yaml")


def test_sweep_expands_into_strategy_specs():
    out = expand_sweep(
        ["naive", "replay", "ewc(lambda=5)+lwf"],
        {"replay.mem_size": [100, 200], "ewc.lambda": [10, 100]},
    )
    assert [spec for spec, _ in out] == [
        "naive",
        "replay(mem_size=100)",
        "replay(mem_size=200)",
        "ewc(lambda=10.0)+lwf",
        "ewc(lambda=100.0)+lwf",
    ]
    both = expand_sweep(["replay+lwf"], {"replay.mem_size": [100, 200], "lwf.alpha": [0.5, 2]})
    assert len(both) == 4 and all(s.startswith("replay(mem_size=") for s, _ in both)


def test_grid_of_runs(tmp_path):
    path = write(
        tmp_path,
        {**BASE, "scenario": ["class", "task"], "seeds": [0, 1], "sweep": {"lr": [0.01, 0.1]},
         "strategies": ["naive", "replay(mem_size=100)"], "epochs": 1},
    )  # fmt: skip
    configs = load_config(path).run_configs(threads=1)
    assert len(configs) == 2 * 2 * 2 * 2  # scenarios x strategies x lr x seeds
    assert {(c.scenario, c.strategy, c.train.lr, c.seed) for c in configs} == {
        (sc, st, lr, s)
        for sc in ("class", "task")
        for st in ("naive", "replay(mem_size=100)")
        for lr in (0.01, 0.1)
        for s in (0, 1)
    }
    assert all(
        c.benchmark == "synthetic" and c.train.epochs == 1 and c.threads == 1 for c in configs
    )


def test_data_source_becomes_run_data(tmp_path):
    (tmp_path / "my.csv").write_text("a,y\n1,0\n")
    path = write(tmp_path, {"data": {"path": "my.csv", "target": "y"}, "strategies": "naive"})
    exp = load_config(path)
    [c0, *_] = exp.run_configs()  # the path is read against the file's folder
    assert c0.data == {"path": str(tmp_path / "my.csv"), "target": "y"} and c0.scenario == "class"


def test_cli_flags_override_only_the_keys_given(tmp_path):
    path = write(tmp_path, {**BASE, "epochs": 3, "lr": 0.05, "online": True, "seeds": [0, 1]})
    args = build_parser().parse_args(["compare", str(path), "--epochs", "1", "--no-online"])
    assert cli_overrides(args) == {"epochs": 1, "online": False}
    exp = load_config(args.config, cli_overrides(args))
    assert (exp.train.epochs, exp.train.online, exp.train.lr, exp.seeds) == (1, False, 0.05, (0, 1))
    with pytest.raises(
        ConfigError, match="^command line: --batch-size: batch_size must be an integer >= 1, got 0"
    ):
        load_config(path, {"batch_size": 0})
    # strategies from the command line drop the file's sweep keys that no longer apply
    swept = write(tmp_path, {**BASE, "sweep": {"replay.mem_size": [100, 200]}}, "s.yaml")
    exp = load_config(swept, {"strategies": "naive"})
    assert exp.sweep == {} and [c.strategy for c in exp.run_configs()] == ["naive"]
    tracked = build_parser().parse_args(["compare", "--tracker", "mlflow,tensorboard",
                                         "--tracker", "wandb"])  # fmt: skip
    assert load_config(None, cli_overrides(tracked)).tracker == {
        "mlflow": {}, "tensorboard": {}, "wandb": {}
    }  # fmt: skip


def test_training_keys_flags_and_sweeps_come_from_train_config(tmp_path):
    """Every `TrainConfig` field is a config key and a `lifelong compare` flag (with its
    declared default and help), and a sweep key when it is declared sweepable."""
    compare = build_parser()._subparsers._group_actions[0].choices["compare"]  # type: ignore[union-attr]
    flags = {a.dest: a for a in compare._actions}
    for key in TRAIN_FIELDS:
        info = field_info(key)
        assert key in VALID_KEYS and flags[key].default is None
        assert str(info["help"]) in flags[key].help
        assert (key in SWEEPABLE) == info["sweep"]
        if info["choices"] is not None:
            assert tuple(flags[key].choices) == info["choices"]
    assert ExperimentConfig().train == TrainConfig()
    args = build_parser().parse_args(
        ["compare", "--eval-batch-size", "64", "--no-reset-optimizer", "--weight-decay", "0"]
    )
    assert cli_overrides(args) == {
        "eval_batch_size": 64, "reset_optimizer": False, "weight_decay": 0.0
    }  # fmt: skip
    exp = load_config(None, cli_overrides(args))
    assert exp.train == TrainConfig(eval_batch_size=64, reset_optimizer=False)
    path = write(tmp_path, {**BASE, "momentum": 0, "sweep": {"reset_optimizer": [True, False]}})
    configs = load_config(path).run_configs()
    assert [c.train.reset_optimizer for c in configs] == [True, False, True, False]
    assert all(c.train.momentum == 0.0 and isinstance(c.train.momentum, float) for c in configs)


def test_bad_training_flag_is_refused_before_any_run(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["compare", "--benchmark", "synthetic", "--strategies", "naive", "--seeds", "0",
                 "--momentum", "1.5", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "command line: --momentum: momentum must be a number >= 0 and < 1, got 1.5" in err
    path = write(tmp_path, {**BASE, "momentum": 1.5, "out": str(out)})
    assert main(["compare", str(path), "--quiet"]) == 2 and not out.exists()
    assert f"{path}: momentum must be a number >= 0 and < 1, got 1.5" in capsys.readouterr().err


def test_experiment_dict_reads_back(tmp_path):
    path = write(tmp_path, {**BASE, "lr": 0.05, "sweep": {"epochs": [1, 2]}, "tracker": "mlflow"})
    exp = load_config(path)
    flat = exp.to_dict()
    assert flat["lr"] == 0.05 and "train" not in flat and flat["sweep"] == {"epochs": [1, 2]}
    assert load_config(write(tmp_path, flat, "back.yaml")) == exp


def test_default_out_follows_the_config_file_name():
    assert ExperimentConfig().default_out("conf/grid.yaml").endswith("runs/grid")
    assert ExperimentConfig(out="x").default_out("conf/grid.yaml") == "x"
    # without a file: runs/<benchmark>-<hash of the grid>, found again by the same command
    assert ExperimentConfig().default_out(None) == ExperimentConfig().default_out(None)
    assert ExperimentConfig().default_out(None).startswith("runs/split-mnist-5k-")


def test_init_writes_a_valid_commented_example(tmp_path, capsys):
    path = tmp_path / "experiment.yaml"
    assert main(["init", str(path)]) == 0
    assert path.read_text() == EXAMPLE and "# " in EXAMPLE
    assert main(["init", str(path)]) == 2
    assert "exists already; pass --force" in capsys.readouterr().err
    assert main(["init", str(path), "--force"]) == 0
    exp = load_config(path)
    assert exp.benchmark == ("split-mnist-5k",) and exp.workers == 2 and exp.threads == 1
    specs = sorted({c.strategy for c in exp.run_configs()})
    assert specs == [
        "ewc(lambda=10.0)",
        "ewc(lambda=100.0)",
        "naive",
        "replay",
        "replay(mem_size=200)",
    ]
    assert len(exp.run_configs()) == 10
    for key in TRAIN_FIELDS:  # every training setting is listed, at its default
        assert f"\n{key}: " in EXAMPLE
    assert exp.train == TrainConfig()


def test_init_example_runs(tmp_path, capsys):
    """The example, on the tiny synthetic benchmark with one strategy and seed."""
    path = tmp_path / "experiment.yaml"
    main(["init", str(path)])
    out = tmp_path / "out"
    code = main(["compare", str(path), "--benchmark", "synthetic", "--strategies", "replay",
                 "--seeds", "0", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert sorted(r["strategy"] for r in runs) == ["replay", "replay(mem_size=200)"]
    assert all(r["status"] == "ok" and r["params"]["epochs"] == 2 for r in runs)


@pytest.mark.slow
def test_full_init_example_runs_on_synthetic(tmp_path, capsys):
    path = tmp_path / "experiment.yaml"
    main(["init", str(path)])
    out = tmp_path / "out"
    code = main(["compare", str(path), "--benchmark", "synthetic", "--seeds", "0",
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert len(runs) == 5 and all(r["status"] == "ok" for r in runs)
