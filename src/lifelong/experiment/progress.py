"""Progress of a sweep on stderr: runs done/total, the current run's experience and epoch,
and the estimated time left.

On a terminal it is one line rewritten in place (`\\r`), with a permanent line per finished
run; elsewhere (a log file, CI) only the per-run lines; `quiet` shows nothing. Worker
processes report through their `run.log` (see `executors`), whose last progress line the
display reads: no queues to hang or lose, and it works the same for every executor.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from lifelong.experiment.executors import Task
from lifelong.experiment.store import LOG_FILE

_EPOCH = re.compile(r"experience (\d+)/(\d+) epoch (\d+)/(\d+)")


def last_progress(path: Path, tail: int = 4096) -> str | None:
    """The last `experience i/T epoch e/E` message in a run's log, if any."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - tail))
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    found = _EPOCH.findall(text)
    if not found:
        return None
    i, t, e, n = found[-1]
    return f"experience {i}/{t} epoch {e}/{n}"


def fraction(message: str | None) -> float:
    """How much of a run a progress message says is done (epochs end when reported)."""
    m = _EPOCH.search(message or "")
    if not m:
        return 0.0
    i, t, e, n = (int(g) for g in m.groups())
    return min(1.0, (i - 1 + e / n) / t)


def duration(seconds: float) -> str:
    """`1h02m`, `3m05s` or `12s`."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class SweepProgress:
    """The progress display of one sweep (a `Listener` helper: call it from the sweep's)."""

    def __init__(self, total: int, mode: str = "auto", stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "live" if self.stream.isatty() else "lines"
        if mode not in ("live", "lines", "quiet"):
            raise ValueError(f"unknown progress mode {mode!r}; expected live, lines or quiet")
        self.mode, self.total = mode, total
        self.done = self.failed = 0
        self.running: dict[str, Task] = {}
        self.t0 = time.monotonic()
        self._last_draw = 0.0
        self._width = 0

    def started(self, task: Task) -> None:
        """A run was handed to a worker."""
        self.running[task.key] = task

    def finished(self, task: Task, row: dict[str, Any]) -> None:
        """A run ended: count it and print its line."""
        self.running.pop(task.key, None)
        self.done += 1
        ok = row.get("status") == "ok"
        self.failed += not ok
        if self.mode == "quiet":
            return
        if ok:
            what = f"ok, accuracy {row['final_average_accuracy']:.3f}, {row['wall_seconds']:.1f} s"
        else:
            what = f"FAILED: {str(row.get('error') or '').splitlines()[0][:200]}"
        self._clear()
        eta = self.eta()
        tail = f" (ETA {duration(eta)})" if eta is not None and self.done < self.total else ""
        print(f"[{self.done}/{self.total}] {task.label}: {what}{tail}", file=self.stream)
        self.stream.flush()
        self.tick(force=True)

    def eta(self) -> float | None:
        """Seconds left, from the time so far and the fraction of work done."""
        work = self.done + sum(
            fraction(last_progress(Path(t.run_dir) / LOG_FILE)) for t in self.running.values()
        )
        if work <= 0:
            return None
        return (time.monotonic() - self.t0) * (self.total - work) / work

    def line(self) -> str:
        """The live status line."""
        parts = [f"{self.done}/{self.total} runs done"]
        if self.failed:
            parts[0] += f" ({self.failed} failed)"
        if self.running:
            task = next(iter(self.running.values()))
            msg = last_progress(Path(task.run_dir) / LOG_FILE) or "starting"
            more = f" (+{len(self.running) - 1} running)" if len(self.running) > 1 else ""
            parts.append(f"{task.label}: {msg}{more}")
        eta = self.eta()
        parts.append(f"ETA {duration(eta)}" if eta is not None else "ETA ?")
        return " | ".join(parts)

    def tick(self, force: bool = False) -> None:
        """Redraw the live line (at most 4 times a second)."""
        now = time.monotonic()
        if self.mode != "live" or (not force and now - self._last_draw < 0.25):
            return
        self._last_draw = now
        width = shutil.get_terminal_size((100, 20)).columns - 1
        text = self.line()[:width]
        self.stream.write("\r" + text + " " * max(0, self._width - len(text)))
        self.stream.flush()
        self._width = len(text)

    def _clear(self) -> None:
        if self.mode == "live" and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0

    def close(self) -> None:
        """Erase the live line."""
        self._clear()
        self.stream.flush()
