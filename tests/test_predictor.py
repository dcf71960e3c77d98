"""The saved model as a product: `lifelong.load`, `Predictor` and `lifelong predict`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import lifelong
from lifelong.checkpoint import CheckpointError
from lifelong.cli import main
from lifelong.config import TrainConfig
from lifelong.data import get_benchmark
from lifelong.data.experience import Experience
from lifelong.experiment.run import RunConfig, run
from lifelong.strategies.base import Strategy
from lifelong.strategies.registry import register

DIGITS = dict(
    benchmark="split-digits",
    model="mlp(hidden=(32,))",
    train=TrainConfig(epochs=1),
    seed=0,
    threads=1,
)
NAMES = ["zero", "one", "two", "three", "four", "five"]


@register("test-nearest-mean")
class NearestMean(Strategy):
    """A test strategy that replaces prediction: the nearest class mean of the inputs."""

    def __init__(self) -> None:
        self.means_: dict[int, Tensor] = {}

    def end(self, model: nn.Module, experience: Experience) -> None:
        for c in experience.classes:
            self.means_[c] = experience.train.x[experience.train.y == c].mean(0)

    def predict(self, model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
        if not self.means_:  # before training (the untrained model's row)
            return torch.zeros(len(x), dtype=torch.long)
        return nearest_mean(self.means_, x)


def nearest_mean(means: dict[int, Tensor], x: Tensor) -> Tensor:
    classes = sorted(means)
    d = torch.cdist(x.flatten(1), torch.stack([means[c] for c in classes]))
    return torch.tensor(classes)[d.argmin(1).cpu()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for scenario in ("class", "task"):
        d = root / f"digits-{scenario}"
        out[scenario] = (d, run(RunConfig(**DIGITS, scenario=scenario), run_dir=d))
    synth = get_benchmark("synthetic", "class")
    synth = replace(synth, info={**synth.info, "class_names": NAMES})
    cfg = RunConfig(
        benchmark="synthetic", strategy="test-nearest-mean", train=TrainConfig(epochs=1)
    )
    out["named"] = (root / "named", run(cfg, stream=synth, run_dir=root / "named"))
    return out


FRESH = textwrap.dedent(
    """
    import json, sys, torch
    torch.set_num_threads(1)
    import lifelong
    out = {}
    for scenario, run_dir in json.loads(sys.argv[1]).items():
        predictor = lifelong.load(run_dir)
        stream = lifelong.get_benchmark("split-digits", scenario)
        x = torch.cat([e.test.x for e in stream])
        t = torch.cat([e.test.t for e in stream])
        pred = predictor.predict(x, task=t if scenario == "task" else None)
        accs, start = [], 0
        for e in stream:
            n = len(e.test)
            accs.append(((pred[start : start + n] == e.test.y).double().sum() / n).item())
            start += n
        out[scenario] = accs
    print(json.dumps(out))
    """
)


def test_fresh_process_reproduces_last_row(runs: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    dirs = {s: str(runs[s][0]) for s in ("class", "task")}
    res = subprocess.run(
        [sys.executable, "-c", FRESH, json.dumps(dirs)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    for s in ("class", "task"):
        last = runs[s][1]["accuracy_matrix"][-1]
        assert got[s] == last
        assert any(0 < a < 1 for a in last)


def test_predictor_describes_the_model(runs: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    p = lifelong.load(runs["class"][0] / "model")
    assert isinstance(p, lifelong.Predictor)
    assert p.scenario == "class" and p.input_shape == (64,) and p.dtype == torch.float32
    assert p.classes == tuple(range(10)) and p.class_names is None
    assert p.extra_config["benchmark"] == "split-digits"
    pt = lifelong.load(runs["task"][0])
    assert pt.tasks == {i: (2 * i, 2 * i + 1) for i in range(5)}


def test_task_ids_are_required_and_checked(runs: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    p = lifelong.load(runs["task"][0])
    x = get_benchmark("split-digits", "task")[1].test.x[:8]
    with pytest.raises(ValueError, match="pass task=<id>.*known tasks: 0, 1, 2, 3, 4"):
        p.predict(x)
    with pytest.raises(ValueError, match=r"unknown task id\(s\) \[7\]"):
        p.predict(x, task=7)
    with pytest.raises(ValueError, match=r"unknown task id\(s\) \[-1\]"):
        p.predict(x, task=np.array([1] * 7 + [-1]))
    with pytest.raises(ValueError, match="8 integer ids"):
        p.predict(x, task=[1, 2])
    with pytest.raises(ValueError, match="8 integer ids"):
        p.predict(x, task=np.full(8, 1.0))
    one = p.predict(x, task=1)
    assert torch.equal(one, p.predict(x, task=np.ones(8, dtype=np.int64)))
    assert set(one.tolist()) <= {2, 3}  # task 1's head predicts among its classes
    pc = lifelong.load(runs["class"][0])
    with pytest.raises(ValueError, match="'class' scenario: it takes no task id"):
        pc.predict(x, task=0)


def test_inputs_are_checked(runs: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    p = lifelong.load(runs["class"][0])
    x = get_benchmark("split-digits", "class")[0].test.x[:5]
    with pytest.raises(ValueError, match=r"shape \(N, 64\).*got \(64,\)"):
        p.predict(x[0])
    with pytest.raises(ValueError, match=r"got \(5, 8, 8\)"):
        p.predict(x.view(5, 8, 8))
    with pytest.raises(ValueError, match="must be numbers"):
        p.predict(np.array([["a"] * 64]))
    with pytest.raises(ValueError, match="real numbers"):
        p.predict(x > 0)
    pred = p.predict(x)
    assert pred.dtype == torch.long and pred.shape == (5,)
    assert torch.equal(pred, p.predict(x.double().numpy()))  # cast to the features' dtype
    proba = p.predict_proba(x)
    assert proba.shape == (5, 10) and torch.allclose(proba.sum(1), torch.ones(5))
    assert torch.equal(proba.argmax(1), pred)


def test_strategy_prediction_and_class_names(runs: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    p = lifelong.load(runs["named"][0])
    assert p.class_names == NAMES and p.class_name(4) == "four"
    x = get_benchmark("synthetic", "class")[2].test.x
    means = p.strategies[0].means_  # type: ignore[attr-defined]
    assert sorted(means) == list(range(6))
    pred = p.predict(x)
    assert torch.equal(pred, nearest_mean(means, x))
    assert not torch.equal(pred, p.model(x).argmax(1))  # the hook, not the head, predicts
    with pytest.raises(ValueError, match="replaces prediction"):
        p.predict_proba(x)


def test_load_errors(tmp_path: Path, runs: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    with pytest.raises(CheckpointError, match="no saved model"):
        lifelong.load(tmp_path)
    (tmp_path / "model").mkdir()
    src = runs["class"][0] / "model"
    for name in ("meta.json", "tensors.pt"):
        (tmp_path / "model" / name).write_bytes((src / name).read_bytes())
    (tmp_path / "model" / "tensors.pt").write_bytes(b"\0" * 64)
    with pytest.raises(CheckpointError, match="tensors.pt: checksum mismatch"):
        lifelong.load(tmp_path)
    state = torch.get_rng_state()
    lifelong.load(runs["class"][0])
    assert torch.equal(state, torch.get_rng_state())  # loading leaves the global RNG alone


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_cli_predict_writes_csv(
    tmp_path: Path, runs: dict[str, tuple[Path, dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    p = lifelong.load(runs["class"][0])
    x = get_benchmark("split-digits", "class")[3].test.x[:20].numpy()
    np.savez(tmp_path / "x.npz", x=x)
    assert main(["predict", str(runs["class"][0]), "--data", str(tmp_path / "x.npz"),
                 "--out", str(tmp_path / "p.csv")]) == 0  # fmt: skip
    rows = _read_csv(tmp_path / "p.csv")
    assert rows[0] == ["prediction"] and [int(r[0]) for r in rows[1:]] == p.predict(x).tolist()
    # CSV input with a header; task ids from --task or a `task` column
    pt = lifelong.load(runs["task"][0])
    header = ",".join(f"f{i}" for i in range(64))
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header=header, comments="")
    assert (
        main(["predict", str(runs["task"][0]), "--data", str(tmp_path / "x.csv"), "--task", "3"])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert [int(v) for v in out[1:]] == pt.predict(x, task=3).tolist()
    tasks = np.arange(20) % 5
    np.savetxt(tmp_path / "xt.csv", np.column_stack([x, tasks]), delimiter=",",
               header=header + ",task", comments="")  # fmt: skip
    assert main(["predict", str(runs["task"][0]), "--data", str(tmp_path / "xt.csv")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [int(v) for v in out[1:]] == pt.predict(x, task=tasks).tolist()
    assert main(["predict", str(runs["task"][0]), "--data", str(tmp_path / "x.csv")]) == 2
    assert "pass --task ID" in capsys.readouterr().err  # in the words of the CLI


def test_cli_predict_names_classes(
    tmp_path: Path, runs: dict[str, tuple[Path, dict[str, Any]]]
) -> None:
    x = get_benchmark("synthetic", "class")[1].test.x.numpy()
    np.savez(tmp_path / "x.npz", x=x)
    out = tmp_path / "p.csv"
    assert (
        main(
            ["predict", str(runs["named"][0]), "--data", str(tmp_path / "x.npz"), "--out", str(out)]
        )
        == 0
    )
    rows = _read_csv(out)
    assert rows[0] == ["prediction", "class_name"] and len(rows) == len(x) + 1
    assert all(name == NAMES[int(c)] for c, name in rows[1:])
