"""Updates outside the request path. Each server process keeps one updater process
(`python -m lifelong.serve.updater DIR`, at a lower CPU priority) and writes a line to
its standard input to ask for a policy check (`check`) or a forced update (`force`);
the updater runs the deployment's `update`, which takes the deployment's database lock,
so one update runs at a time across all replicas (the others skip). When the server
dies, the updater's standard input closes and it ends after its current update.

The server asks for a check at most every `check_every` seconds while predictions or
feedback arrive (input drift and feedback volume are what the policy decides on), and
every `idle_every` seconds regardless (schedules and staleness)."""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("lifelong.serve")


class Updater:
    """The server's side: spawns, feeds and replaces the updater process."""

    def __init__(
        self, path: Path, check_every: float = 10.0, idle_every: float = 60.0, enabled: bool = True
    ) -> None:
        self.path, self.check_every, self.idle_every = path, check_every, idle_every
        self.enabled = enabled
        self.proc: subprocess.Popen[bytes] | None = None
        self.requests = 0
        self._lock = threading.Lock()
        self._dirty = False
        self._last = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None or self.proc.poll() is not None else self.proc.pid

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "lifelong.serve.updater", str(self.path)]
        return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)

    def send(self, command: str) -> int:
        """Ask the updater (started or restarted if needed) to `check` or `force`; its pid."""
        if not self.enabled:
            raise RuntimeError("this server runs no updater (lifelong serve --no-updater)")
        with self._lock:
            for _ in range(2):
                if self.proc is None or self.proc.poll() is not None:
                    self.proc = self._spawn()
                stdin: IO[bytes] | None = self.proc.stdin
                try:
                    assert stdin is not None
                    stdin.write(f"{command}\n".encode())
                    stdin.flush()
                    break
                except (BrokenPipeError, OSError):  # it died since: start another
                    self.proc = None
            self.requests += 1
            self._last, self._dirty = time.monotonic(), False
            return self.proc.pid if self.proc is not None else -1

    def activity(self) -> None:
        """Data arrived: a policy check is due within `check_every` seconds."""
        self._dirty = self.enabled

    def _loop(self) -> None:
        while not self._stop.wait(min(0.5, self.check_every)):
            since = time.monotonic() - self._last
            if (self._dirty and since >= self.check_every) or since >= self.idle_every:
                try:
                    self.send("check")
                except OSError as e:
                    log.warning("could not start the updater: %s", e)

    def start(self) -> None:
        if not self.enabled:
            return
        self.send("check")  # starts the process now, not during the first request
        self._thread = threading.Thread(target=self._loop, name="lifelong-updater", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # it ends after the update it is running
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # an update killed midway leaves no half-written version
            proc.wait()


def run_one(path: str, command: str, wait_s: float = 600.0) -> dict[str, Any] | None:
    """One `update` of the deployment at `path`; None when there was nothing to do. A
    policy check that finds the lock taken is skipped (another process is checking or
    updating); a forced update waits for the lock, up to `wait_s` seconds."""
    from lifelong import deploy

    deadline = time.monotonic() + wait_s
    while True:
        try:
            out: dict[str, Any] = deploy.update(path, force=command == "force")
            return out
        except deploy.UpdateRunning:
            if command != "force" or time.monotonic() > deadline:
                return None
            time.sleep(0.5)
        except deploy.DeployError as e:
            print(f"lifelong updater: {e}", file=sys.stderr, flush=True)
            return None


def _next_command() -> str | None:
    """Wait for a line on standard input, then take all the lines already waiting: one
    `force` among them makes a forced update, else one policy check (checks queued
    during a long update coalesce). None at end of input (the server is gone)."""
    got = b""
    while b"\n" not in got or select.select([0], [], [], 0)[0]:
        chunk = os.read(0, 65536)
        if not chunk:
            return None
        got += chunk
    lines = {line.strip() for line in got.split(b"\n")}
    return "force" if b"force" in lines else "check"


def main(argv: list[str] | None = None) -> int:
    """The updater process: one `check`/`force` per line of standard input."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lifelong.serve.updater DIR", file=sys.stderr)
        return 2
    try:
        os.nice(10)  # serving comes first
    except OSError:
        pass
    import torch

    torch.set_num_threads(1)
    while (command := _next_command()) is not None:
        try:
            out = run_one(args[0], command)
        except Exception as e:  # report it; the next check tries again
            print(f"lifelong updater: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        if out is not None and out.get("version"):
            print(f"lifelong updater: {json.dumps(out, default=str)}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
