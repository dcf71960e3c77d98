"""Checkpoints: bit-exact resume (also after SIGKILL), atomic writes, corrupted files refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from lifelong import serialize
from lifelong.config import TrainConfig
from lifelong.data.experience import Experience
from lifelong.experiment.run import RunConfig, run
from lifelong.experiment.rundir import RunDir
from lifelong.serialize import CheckpointError, read_state_dir, write_state_dir
from lifelong.strategies.base import Batch, Strategy
from lifelong.strategies.registry import register


@register("test-nested-state")
class NestedState(Strategy):
    """A test strategy whose state nests tensors in dicts (int and str keys), lists and
    tuples, draws from the global RNG, and shapes training through a penalty."""

    def __init__(self, weight: float = 0.01) -> None:
        self.weight = weight
        self.memory_: dict[str, Any] = {"anchors": {}, "log": [], "noise": None}

    def end(self, model: nn.Module, experience: Experience) -> None:
        first = next(p for p in model.parameters() if p.dim() == 2)
        self.memory_["anchors"][experience.index] = [first.detach().clone(), {"n": first.numel()}]
        self.memory_["log"].append((experience.index, list(experience.classes), 0.5))
        self.memory_["noise"] = torch.rand(4)

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        if self.memory_["noise"] is None:
            return out.new_zeros(())
        first = next(p for p in model.parameters() if p.dim() == 2)
        scale = self.weight * float(self.memory_["noise"].sum())
        return scale * sum((first - a).pow(2).sum() for a, _ in self.memory_["anchors"].values())


SMALL = dict(
    benchmark="synthetic", scenario="class", model="mlp(hidden=(32,))", train=TrainConfig(epochs=1)
)


class Stop(Exception):
    pass


def stop_at(prefix: str) -> Any:
    def progress(msg: str) -> None:
        if msg.startswith(prefix):
            raise Stop(msg)

    return progress


def tensors_of(run_dir: Path, name: str = "model") -> dict[str, Tensor]:
    return read_state_dir(run_dir / name)["model"]  # type: ignore[no-any-return]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = tensors_of(a), tensors_of(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_nested_state_round_trip(tmp_path: Path) -> None:
    s = NestedState()
    s.memory_ = {
        "anchors": {0: [torch.arange(6.0).view(2, 3), {"n": 6}], 3: [torch.ones(2, 3)[:, 1], {}]},
        "log": [(0, [0, 1], 0.1), (1, [2, 3], float("inf"))],
        "noise": torch.rand(4, dtype=torch.float64),
        "odd keys": {"__tensor__": 1, None: "none", 2.5: True},
    }
    write_state_dir(tmp_path / "state", {"strategy": s.state_dict()})
    fresh = NestedState()
    fresh.load_state_dict(read_state_dir(tmp_path / "state")["strategy"])
    got, want = fresh.memory_, s.memory_
    assert set(got["anchors"]) == {0, 3} and got["log"] == want["log"]
    assert isinstance(got["log"][0], tuple)
    assert torch.equal(got["anchors"][0][0], want["anchors"][0][0])
    assert torch.equal(got["anchors"][3][0], want["anchors"][3][0])
    assert got["anchors"][3][0].untyped_storage().nbytes() == 2 * 4  # the view, not its base
    assert got["noise"].dtype == torch.float64 and torch.equal(got["noise"], want["noise"])
    assert got["odd keys"] == want["odd keys"]


def test_state_refuses_objects(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"strategy/teacher_.*Linear"):
        write_state_dir(tmp_path / "s", {"strategy": {"teacher_": nn.Linear(2, 2)}})


def test_interrupted_run_resumes_bit_exactly(tmp_path: Path) -> None:
    cfg = RunConfig(**SMALL, strategy="test-nested-state(weight=0.05)", head="grow", seed=1)
    ref = run(cfg, run_dir=tmp_path / "ref")
    with pytest.raises(Stop):
        run(cfg, run_dir=tmp_path / "cut", progress=stop_at("experience 3/"))
    assert read_state_dir(tmp_path / "cut" / "checkpoint")["progress"]["next_experience"] == 2
    msgs: list[str] = []
    row = run(cfg, run_dir=tmp_path / "cut", resume=True, progress=msgs.append)
    assert msgs[0].startswith("resumed from") and "after experience 2/3" in msgs[0]
    assert not any(m.startswith(("experience 1/", "experience 2/")) for m in msgs)
    assert row["accuracy_matrix"] == ref["accuracy_matrix"]
    assert row["forward_transfer"] == ref["forward_transfer"]
    assert_same_weights(tmp_path / "ref", tmp_path / "cut")
    # resuming a finished run trains nothing and gives the same row
    msgs.clear()
    again = run(cfg, run_dir=tmp_path / "cut", resume=True, progress=msgs.append)
    assert again["accuracy_matrix"] == ref["accuracy_matrix"] and len(msgs) == 1


KILL_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, torch
    torch.set_num_threads(1)
    from lifelong.experiment.run import RunConfig, run
    cfg, run_dir, pause = RunConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2], float(sys.argv[3])
    def progress(msg):
        print(msg, flush=True)
        if msg.startswith("experience 3/"):
            time.sleep(pause)  # killed here: experience 2 is checkpointed, 3 is not
    row = run(cfg, progress=progress, run_dir=run_dir, resume=True)
    print("RESULT " + json.dumps(row["accuracy_matrix"]), flush=True)
    """
)


