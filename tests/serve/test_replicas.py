"""Two `lifelong serve` replicas on one PostgreSQL store and one version folder: a
promotion through one is served by both (within the alias poll; the delay is printed,
the load test records it), and one update runs at a time across them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import auth, make_keys, serving
from lifelong import deploy
from lifelong.learner import Learner


def _served(url: str, key: str, x: list[list[float]]) -> str:
    r = httpx.post(url + "/v1/predict", json={"rows": x, "record": False}, headers=auth(key))
    assert r.status_code == 200, r.text
    return str(r.json()["version"])


@pytest.mark.slow
def test_two_replicas_on_postgres(tmp_path: Path, run_dir: Path, data, postgres):
    url, _ = postgres
    x, y = data
    path = tmp_path / "dep"
    deploy.create(path, from_run=run_dir, db=url)
    keys = make_keys(path)
    deploy.ingest(path, x[:150], y[:150], "s")
    deploy.update(path, force=True)  # v1.1, promoted or not
    rows = x[:2].tolist()
    with serving(path) as a, serving(path) as b:
        versions = httpx.get(a.url + "/v1/versions", headers=auth(keys["predict"])).json()
        target = next(v["id"] for v in versions["versions"] if v["id"] != versions["production"])
        assert _served(a.url, keys["predict"], rows) == _served(b.url, keys["predict"], rows)
        r = httpx.post(a.url + "/v1/promote", json={"version": target}, headers=auth(keys["admin"]))
        assert r.status_code == 200
        t0 = time.monotonic()
        assert _served(a.url, keys["predict"], rows) == target  # at once on the replica asked
        while _served(b.url, keys["predict"], rows) != target and time.monotonic() - t0 < 30:
            time.sleep(0.02)
        delay = time.monotonic() - t0
        print(f"promotion through replica A served by replica B after {delay:.3f} s")
        assert _served(b.url, keys["predict"], rows) == target

        # feedback through both, then an update asked of both at once: one version more
        for i, server in enumerate((a, b)):
            r = httpx.post(server.url + "/v1/feedback", headers=auth(keys["feedback"]),
                           json={"rows": x[150 + 60 * i : 210 + 60 * i].tolist(),
                                 "labels": y[150 + 60 * i : 210 + 60 * i].tolist()})  # fmt: skip
            assert r.status_code == 200
        idle(a.url, keys["predict"])  # the checks that feedback asked for are done
        n_before = len(deploy.status(path)["versions"])
        codes: list[int] = []
        asks = [threading.Thread(target=lambda u=s.url: codes.append(
            httpx.post(u + "/v1/update", headers=auth(keys["admin"])).status_code)) for s in (a, b)]  # fmt: skip
        for t in asks:
            t.start()
        for t in asks:
            t.join()
        assert codes == [202, 202]  # a forced update waits for the lock, then runs
        idle(a.url, keys["predict"], more_than=n_before)
        after = deploy.status(path)["versions"]
        # in turn, never together: each update got its own version id and whole folder
        assert n_before < len(after) <= n_before + codes.count(202)
        for v in after:
            Learner.load(path / v["path"])


def idle(url: str, key: str, more_than: int = 0) -> None:
    """Wait until no update holds the lock (twice in a row, 1 s apart)."""
    deadline, calm = time.monotonic() + 120, 0
    while time.monotonic() < deadline and calm < 2:
        s = httpx.get(url + "/v1/status", headers=auth(key)).json()
        calm = calm + 1 if s["update_running"] is None and len(s["versions"]) > more_than else 0
        time.sleep(1)
