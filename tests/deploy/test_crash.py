"""`kill -9` of `lifelong deploy update` at random moments, repeatedly: no version row
without its complete folder, production is the last promoted version, no ingested sample
is lost, and the next update succeeds (the dead process's lock is taken over, the folders
it left are removed)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from lifelong import deploy
from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment
from lifelong.learner import Learner

UPDATE = "import sys; from lifelong.cli import main; sys.exit(main(sys.argv[1:]))"


def _check(dep: Path, ingested: int) -> str | None:
    """The invariants after a kill; production's id."""
    s = deploy.status(dep, last=1)
    assert s["samples"] == ingested, "an ingested sample was lost"
    for v in s["versions"]:
        Learner.load(dep / v["path"])  # complete: checksums verified
    with Deployment(dep) as d, d.engine.connect() as conn:
        h = store.alias_history
        q = select(h.c.version).where(h.c.name == "production").order_by(h.c.id.desc())
        last = conn.execute(q.limit(1)).scalar()
    assert s["production"] == last
    return s["production"]


def _locked(dep: Path) -> bool:
    with Deployment(dep) as d, d.engine.connect() as conn:
        return conn.execute(select(store.locks.c.name)).first() is not None


def _writing(dep: Path) -> bool:
    return any(p.name.endswith(".tmp") for p in (dep / "versions").glob(".*"))


def _written(dep: Path) -> bool:
    with Deployment(dep) as d, d.engine.connect() as conn:
        known = set(conn.execute(select(store.versions.c.id)).scalars())
    return any(p.name not in known for p in (dep / "versions").glob("v*"))


def _never(dep: Path) -> bool:
    return False


#: when to kill: after the lock is taken (anywhere in the update), while the version's
#: folder is being written, between the folder and its row (with a random delay up to
#: the number), or not at all (the update completes: production moves on)
PHASES = [(_locked, 3.0), (_writing, 0.02), (_written, 0.05), (_never, 0.0)]
#: the update pauses between its folder and its row (`stateful.fault_point`), so a kill
#: lands in that window on a fast machine too
HOLD = {_written: "version-folder-written:5"}


def _wait_for(phase: tuple, dep: Path, proc: subprocess.Popen) -> bool:
    """Poll until the phase's moment comes (True) or the process ends (False)."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if phase[0](dep):
            return True
        time.sleep(0.002)
    return False


@pytest.mark.slow
def test_killed_updates_leave_the_deployment_consistent(tmp_path: Path, data):
    x, y = data
    dep = tmp_path / "dep"
    deploy.create(dep, model="mlp(hidden=(32,))", strategy="replay(mem_size=50)")
    cmd = [sys.executable, "-c", UPDATE, "deploy", "update", str(dep), "--force"]
    deploy.ingest(dep, x[:50], y[:50], "s")
    deploy.update(dep, force=True)  # v1.0
    rng = random.Random(7)
    ingested, outcomes, orphans = 50, [], []
    for k in range(1, 7):
        deploy.ingest(dep, x[k * 50 : (k + 1) * 50], y[k * 50 : (k + 1) * 50], f"s{k}")
        ingested += 50
        phase = PHASES[k % len(PHASES)]
        env = {**os.environ, "LIFELONG_DEPLOY_PAUSE_AT": HOLD.get(phase[0], "")}
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        if _wait_for(phase, dep, proc):
            time.sleep(rng.uniform(0.0, phase[1]))
        proc.send_signal(signal.SIGKILL)
        outcomes.append(proc.wait())
        orphans.append(_written(dep))  # a folder without its row: the next update removes it
        _check(dep, ingested)
    assert outcomes.count(-signal.SIGKILL) >= 3, f"too few updates were killed: {outcomes}"
    assert 0 in outcomes, f"no update completed: {outcomes}"
    assert any(orphans), "no kill landed between a version's folder and its row"
    before = {v["id"] for v in deploy.status(dep)["versions"]}
    deploy.ingest(dep, x[350:], y[350:], "s7")  # new labels, whether or not the last one ran
    ingested += len(x) - 350
    out = deploy.update(dep, force=True)
    assert out["version"] not in before
    _check(dep, ingested)
    names = {p.name for p in (dep / "versions").iterdir()}
    assert names == {v["id"] for v in deploy.status(dep)["versions"]}, "orphans left"
