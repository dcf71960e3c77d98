"""Experiment config files: validation errors, sweeps, CLI overrides, `lifelong init`."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import yaml

from lifelong.cli import build_parser, main
from lifelong.experiment.config import (
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
    assert set(VALID_KEYS) == {f.name for f in fields(ExperimentConfig)}


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
        ({"epochs": "two"}, ["epochs: expected a positive integer, got 'two' (str)"]),
        ({"epochs": 0}, ["epochs: expected a positive integer, got 0 (int)"]),
        ({"batch_size": 1.5}, ["batch_size: expected a positive integer, got 1.5 (float)"]),
        ({"lr": -1}, ["lr: expected a number > 0, got -1 (int)"]),
        ({"online": "yes"}, ["online: expected true or false, got 'yes' (str)"]),
        ({"optimizer": "rmsprop"}, ["optimizer: expected one of sgd, adam, got 'rmsprop'"]),
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
        ({"sweep": {"lr": [0.1, "zero"]}}, ["sweep: lr: expected a number > 0, got 'zero'"]),
        ({"sweep": {"gamma": [1]}}, ["sweep: unknown key 'gamma'", "lr, momentum"]),
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
    assert {(c.scenario, c.strategy, c.lr, c.seed) for c in configs} == {
        (sc, st, lr, s)
        for sc in ("class", "task")
        for st in ("naive", "replay(mem_size=100)")
        for lr in (0.01, 0.1)
        for s in (0, 1)
    }
    assert all(c.benchmark == "synthetic" and c.epochs == 1 and c.threads == 1 for c in configs)


def test_data_source_becomes_run_data(tmp_path):
    path = write(tmp_path, {"data": {"path": "my.csv", "target": "y"}, "strategies": "naive"})
    exp = load_config(path)
    [c0, *_] = exp.run_configs()
    assert c0.data == {"path": "my.csv", "target": "y"} and c0.scenario == "class"


def test_cli_flags_override_only_the_keys_given(tmp_path):
    path = write(tmp_path, {**BASE, "epochs": 3, "lr": 0.05, "online": True, "seeds": [0, 1]})
    args = build_parser().parse_args(["compare", str(path), "--epochs", "1", "--no-online"])
    assert cli_overrides(args) == {"epochs": 1, "online": False}
    exp = load_config(args.config, cli_overrides(args))
    assert (exp.epochs, exp.online, exp.lr, exp.seeds) == (1, False, 0.05, (0, 1))
    with pytest.raises(ConfigError, match="^command line: --batch-size: expected a positive"):
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


def test_default_out_follows_the_config_file_name():
    assert ExperimentConfig().default_out("conf/grid.yaml").endswith("runs/grid")
    assert ExperimentConfig(out="x").default_out("conf/grid.yaml") == "x"
    assert "compare-" in ExperimentConfig().default_out(None)


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
