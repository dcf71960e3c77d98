"""Executors: where a sweep's runs execute.

* `LocalExecutor`: worker processes on this machine, a fresh (spawned) process per run so
  that each run's `peak_memory_mb` is its own and a crash or out-of-memory kill loses only
  that run; `workers` runs at once.
* `RayExecutor`: a Ray cluster (`address`), or a local one it starts itself
  (`ray.init(num_cpus=workers * threads)`, real worker processes); each run is a remote
  task with `num_cpus=threads` and `max_calls=1`, so it too gets a fresh worker process.

Both report to a `Listener`: `started(task)`, `finished(task, row)` (in this process, as each
run ends) and `tick()` about twice a second. A run writes its progress and errors to
`run_dir/run.log` (its stdout and stderr go there too), which the progress display tails.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Protocol

from lifelong.experiment.run import RunConfig, run
from lifelong.experiment.store import LOG_FILE, append_log, read_row, write_row
from lifelong.metrics import ROW_FIGURES

Log = Callable[[str], None]
TICK_SECONDS = 0.5


@dataclass(frozen=True)
class Task:
    """One run to execute: its store key, config, folder, label, whether to resume it
    from the checkpoint an interrupted attempt left in `run_dir`, and whether the run saves
    its checkpoints and trained model there (`keep_files`; its log is always written).
    `cwd` is the folder the sweep was started in: a worker runs there, so relative data
    paths and a user's model module (`--model mypkg.nets:make`) are found as by the caller."""

    key: str
    config: RunConfig
    run_dir: str
    label: str = ""
    resume: bool = False
    keep_files: bool = True
    cwd: str = field(default_factory=os.getcwd)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep; the message says what was saved and how to resume (the
    command line prints it, once)."""


class Listener(Protocol):
    """What an executor reports to (the sweep: it saves rows and shows progress)."""

    def started(self, task: Task) -> None:
        """`task` was handed to a worker."""

    def finished(self, task: Task, row: dict[str, Any]) -> None:
        """`task` ended with results row `row` (`status` ok or failed)."""

    def tick(self) -> None:
        """Called regularly while runs execute."""


class Executor(Protocol):
    """Runs tasks and reports each one's row to the listener as it finishes."""

    def run(self, tasks: Sequence[Task], listener: Listener) -> None:
        """Run every task; on KeyboardInterrupt stop the runs still going and re-raise."""


def failed_row(config: RunConfig, error: str) -> dict[str, Any]:
    """A results row for a run that did not complete; its `params` are the config with the
    training settings at the top level, as in a finished run's row."""
    params = {k: v for k, v in asdict(config).items() if k != "train"}
    return {
        "run_id": None,
        "benchmark": config.benchmark,
        "scenario": config.scenario,
        "strategy": config.strategy,
        "params": {**params, **config.train.to_dict()},
        "seed": config.seed,
        "status": "failed",
        "error": error,
        "n_experiences": None,
        "accuracy_matrix": None,
        **dict.fromkeys(ROW_FIGURES),
    }


