"""Run a sweep of runs into a result store, resumably; the comparison table.

`run_sweep(experiment)` runs every run of an `ExperimentConfig` grid that the output folder
does not already hold (a run is keyed by a hash of its config, computed before it runs;
failed runs are rerun), on the local or the Ray executor, saving each row the moment its
run finishes, so Ctrl-C or a crash keeps every finished run and rerunning the same command
picks up where it stopped. After each run it calls the trackers' `log_run`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TextIO

from lifelong.experiment.config import ExperimentConfig
from lifelong.experiment.executors import (
    Executor,
    Interrupted,
    LocalExecutor,
    Task,
    execute,
    failed_row,
    make_executor,
    parallelism,
    run_safely,
)
from lifelong.experiment.progress import SweepProgress
from lifelong.experiment.run import RunConfig
from lifelong.experiment.store import ResultStore, run_key, write_json, write_results
from lifelong.experiment.table import summary_table

SCHEMA_VERSION = 1
__all__ = [
    "SweepResult",
    "failed_row",
    "provenance",
    "run_all",
    "run_safely",
    "run_sweep",
    "summary_table",
    "write_results",
]


class RunLogger(Protocol):
    """What the sweep needs of a tracker (`lifelong.track.Tracker`)."""

    def log_run(self, row: dict[str, Any], header: dict[str, Any], run_dir: str | None) -> None:
        """Log one finished run."""

    def close(self) -> None:
        """Flush and release."""


def label(config: RunConfig, benchmarks: int = 1) -> str:
    """A run's name in progress lines: `strategy seed=N` (plus benchmark/scenario if many)."""
    text = f"{config.strategy} seed={config.seed}"
    return f"{config.benchmark}/{config.scenario} {text}" if benchmarks > 1 else text


class _Collector:
    """Listener of `run_all`: keeps the rows, shows progress."""

    def __init__(self, progress: SweepProgress) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.progress = progress

    def started(self, task: Task) -> None:
        self.progress.started(task)

    def finished(self, task: Task, row: dict[str, Any]) -> None:
        self.rows[task.key] = row
        self.progress.finished(task, row)

    def tick(self) -> None:
        self.progress.tick()


def run_all(
    configs: Sequence[RunConfig], workers: int = 1, isolate: bool = True, quiet: bool = False
) -> list[dict[str, Any]]:
    """Run every config (no store, nothing kept on disk); rows come back in order.

    With `isolate=True` each run gets a fresh worker process, so `peak_memory_mb` is that
    run's own peak; `workers` runs go at once."""
    progress = SweepProgress(len(configs), "quiet" if quiet else "auto")
    with tempfile.TemporaryDirectory(prefix="lifelong-") as tmp:
        tasks = [
            Task(f"{i:05d}", c, str(Path(tmp, f"{i:05d}")), label(c), keep_files=False)
            for i, c in enumerate(configs)
        ]
        if not isolate:
            rows = []
            for t in tasks:
                rows.append(execute(t))
                progress.finished(t, rows[-1])
            return rows
        collector = _Collector(progress)
        try:
            LocalExecutor(workers).run(tasks, collector)
        finally:
            progress.close()
        return [collector.rows[t.key] for t in tasks]


@dataclass
class SweepResult:
    """What a sweep left: rows in grid order (finished ones), their keys, how many were
    already done before, and where results.json is."""

    rows: list[dict[str, Any]]
    keys: list[str]
    skipped: int
    ran: int
    results: Path


