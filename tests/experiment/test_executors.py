"""Executors and sweeps: resumable runs, failures, Ctrl-C, trackers, Ray, progress."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lifelong.config import TrainConfig
from lifelong.experiment.compare import run_all, run_sweep, summary_table
from lifelong.experiment.config import ExperimentConfig
from lifelong.experiment.executors import (
    LocalExecutor,
    RayExecutor,
    Task,
    _exit_text,
    parallelism,
)
from lifelong.experiment.progress import SweepProgress, fraction, last_progress
from lifelong.experiment.run import RunConfig

RUN_KEYS = {
    "run_id", "benchmark", "scenario", "strategy", "params", "seed", "status", "error",
    "n_experiences", "accuracy_matrix", "final_average_accuracy", "average_forgetting",
    "backward_transfer", "forward_transfer", "train_seconds", "eval_seconds",
    "wall_seconds", "peak_memory_mb",
}  # fmt: skip


def experiment(tmp_path: Path, **kw) -> ExperimentConfig:
    base = dict(benchmark=("synthetic",), strategies=("naive", "cumulative"), seeds=(0,),
                train=TrainConfig(epochs=1), workers=2, threads=1, out=str(tmp_path / "out"),
                quiet=True)  # fmt: skip
    return ExperimentConfig(**{**base, **kw})


class FakeTracker:
    """A test double of `lifelong.track.Tracker`: records what it is given."""

    def __init__(self, interrupt: bool = False) -> None:
        self.logged: list[tuple[dict, dict, str | None]] = []
        self.closed = False
        self.interrupt = interrupt

    def log_run(self, row, header, run_dir=None):
        self.logged.append((row, header, run_dir))
        if self.interrupt:
            raise KeyboardInterrupt

    def close(self):
        self.closed = True


def results(tmp_path: Path) -> list[dict]:
    return json.loads((tmp_path / "out" / "results.json").read_text())["runs"]


def test_sweep_saves_every_run_and_a_rerun_skips_them(tmp_path):
    tracker = FakeTracker()
    first = run_sweep(experiment(tmp_path), trackers=[tracker])
    assert (first.ran, first.skipped) == (2, 0) and tracker.closed
    runs = results(tmp_path)
    assert [r["strategy"] for r in runs] == ["naive", "cumulative"]
    assert all(set(r) == RUN_KEYS and r["status"] == "ok" for r in runs)
    # the tracker saw each finished run with the provenance and the run's folder
    assert sorted(row["strategy"] for row, _, _ in tracker.logged) == ["cumulative", "naive"]
    for _, header, run_dir in tracker.logged:
        assert header["schema_version"] == 1 and Path(run_dir).name in first.keys
        log = (Path(run_dir) / "run.log").read_text()
        assert "experience 3/3 epoch 1/1" in log and "done, final accuracy" in log
        assert (Path(run_dir) / "row.json").is_file()
    again = FakeTracker()
    second = run_sweep(experiment(tmp_path), trackers=[again])
    assert (second.ran, second.skipped) == (0, 2) and again.logged == []
    assert results(tmp_path) == runs
    assert "naive" in summary_table(second.rows)


def test_a_failed_run_keeps_its_row_and_is_rerun(tmp_path):
    # packnet serves the task scenario only: that run fails, the other one is kept
    exp = experiment(tmp_path, strategies=("naive", "packnet"))
    first = run_sweep(exp, trackers=[])
    runs = results(tmp_path)
    assert [r["status"] for r in runs] == ["ok", "failed"]
    assert "serves the task scenario" in runs[1]["error"]
    log = (tmp_path / "out" / "runs" / first.keys[1] / "run.log").read_text()
    assert "FAILED" in log and "Traceback" in log
    second = run_sweep(exp, trackers=[])
    assert (second.ran, second.skipped) == (1, 1)
    assert len(results(tmp_path)) == 2


def test_interrupted_sweep_keeps_finished_runs_and_resumes(tmp_path):
    exp = experiment(tmp_path, strategies=("naive",), seeds=(0, 1, 2))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(exp, trackers=[FakeTracker(interrupt=True)])  # "Ctrl-C" after one run
    saved = results(tmp_path)  # the first run, and the second if it ended meanwhile
    assert 1 <= len(saved) <= 2 and all(r["status"] == "ok" for r in saved)
    assert (tmp_path / "out" / "results.csv").is_file()
    rerun = run_sweep(exp, trackers=[])
    assert (rerun.ran, rerun.skipped) == (3 - len(saved), len(saved))
    assert sorted(r["seed"] for r in results(tmp_path)) == [0, 1, 2]


@pytest.mark.slow
def test_sigint_leaves_finished_runs_saved(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lifelong.cli", "compare", "--benchmark", "synthetic",
           "--strategies", "naive,cumulative", "--seeds", "0,1,2", "--epochs", "1",
           "--workers", "1", "--threads", "1", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "results.json").is_file():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert 1 <= len(runs) < 6 and all(r["status"] == "ok" for r in runs)


@pytest.mark.slow
def test_ray_executor_gives_the_same_results_as_local(tmp_path):
    pytest.importorskip("ray")
    exp = experiment(tmp_path)
    local = run_sweep(replace(exp, out=str(tmp_path / "local")), trackers=[],
                      executor=LocalExecutor(2))  # fmt: skip
    ray = run_sweep(replace(exp, out=str(tmp_path / "ray"), executor="ray"), trackers=[])
    assert ray.keys == local.keys
    for a, b in zip(ray.rows, local.rows):
        assert a["status"] == b["status"] == "ok"
        assert a["run_id"] == b["run_id"]
        assert a["accuracy_matrix"] == b["accuracy_matrix"]
    log = (tmp_path / "ray" / "runs" / ray.keys[0] / "run.log").read_text()
    assert "experience 3/3" in log


USER_MODEL = """
from torch import nn


