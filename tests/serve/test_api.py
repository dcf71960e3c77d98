"""`lifelong serve` over real HTTP (one uvicorn server for the module): keys and scopes,
predict -> late labels -> update, refused bodies storing nothing, admin actions in the
audit log with the key's name, forget, metrics, and the Python client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import Server, auth, make_keys
from lifelong import deploy
from lifelong.client import ApiError, Client
from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, run_dir: Path) -> Iterator[dict[str, Any]]:
    path = tmp_path_factory.mktemp("serve") / "dep"
    # an update is due every 100 labelled samples; the server asks the policy every 0.5 s
    deploy.create(path, from_run=run_dir, policy={"name": "stateful", "every_labelled": 100})
    keys = make_keys(path)
    server = Server(path, "--check-every-s", "0.5").start()
    try:
        yield {"path": path, "keys": keys, "url": server.url}
    finally:
        server.stop()


def counts(path: Path) -> tuple[int, int, int]:
    """(samples, labelled samples, versions)."""
    with Deployment(path) as dep, dep.engine.connect() as conn:
        n = conn.execute(store.samples.select()).all()
        v = conn.execute(store.versions.select()).all()
    return len(n), sum(r.label is not None for r in n), len(v)


def audit(path: Path, action: str) -> list[dict[str, Any]]:
    with Deployment(path) as dep, dep.engine.connect() as conn:
        rows = conn.execute(store.audit.select().where(store.audit.c.action == action)).all()
    return [json.loads(r.details) for r in rows]


def test_keys_and_scopes_refuse_and_change_nothing(live):
    url, keys, path = live["url"], live["keys"], live["path"]
    before = counts(path)
    body = {"rows": [[0.0] * 16], "labels": [1]}
    r = httpx.post(url + "/v1/feedback", json=body)
    assert r.status_code == 401 and "no API key" in r.json()["detail"]
    r = httpx.post(url + "/v1/feedback", json=body, headers=auth("llk_not-a-key"))
    assert r.status_code == 401 and "unknown API key" in r.json()["detail"]
    r = httpx.post(url + "/v1/feedback", json=body, headers=auth(keys["predict"]))
    assert r.status_code == 403 and "needs 'feedback'" in r.json()["detail"]
    for path_, scope in (("/v1/promote", "predict"), ("/v1/rollback", "feedback")):
        r = httpx.post(url + path_, json={"version": "v1.0"}, headers=auth(keys[scope]))
        assert r.status_code == 403
    r = httpx.delete(url + "/v1/subjects/x", headers=auth(keys["feedback"]))
    assert r.status_code == 403
    # not even a malformed body gets past a missing key
    r = httpx.post(
        url + "/v1/predict", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 401
    assert counts(path) == before
    assert httpx.get(url + "/healthz").json() == {"ok": True, "serving": "v1.0"}


def test_refused_bodies_name_the_problem_and_store_nothing(live, data):
    url, path = live["url"], live["path"]
    h = auth(live["keys"]["feedback"])
    x, y = data
    before = counts(path)
    cases = [
        (b'{"rows": [[NaN]], "labels": [1]}', 422, "finite number"),
        (b"rows=1", 422, "not valid JSON"),
        (
            json.dumps({"rows": x[:2, :15].tolist(), "labels": [0, 1]}).encode(),
            422,
            "expected 16 features",
        ),
        (
            json.dumps({"rows": x[:2].tolist(), "labels": [0]}).encode(),
            422,
            "2 ids/rows but 1 labels",
        ),
        (json.dumps({"rows": x[:2].tolist(), "labels": [0, -1]}).encode(), 422, "labels.1"),
        (json.dumps({"rows": [[1e39] * 16], "labels": [0]}).encode(), 422, "not a finite float32"),
        (json.dumps({"labels": [0]}).encode(), 422, "either 'ids'"),
        (
            json.dumps({"rows": x[:1].tolist(), "labels": [0], "subject": "a\u0000b"}).encode(),
            422,
            "NUL",
        ),
        (json.dumps({"ids": [10**6], "labels": [0]}).encode(), 422, "unknown sample ids"),
        (b"[" * 5 + b"0" * (5 << 20), 413, "limit"),
    ]
    for content, status, words in cases:
        r = httpx.post(
            url + "/v1/feedback", content=content, headers={**h, "content-type": "application/json"}
        )
        assert (r.status_code, words in r.json()["detail"]) == (status, True), (
            content[:60],
            r.text[:300],
        )
    r = httpx.post(
        url + "/v1/predict", content=b'{"rows": [[1]]}', headers={**h, "content-type": "text/plain"}
    )
    assert r.status_code == 415 and "application/json" in r.json()["detail"]
    r = httpx.post(url + "/v1/predict", json={"rows": x[:2].tolist(), "task": 1}, headers=h)
    assert r.status_code == 422 and "task scenario" in r.json()["detail"]
    assert counts(path) == before


def test_predict_then_late_labels_then_update(live, data):
    url, path, keys = live["url"], live["path"], live["keys"]
    x, y = data
    n0, l0, v0 = counts(path)
    r = httpx.post(
        url + "/v1/predict",
        json={"rows": x[:120].tolist(), "subject": "p1"},
        headers=auth(keys["predict"]),
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["version"] == "v1.0" and len(out["classes"]) == len(out["ids"]) == 120
    probs = np.array(out["probabilities"])
    assert probs.shape == (120, 6) and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert (probs.argmax(1) == out["classes"]).all()
    r = httpx.post(url + "/v1/feedback", json={"ids": out["ids"], "labels": y[:120].tolist()},
                   headers=auth(keys["feedback"]))  # fmt: skip
    assert r.status_code == 200 and r.json()["stored"] == 120
    assert counts(path)[:2] == (n0 + 120, l0 + 120)

    # 120 new labels: the policy's volume trigger fires, the updater writes v1.1 unasked
    deadline = time.monotonic() + 120
    while counts(path)[2] == v0 and time.monotonic() < deadline:
        time.sleep(0.5)
    versions = httpx.get(url + "/v1/versions", headers=auth(keys["predict"])).json()
    assert len(versions["versions"]) == v0 + 1 and versions["candidate"] == "v1.1"
    assert audit(path, "decision")[-1]["reason"] != "asked (forced)"
    r = httpx.post(url + "/v1/update", headers=auth(keys["admin"]))  # and when asked
    assert r.status_code == 202 and r.json()["accepted"], r.text
    assert audit(path, "api")[-1] == {
        "request": "update",
        "key": "test-admin",
        "updater_pid": r.json()["updater_pid"],
    }
    deadline = time.monotonic() + 120
    while not any(d.get("forced") for d in audit(path, "decision")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert any(d.get("forced") for d in audit(path, "decision"))
    # the served version follows the production alias, whatever the gate said
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        served = httpx.get(url + "/healthz").json()["serving"]
        if served == versions["production"]:
            break
        time.sleep(0.1)
    assert served == versions["production"]


def test_client_promote_rollback_forget_audited(live, data):
    x, y = data
    with Client(live["url"], live["keys"]["admin"]) as c:
        stored = c.feedback(y[200:230], rows=x[200:230], subject=["gone"] * 10 + ["kept"] * 20)
        assert stored["stored"] == 30
        names = [v["id"] for v in c.versions()["versions"]]
        other = next(v for v in names if v != c.versions()["production"])
        assert c.promote(other)["production"] == other
        assert c.predict(x[:3], record=False)["version"] == other  # this replica at once
        back = c.rollback()
        assert back["previous"] == other and c.predict(x[:2])["version"] == back["production"]
        with pytest.raises(ApiError) as e:
            c.promote("v9.9")
        assert e.value.status == 404 and "v9.9" in str(e.value)
        out = c.forget("gone")
        assert out["deleted"] == 10
        s = c.status()
        assert s["serving"] == back["production"] and s["updater_pid"]
    with Deployment(live["path"]) as dep, dep.engine.connect() as conn:
        subjects = conn.execute(
            store.samples.select().where(store.samples.c.subject == "gone")
        ).all()
        log = conn.execute(store.audit.select()).all()
    assert subjects == []
    api = [json.loads(r.details) for r in log if r.action == "api"]
    assert [a["request"] for a in api][-3:] == ["promote", "rollback", "forget"]
    assert all(a["key"] == "test-admin" for a in api[-3:])
    assert not any("gone" in r.details for r in log)  # only the salted hash


def test_metrics(live):
    text = httpx.get(live["url"] + "/metrics").text
    for series in (
        'lifelong_requests_total{method="POST",route="/v1/predict",status="200"}',
        'lifelong_request_seconds_bucket{le="0.1",route="/v1/predict"}',
        "lifelong_production_version{version=",
        'lifelong_versions{verdict="initial"} 1.0',
        'lifelong_updates{kind="stateful"} 1.0',
        "lifelong_trigger_score{trigger=",
        'lifelong_requests_total{method="POST",route="/v1/feedback",status="401"}',
    ):
        assert series in text, series