@contextmanager
def _ctrl_c_remembered(recorder: _Recorder) -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as usual and is also remembered, so that one Python
    swallowed (raised inside a weakref callback or a `__del__`, where it is only printed)
    still stops the sweep at the recorder's next call. Main thread only, and only while
    Python's default handler is in place."""
    default = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if threading.current_thread() is not threading.main_thread() or not default:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        recorder.interrupted = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Recorder:
    """Listener of `run_sweep`: saves each row, rewrites results.json, logs to trackers."""

    def __init__(
        self,
        store: ResultStore,
        keys: list[str],
        header: dict[str, Any],
        trackers: Sequence[RunLogger],
        progress: SweepProgress,
    ) -> None:
        self.store, self.keys, self.header = store, keys, header
        self.trackers, self.progress = trackers, progress
        self.rows: dict[str, dict[str, Any]] = {}
        self.interrupted = False  # Ctrl-C came (`_ctrl_c_remembered`)

    def _stop_if_interrupted(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    def started(self, task: Task) -> None:
        self._stop_if_interrupted()
        self.progress.started(task)

    def finished(self, task: Task, row: dict[str, Any]) -> None:
        self.store.save(task.key, row)
        self.rows[task.key] = row
        self.write()
        for tracker in self.trackers:
            try:
                tracker.log_run(row, self.header, task.run_dir)
            except Exception as e:  # noqa: BLE001 - a tracker outage must not stop the sweep
                print(f"warning: tracker {tracker!r} failed: {e}", file=sys.stderr)
        self.progress.finished(task, row)
        self._stop_if_interrupted()

    def tick(self) -> None:
        self._stop_if_interrupted()
        self.progress.tick()

    def ordered(self) -> tuple[list[dict[str, Any]], list[str]]:
        keys = [k for k in self.keys if k in self.rows]
        return [self.rows[k] for k in keys], keys

    def write(self, tables: bool = False) -> Path:
        rows, keys = self.ordered()
        path = self.store.write_results(rows, self.header)
        if tables:
            self.store.write_tables(rows, keys)
        return path


def open_trackers(spec: dict[str, dict[str, Any]]) -> list[RunLogger]:
    """Create the trackers an experiment names (`{name: options}`)."""
    if not spec:
        return []
    from lifelong.track import get_tracker

    return [get_tracker(name, **options) for name, options in spec.items()]


def check_data_sources(configs: Sequence[RunConfig]) -> None:
    """Build each distinct user data source (`data:`) once before any run starts, so a bad
    file, column or value fails the command at once (a `ValueError` naming it) instead of
    every run, and a disk cache is written once rather than by several workers at a time."""
    from lifelong.experiment.run import make_stream

    checked: set[str] = set()
    for c in configs:
        key = json.dumps([c.data, c.scenario], sort_keys=True, default=str)
        if c.data is None or key in checked:
            continue
        checked.add(key)
        make_stream(c)


def run_sweep(
    experiment: ExperimentConfig,
    config_path: str | None = None,
    trackers: Sequence[RunLogger] | None = None,
    executor: Executor | None = None,
    stream: TextIO | None = None,
) -> SweepResult:
    """Run the experiment's grid into its output folder, skipping runs already done there.

    `trackers` replaces the experiment's own (`tracker:`); `executor` its `executor:`."""
    configs = list({run_key(c): c for c in experiment.run_configs()}.items())
    store = ResultStore(experiment.default_out(config_path))
    done = {k: r for k, _ in configs if (r := store.done(k)) is not None}
    todo = [(k, c) for k, c in configs if k not in done]
    check_data_sources([c for _, c in todo])
    workers, threads = parallelism(len(todo), experiment.workers, experiment.threads)
    header = provenance(experiment.device, threads)
    n_bench = len(experiment.benchmark) * len(experiment.scenario or (1,))
    tasks = [
        Task(k, replace(c, threads=threads), str(store.run_dir(k)), label(c, n_bench))
        for k, c in todo
    ]
    # an interrupted run (no row saved) resumes from its checkpoint; a failed one restarts
    tasks = [replace(t, resume=store.row(t.key) is None) for t in tasks]
    if executor is None:
        executor = make_executor(experiment.executor, workers, threads, experiment.address)
    trackers = open_trackers(experiment.tracker) if trackers is None else trackers
    err = stream or sys.stderr
    progress = SweepProgress(len(tasks), "quiet" if experiment.quiet else "auto", err)
    recorder = _Recorder(store, [k for k, _ in configs], header, trackers, progress)
    recorder.rows.update(done)
    write_json(store.root / "experiment.json", experiment.to_dict())
    if not experiment.quiet:
        print(
            f"lifelong: {len(configs)} runs in {store.root}: {len(done)} already done, "
            f"{len(tasks)} to run on {experiment.executor} "
            f"({workers} worker(s) x {threads} thread(s))",
            file=err,
        )
    for t in tasks:
        store.prepare(t.key, t.config)
    try:
        with _ctrl_c_remembered(recorder):
            executor.run(tasks, recorder)
        recorder._stop_if_interrupted()
    except KeyboardInterrupt:
        progress.close()
        raise Interrupted(
            f"interrupted: {len(recorder.rows)} of {len(configs)} runs saved in {store.root}; "
            "run the same command again to resume"
        ) from None
    finally:
        progress.close()
        for t in tasks:  # rows a worker saved as the sweep was being stopped
            if t.key not in recorder.rows and (row := store.row(t.key)) is not None:
                recorder.rows[t.key] = row
        path = recorder.write(tables=True)
        for tracker in trackers:
            tracker.close()
    rows, keys = recorder.ordered()
    return SweepResult(rows, keys, len(done), len(tasks), path)


def git_commit() -> str | None:
    """The git commit of the lifelong source tree, where it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(device: str, threads: int | None) -> dict[str, Any]:
    """The top-level fields of `results.json`."""
    import torch

    import lifelong
    from lifelong.learner import resolve_device

    try:
        dev = str(resolve_device(device))
    except ValueError:
        dev = device
    return {
        "schema_version": SCHEMA_VERSION,
        "lifelong_version": lifelong.__version__,
        "torch_version": torch.__version__,
        "device": dev,
        "threads": threads or torch.get_num_threads(),
        "git_commit": git_commit(),
    }
