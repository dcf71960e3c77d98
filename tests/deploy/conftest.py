"""Fixtures of the deployment tests: a small saved run, its data, a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PG_BIN = Path(os.environ.get("LIFELONG_PG_BIN", "/usr/lib/postgresql/15/bin"))


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `lifelong.experiment.run` run on the synthetic benchmark (naive, a small MLP)."""
    from lifelong.config import TrainConfig
    from lifelong.experiment.run import RunConfig, run

    out = tmp_path_factory.mktemp("run") / "run"
    cfg = RunConfig(
        benchmark="synthetic",
        strategy="naive",
        model="mlp(hidden=(16,))",
        train=TrainConfig(epochs=1, batch_size=16, lr=0.05, momentum=0.9),
    )
    run(cfg, run_dir=out)
    return out


@pytest.fixture(scope="session")
def data() -> tuple[np.ndarray, np.ndarray]:
    """The synthetic benchmark's training data, shuffled: (x float32 (360, 16), y)."""
    from lifelong.data.benchmarks import synthetic_data

    tr, _ = synthetic_data()
    order = np.random.default_rng(0).permutation(len(tr.y))
    return tr.x.numpy()[order], tr.y.numpy()[order]


def files_holding(roots: list[Path], needles: list[bytes]) -> list[str]:
    """The files under `roots` whose raw bytes contain any of `needles`."""
    hits = []
    for root in roots:
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            blob = f.read_bytes()
            hits += [f"{f}" for n in needles if n in blob][:1]
    return hits


@pytest.fixture(scope="session")
def holding() -> Callable[[list[Path], list[bytes]], list[str]]:
    """`files_holding`, for the raw-bytes searches."""
    return files_holding


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres() -> Iterator[tuple[str, Path]]:
    """(URL, data folder) of a PostgreSQL server started for the tests on 127.0.0.1."""
    if not (PG_BIN / "initdb").exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL binaries not found in {PG_BIN} (CI=true)")
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
    pytest.importorskip("psycopg")
    root = Path(tempfile.mkdtemp(prefix="lifelong-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port, data_dir = _free_port(), root / "data"
    subprocess.run(
        [*as_user, str(PG_BIN / "initdb"), "-D", str(data_dir), "-A", "trust", "-U", "postgres",
         "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True,
    )  # fmt: skip
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = [*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data_dir)]
    subprocess.run(
        [*ctl, "-o", opts, "-l", str(root / "log"), "-w", "start"], check=True, capture_output=True
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", data_dir
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


class Database:
    """A fresh database on the test server: its URL, the folder PostgreSQL keeps its files
    in (what a raw-bytes search must look through), and `checkpoint()`, which flushes
    the server's buffers to those files. (A plain class: other test folders load this
    module from its file, outside `sys.modules`, where `dataclass` fails.)"""

    def __init__(self, url: str, files: Path, admin: Any) -> None:
        self.url, self.files, self.admin = url, files, admin

    def checkpoint(self) -> None:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            conn.execute(text("CHECKPOINT"))


@pytest.fixture
def pg_database(postgres: tuple[str, Path]) -> Iterator[Database]:
    """A new database of its own on the session's PostgreSQL server."""
    from sqlalchemy import create_engine, text

    from lifelong.deploy.store import normalize_url

    url, data_dir = postgres
    admin = create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
    name = f"dep_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
        oid = conn.execute(text(f"SELECT oid FROM pg_database WHERE datname = '{name}'")).scalar()
    try:
        yield Database(url.rsplit("/", 1)[0] + "/" + name, data_dir / "base" / str(oid), admin)
    finally:
        admin.dispose()