def _start(cfg: RunConfig, run_dir: Path, pause: float) -> subprocess.Popen[str]:
    args = [sys.executable, "-c", KILL_SCRIPT, json.dumps(asdict(cfg)), str(run_dir), str(pause)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def test_sigkill_then_resume_in_new_process_is_bit_exact(tmp_path: Path) -> None:
    cfg = RunConfig(
        benchmark="split-digits",
        model="mlp(hidden=(32,),dropout=0.2)",
        head="grow",
        train=TrainConfig(epochs=1),
        seed=2,
        threads=1,
    )
    ref = run(cfg, run_dir=tmp_path / "ref")
    d = tmp_path / "killed"
    proc = _start(cfg, d, pause=60.0)
    assert proc.stdout is not None
    for line in proc.stdout:  # experience 3 trains only after experience 2 was checkpointed
        if line.startswith("experience 3/5"):
            break
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert read_state_dir(d / "checkpoint")["progress"]["next_experience"] == 2
    assert not (d / "model").exists()

    resumed = _start(cfg, d, pause=0.0)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("resumed from") and "after experience 2/5" in lines[0]
    matrix = json.loads(lines[-1].removeprefix("RESULT "))
    assert matrix == ref["accuracy_matrix"]
    assert any(0 < a < 1 for r in matrix for a in r)  # a matrix worth comparing
    assert_same_weights(tmp_path / "ref", d)


@pytest.fixture(scope="module")
def done_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunConfig, Path]:
    cfg = RunConfig(**SMALL, strategy="test-nested-state", seed=0)
    d = tmp_path_factory.mktemp("done") / "run"
    run(cfg, run_dir=d)
    return cfg, d


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


@pytest.mark.parametrize(
    ("damage", "file", "match"),
    [
        (_flip, "tensors.pt", r"tensors\.pt: checksum mismatch"),
        (_truncate, "tensors.pt", r"tensors\.pt: checksum mismatch"),
        (lambda p: p.write_text('{"format": "lifelong-st'), "meta.json", r"meta\.json: not valid"),
        (
            lambda p: p.write_text(
                p.read_text().replace('"next_experience": 3', '"next_experience": 1')
            ),
            "meta.json",
            r"meta\.json: checksum mismatch",
        ),
        (lambda p: p.unlink(), "tensors.pt", r"tensors\.pt: no such file"),
    ],
)
def test_damaged_checkpoint_is_refused(
    done_run: tuple[RunConfig, Path], tmp_path: Path, damage: Any, file: str, match: str
) -> None:
    cfg, src = done_run
    d = _copy(src, tmp_path)
    damage(d / "checkpoint" / file)
    with pytest.raises(CheckpointError, match=match):
        run(cfg, run_dir=d, resume=True)
    # the run directory itself refuses it too (a resume builds fresh objects only after
    # every file was read and checked)
    rd = RunDir(d, cfg, "any", torch.device("cpu"))
    with pytest.raises(CheckpointError):
        rd.resume()


def test_checkpoint_of_another_run_is_refused(
    done_run: tuple[RunConfig, Path], tmp_path: Path
) -> None:
    cfg, src = done_run
    d = _copy(src, tmp_path)
    other = RunConfig.from_dict({**asdict(cfg), "seed": 5})
    with pytest.raises(CheckpointError, match="belongs to another run"):
        run(other, run_dir=d, resume=True)
    run(other, run_dir=d)  # resume=False starts afresh, replacing the old state
    assert read_state_dir(d / "model")["config"]["seed"] == 5


def test_kill_between_renames_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = RunConfig(**SMALL, seed=3)
    ref = run(cfg)
    real_replace, calls = os.replace, []

    def dying_replace(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 3:  # 1: first checkpoint; 2: old -> .old; 3: new -> checkpoint
            raise Stop("killed")
        real_replace(src, dst)

    monkeypatch.setattr(serialize.os, "replace", dying_replace)
    with pytest.raises(Stop):
        run(cfg, run_dir=tmp_path)
    monkeypatch.setattr(serialize.os, "replace", real_replace)
    assert not (tmp_path / "checkpoint").exists() and (tmp_path / ".checkpoint.old").exists()
    msgs: list[str] = []
    row = run(cfg, run_dir=tmp_path, resume=True, progress=msgs.append)
    assert "after experience 1/3" in msgs[0]
    assert row["accuracy_matrix"] == ref["accuracy_matrix"]


def test_killed_file_write_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = RunConfig(**SMALL, seed=4)
    real_write, calls = serialize._write_file, []

    def dying_write(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 4:  # the second checkpoint's meta.json
            path.write_bytes(data[:10])
            raise Stop("killed")
        real_write(path, data)

    monkeypatch.setattr(serialize, "_write_file", dying_write)
    with pytest.raises(Stop):
        run(cfg, run_dir=tmp_path)
    state = read_state_dir(tmp_path / "checkpoint")
    assert state["progress"]["next_experience"] == 1


def test_run_without_run_dir_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    row = run(RunConfig(**SMALL))
    assert row["status"] == "ok" and list(tmp_path.iterdir()) == []


def test_resume_without_checkpoint_starts_afresh(tmp_path: Path) -> None:
    cfg = RunConfig(**SMALL, seed=6)
    msgs: list[str] = []
    row = run(cfg, run_dir=tmp_path / "new", resume=True, progress=msgs.append)
    assert not any(m.startswith("resumed") for m in msgs)
    assert row["accuracy_matrix"] == run(cfg)["accuracy_matrix"]
    assert read_state_dir(tmp_path / "new" / "checkpoint")["progress"]["next_experience"] == 3
