"""`kill -9` of the server (and of its updater mid-update) under load, repeatedly: every
acknowledged feedback row is in the store afterwards, no version is half-written, and
the restarted service answers with the last promoted version."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from conftest import Server, auth, make_keys, serving
from lifelong import deploy
from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment
from lifelong.learner import Learner


def _load(
    url: str, key: str, x: np.ndarray, tag: str, acked: list[str], stop: threading.Event
) -> None:
    """Feedback of 4 rows per request, each under its own subject id; predictions between."""
    i = 0
    with httpx.Client(base_url=url, headers=auth(key), timeout=10) as c:
        while not stop.is_set():
            i += 1
            rows = x[(i * 4) % 300 : (i * 4) % 300 + 4]
            subject = f"{tag}-{i}"
            try:
                r = c.post(
                    "/v1/feedback",
                    json={"rows": rows.tolist(), "labels": [0, 1, 2, 3], "subject": subject},
                )
                if r.status_code == 200:
                    acked.append(subject)
                c.post("/v1/predict", json={"rows": rows.tolist()})
            except httpx.HTTPError:
                time.sleep(0.05)  # the server is down: keep trying until told to stop


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_feedback(tmp_path: Path, run_dir: Path, data):
    x, y = data
    path = tmp_path / "dep"
    deploy.create(path, from_run=run_dir)
    keys = make_keys(path)
    deploy.ingest(path, x[:100], y[:100])
    rng = random.Random(0)
    acked: list[str] = []
    promoted = "v1.0"
    for round_ in range(2):
        server = Server(path).start()
        stop = threading.Event()
        load = threading.Thread(
            target=_load, args=(server.url, keys["feedback"], x, f"r{round_}", acked, stop)
        )
        load.start()
        admin = httpx.Client(base_url=server.url, headers=auth(keys["admin"]), timeout=30)
        time.sleep(rng.uniform(0.3, 1.0))
        if round_ == 0:  # kill the updater in the middle of an update
            assert admin.post("/v1/update").status_code == 202
            time.sleep(rng.uniform(0.5, 1.5))
            pid = admin.get("/v1/status").json()["updater_pid"]
            os.kill(pid, signal.SIGKILL)
        versions = [v["id"] for v in admin.get("/v1/versions").json()["versions"]]
        r = admin.post("/v1/promote", json={"version": versions[-1]})
        assert r.status_code == 200
        promoted = r.json()["production"]
        if round_ == 1:  # an update running when the server dies
            admin.post("/v1/update")
        time.sleep(rng.uniform(0.2, 1.0))
        os.kill(server.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        server.proc.wait()  # type: ignore[union-attr]
        stop.set()
        load.join()
        admin.close()
        server.stop()  # and its updater, if it is still there

    with Deployment(path) as dep, dep.engine.connect() as conn:
        subjects = conn.execute(select(store.samples.c.subject)).scalars().all()
        version_rows = dep.versions(conn)
    have = Counter(subjects)
    assert len(acked) > 10
    missing = [a for a in acked if have.get(a) != 4]
    assert missing == [], f"{len(missing)} acknowledged feedback requests lost: {missing[:5]}"
    for v in version_rows:  # every recorded version loads whole
        Learner.load(path / v["path"])
    with serving(path) as server:
        r = httpx.post(
            server.url + "/v1/predict", json={"rows": x[:2].tolist()}, headers=auth(keys["predict"])
        )
        assert r.status_code == 200 and r.json()["version"] == promoted