def make(input_shape, n_classes, width=16):
    net = nn.Module()
    net.backbone = nn.Sequential(nn.Flatten(), nn.LazyLinear(width), nn.ReLU())
    net.feature_size = width
    net.head = nn.Linear(width, n_classes)
    net.forward = lambda x: net.head(net.backbone(x))
    return net
"""


@pytest.mark.slow
def test_ray_workers_import_a_model_module_from_the_current_folder(tmp_path, monkeypatch):
    """A user's `MODULE:FACTORY` beside them (not installed, no PYTHONPATH) in Ray's worker
    processes, which do not start in the driver's folder by themselves."""
    pytest.importorskip("ray")
    (tmp_path / "usernets").mkdir()
    (tmp_path / "usernets" / "__init__.py").write_text("")
    (tmp_path / "usernets" / "tiny.py").write_text(USER_MODEL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    exp = experiment(tmp_path, model="usernets.tiny:make(width=8)", strategies=("naive",))
    ray = run_sweep(replace(exp, out=str(tmp_path / "ray"), executor="ray"), trackers=[])
    assert [r["status"] for r in ray.rows] == ["ok"], ray.rows[0].get("error")
    assert ray.rows[0]["params"]["model"] == "usernets.tiny:make(width=8)"


def test_ray_executor_validates_its_sizes():
    with pytest.raises(ValueError, match="must be >= 1"):
        RayExecutor(0, 1)


def test_parallelism_defaults_do_not_oversubscribe():
    assert parallelism(10, None, None, cores=8) == (8, 1)
    assert parallelism(2, None, None, cores=8) == (2, 4)
    assert parallelism(10, 4, None, cores=8) == (4, 2)
    assert parallelism(10, None, 2, cores=8) == (4, 2)
    assert parallelism(0, None, None, cores=1) == (1, 1)


def test_exit_codes_are_explained():
    assert "SIGKILL" in _exit_text(-9) and "out of memory" in _exit_text(-9)
    assert "exited with code 3" in _exit_text(3)


def test_progress_reads_the_run_logs(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("x started\nx naive seed=0: experience 2/4 epoch 1/2\n")
    assert last_progress(log) == "experience 2/4 epoch 1/2"
    assert fraction(last_progress(log)) == pytest.approx(1.5 / 4)
    assert last_progress(tmp_path / "none.log") is None and fraction(None) == 0.0
    task = Task("k", RunConfig(), str(tmp_path), "naive seed=0")
    lines = io.StringIO()
    p = SweepProgress(2, "lines", lines)
    p.started(task)
    p.tick()
    p.finished(task, {"status": "ok", "final_average_accuracy": 0.5, "wall_seconds": 2.0})
    assert lines.getvalue().startswith("[1/2] naive seed=0: ok, accuracy 0.500, 2.0 s (ETA")
    live = io.StringIO()
    p = SweepProgress(2, "live", live)
    p.started(task)
    p.tick()
    assert live.getvalue().startswith("\r0/2 runs done | naive seed=0: experience 2/4 epoch 1/2")
    assert "ETA" in live.getvalue()
    p.close()
    quiet = io.StringIO()
    q = SweepProgress(1, "quiet", quiet)
    q.finished(task, {"status": "failed", "error": "boom"})
    assert quiet.getvalue() == "" and q.failed == 1


def test_run_all_returns_rows_in_order_and_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    configs = [
        RunConfig(benchmark="synthetic", strategy=s, train=TrainConfig(epochs=1))
        for s in ("cumulative", "naive")
    ]
    rows = run_all(configs, isolate=False, quiet=True)
    assert [r["strategy"] for r in rows] == ["cumulative", "naive"]
    assert all(r["status"] == "ok" and not any(k.startswith("_") for k in r) for r in rows)
    assert not list(tmp_path.glob("lifelong-*"))  # its temporary folder is gone