def run_safely(
    config: RunConfig,
    label: str = "",
    log: Log | None = None,
    run_dir: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """`run(config)`, turning any exception into a `status: "failed"` row.

    `run_dir`/`resume` go to `run()` where it takes them (checkpoints, the saved model)."""

    name = f"{label} {config.strategy} seed={config.seed}".strip()

    def progress(msg: str) -> None:
        if log:
            log(f"{name}: {msg}")

    params = inspect.signature(run).parameters
    extra: dict[str, Any] = {}
    if run_dir is not None and "run_dir" in params:
        extra["run_dir"] = run_dir
        if "resume" in params:
            extra["resume"] = resume
    try:
        row = run(config, progress=progress, **extra)
        for k in [k for k in row if k.startswith("_")]:
            row.pop(k)
        progress(f"done, final accuracy {row['final_average_accuracy']:.3f}")
        return row
    except Exception as e:  # noqa: BLE001 - one failing run must not lose the others
        tb = traceback.format_exc(limit=8)
        progress(f"FAILED: {type(e).__name__}: {e}\n{tb}")
        return failed_row(config, f"{type(e).__name__}: {e}\n{tb}")


@contextlib.contextmanager
def _redirected(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def execute(task: Task, redirect: bool = False) -> dict[str, Any]:
    """Run one task in this process, logging to `run_dir/run.log`; return its row."""
    d = Path(task.run_dir)
    d.mkdir(parents=True, exist_ok=True)
    append_log(d, f"started {task.label} (pid {os.getpid()})")
    ctx = _redirected(d / LOG_FILE) if redirect else contextlib.nullcontext()
    with ctx:
        return run_safely(
            task.config,
            log=lambda msg: append_log(d, msg),
            run_dir=task.run_dir if task.keep_files else None,
            resume=task.resume,
        )


def _child(task: Task) -> None:
    """Body of a local worker process: run the task and save its row in its folder."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    write_row(task.run_dir, execute(task, redirect=True))


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        hint = " (killed: out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker process was killed by signal {name}{hint}"
    return f"worker process exited with code {code} without a result"


class LocalExecutor:
    """`workers` spawned processes at once on this machine, a fresh one per run."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers

    def run(self, tasks: Sequence[Task], listener: Listener) -> None:
        """Run every task; see `Executor.run`."""
        ctx = get_context("spawn")
        pending = list(tasks)
        running: dict[int, tuple[Any, Task]] = {}
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    task = pending.pop(0)
                    proc = ctx.Process(target=_child, args=(task,), daemon=True)
                    proc.start()
                    running[proc.sentinel] = (proc, task)
                    listener.started(task)
                for sentinel in wait(list(running), timeout=TICK_SECONDS):
                    proc, task = running.pop(sentinel)  # type: ignore[arg-type]
                    proc.join()
                    row = read_row(task.run_dir)
                    if row is None:
                        row = failed_row(task.config, _exit_text(proc.exitcode))
                        append_log(task.run_dir, f"FAILED: {row['error']}")
                    listener.finished(task, row)
                listener.tick()
        finally:
            for proc, _ in running.values():
                proc.terminate()
            for proc, _ in running.values():
                proc.join(5)
                if proc.is_alive():
                    proc.kill()


def _ray_task(task: Task) -> dict[str, Any]:
    """Body of a Ray task (a fresh worker process, `max_calls=1`), run in the caller's
    folder where this machine has it (a cluster started elsewhere may start workers in
    another one)."""
    if os.path.isdir(task.cwd):
        os.chdir(task.cwd)
    return execute(task, redirect=True)


class RayExecutor:
    """Runs on a Ray cluster: at `address`, or a local one started with `workers * threads`
    CPUs. At most `workers` runs are in flight; each asks for `threads` CPUs."""

    def __init__(self, workers: int, threads: int, address: str | None = None) -> None:
        if workers < 1 or threads < 1:
            raise ValueError(f"workers and threads must be >= 1, got {workers}, {threads}")
        self.workers, self.threads, self.address = workers, threads, address

    def run(self, tasks: Sequence[Task], listener: Listener) -> None:
        """Run every task; see `Executor.run`. Shuts down a Ray it started itself."""
        import ray

        started_here = False
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=self.workers * self.threads,
                    log_to_driver=False,
                    include_dashboard=False,
                )
            started_here = True
        remote = ray.remote(num_cpus=self.threads, max_calls=1, max_retries=0)(_ray_task)
        pending, refs = list(tasks), dict[Any, Task]()
        try:
            while pending or refs:
                while pending and len(refs) < self.workers:
                    task = pending.pop(0)
                    refs[remote.remote(task)] = task
                    listener.started(task)
                ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=TICK_SECONDS)
                for ref in ready:
                    task = refs.pop(ref)
                    try:
                        row = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - a crashed worker
                        row = failed_row(task.config, f"Ray task failed: {type(e).__name__}: {e}")
                    write_row(task.run_dir, row)
                    listener.finished(task, row)
                listener.tick()
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()


def parallelism(
    n_runs: int, workers: int | None, threads: int | None, cores: int | None = None
) -> tuple[int, int]:
    """`(workers, threads per run)`: by default one worker per core (at most one per run)
    and `cores // workers` torch threads each, so runs never oversubscribe the cores."""
    cores = cores or os.cpu_count() or 1
    if workers is None:
        workers = max(1, min(n_runs, cores // (threads or 1)))
    return workers, threads or max(1, cores // workers)


def make_executor(
    name: str, workers: int, threads: int, address: str | None = None
) -> LocalExecutor | RayExecutor:
    """The executor called `name` (`local` or `ray`)."""
    if name == "local":
        if address:
            raise ValueError(f"address {address!r} is for the ray executor, not local")
        return LocalExecutor(workers)
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ValueError("the ray executor needs Ray: pip install 'lifelong[ray]'") from None
        return RayExecutor(workers, threads, address)
    raise ValueError(f"unknown executor {name!r}; expected local or ray")
