"""Fixtures of the service tests: the deployment tests' run, data and PostgreSQL server,
a deployment with keys of each scope, and real `lifelong serve` processes on free
loopback ports (stopped at the end)."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

_MISSING = [m for m in ("fastapi", "uvicorn", "httpx", "prometheus_client")
            if importlib.util.find_spec(m) is None]  # fmt: skip
if _MISSING and os.environ.get("CI") == "true":
    raise ImportError(f"the serve extra is missing {_MISSING} (CI=true)")
if _MISSING:  # outside CI, without the serve extra: these tests are not collected
    collect_ignore_glob = ["test_*.py"]

_spec = importlib.util.spec_from_file_location(
    "lifelong_deploy_fixtures", Path(__file__).parents[1] / "deploy" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_deploy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_deploy)
run_dir, data, postgres = _deploy.run_dir, _deploy.data, _deploy.postgres


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A `lifelong serve DIR` process on a free port of 127.0.0.1."""

    def __init__(self, path: Path, *args: str, port: int | None = None) -> None:
        self.path, self.args = path, list(args)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> Server:
        import httpx

        cmd = [sys.executable, "-m", "lifelong.serve", str(self.path),
               "--port", str(self.port), *self.args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lifelong serve exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"lifelong serve did not answer on {self.url} in {timeout} s")

    def kill(self) -> None:
        """`kill -9` of the server and its process group (its updater included)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # an updater left behind
            except ProcessLookupError:
                pass


@contextmanager
def serving(path: Path, *args: str) -> Iterator[Server]:
    server = Server(path, *args).start()
    try:
        yield server
    finally:
        server.stop()


def make_keys(path: Path) -> dict[str, str]:
    """One key per scope, named after it."""
    from lifelong.deploy.deployment import Deployment
    from lifelong.serve.keys import SCOPES, create_key

    with Deployment(path) as dep:
        return {scope: create_key(dep.engine, scope, f"test-{scope}")[0] for scope in SCOPES}


@pytest.fixture
def deployment(tmp_path: Path, run_dir: Path) -> tuple[Path, dict[str, str]]:
    """A deployment of the run (v1.0 in production) and a key of each scope."""
    from lifelong import deploy

    path = tmp_path / "dep"
    deploy.create(path, from_run=run_dir)
    return path, make_keys(path)


def auth(key: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {key}"}
