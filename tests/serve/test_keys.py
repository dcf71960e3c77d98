"""`lifelong deploy keys create|list|revoke`: the key is printed once and only its hash is
stored; scopes nest; names are unique; a listing never shows a key; a revoked key is
refused by a running service within a second; `lifelong serve` refuses bad options."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifelong import deploy
from lifelong.deploy.deployment import Deployment
from lifelong.serve.keys import KeyRing, allows, create_key, digest


def auth(key: str) -> dict[str, str]:
    """The header of a request with `key` (not imported from conftest: which folder's
    conftest is the module `conftest` depends on what else pytest collected)."""
    return {"Authorization": f"Bearer {key}"}


def test_keys_create_prints_once_and_stores_a_hash(tmp_path: Path, run_dir: Path, capsys):
    import argparse

    from lifelong.deploy.cli import add_arguments, main

    path = tmp_path / "dep"
    deploy.create(path, from_run=run_dir)
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert (
        main(p.parse_args(["keys", "create", str(path), "--scope", "feedback", "--name", "app"]))
        == 0
    )
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("llk_") and len(token) > 40 and "'app' (scope feedback)" in out.err
    raw = b"".join(f.read_bytes() for f in path.rglob("*") if f.is_file())
    assert token.encode() not in raw and digest(token).encode() in raw
    with Deployment(path) as dep:
        ring = KeyRing(dep.engine)
        assert ring.lookup(token) == ("app", "feedback")
        assert ring.lookup(token + "x") is None and ring.lookup(None) is None
        with pytest.raises(deploy.DeployError, match="exists already"):
            create_key(dep.engine, "admin", "app")
        with pytest.raises(deploy.DeployError, match="unknown scope 'root'"):
            create_key(dep.engine, "root")
        assert create_key(dep.engine, "admin")[1] == ("admin-1", "admin")
    assert allows("admin", "feedback") and allows("feedback", "predict")
    assert not allows("predict", "feedback") and not allows("feedback", "admin")


def test_serve_refuses_bad_options(tmp_path: Path):
    import argparse

    from lifelong.serve import add_arguments, main

    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(ValueError, match="--workers must be at least 1, got 0"):
        main(p.parse_args([str(tmp_path), "--workers", "0"]))
    with pytest.raises(ValueError, match="not a deployment"):
        main(p.parse_args([str(tmp_path)]))


def _cli(*argv: str) -> int:
    import argparse

    from lifelong.deploy.cli import add_arguments, main

    p = argparse.ArgumentParser()
    add_arguments(p)
    return main(p.parse_args(list(argv)))


def test_keys_list_and_revoke(tmp_path: Path, run_dir: Path, capsys):
    import json

    from lifelong.serve.keys import list_keys, revoke_key

    path = tmp_path / "dep"
    deploy.create(path, from_run=run_dir)
    assert _cli("keys", "list", str(path)) == 0
    assert "no keys" in capsys.readouterr().out
    with Deployment(path) as dep:
        tokens = [create_key(dep.engine, "predict", "app")[0], create_key(dep.engine, "admin")[0]]
        KeyRing(dep.engine).lookup(tokens[0])  # a use, recorded
    assert _cli("keys", "list", str(path)) == 0
    out = capsys.readouterr().out
    assert "app" in out and "admin-1" in out and "predict" in out
    assert not any(t in out or digest(t) in out for t in tokens)
    assert _cli("keys", "list", str(path), "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["scope"]) for r in rows] == [("app", "predict"), ("admin-1", "admin")]
    assert rows[0]["last_used_at"] is not None and rows[1]["last_used_at"] is None
    assert set(rows[0]) == {"name", "scope", "created_at", "last_used_at"}

    assert _cli("keys", "revoke", str(path), "app") == 0
    assert "'app' (scope predict) revoked" in capsys.readouterr().out
    with Deployment(path) as dep:
        assert [r["name"] for r in list_keys(dep.engine)] == ["admin-1"]
        assert KeyRing(dep.engine).lookup(tokens[0]) is None
        with pytest.raises(deploy.DeployError, match="no key named 'app'; keys: admin-1"):
            revoke_key(dep.engine, "app")
        assert create_key(dep.engine, "feedback", "app")[1] == ("app", "feedback")  # name free
    raw = b"".join(f.read_bytes() for f in path.rglob("*") if f.is_file())
    assert digest(tokens[0]).encode() not in raw
    s = deploy.status(path, last=20)
    assert any(e["action"] == "key_revoke" and e["details"]["name"] == "app"
               for e in s["last_decisions"])  # fmt: skip


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_service_refuses_a_revoked_key_within_a_second(deployment):
    """A revocation from another process: the service refuses the key once `recheck`
    (1 s) has passed, well within the cache's ttl (5 s); requests in between cost no
    query of the keys, and the other keys keep working."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from lifelong.serve.app import create_app
    from lifelong.serve.keys import revoke_key

    path, keys = deployment
    clock, queries = _Clock(), []
    with Deployment(path) as own:
        event.listen(own.engine, "before_cursor_execute", lambda *a: queries.append(a[2]))
        app = create_app(path, updater=False)
        ring = KeyRing(own.engine, clock=clock)
        assert (ring.ttl, ring.recheck) == (5.0, 1.0)
        app.state.service.keys = ring
        with TestClient(app) as api:

            def code(scope: str) -> int:
                return api.get("/v1/status", headers=auth(keys[scope])).status_code

            assert code("predict") == 200 and code("admin") == 200
            queries.clear()
            assert [code("predict") for _ in range(5)] == [200] * 5
            assert queries == []  # remembered: no query per request
            with Deployment(path) as other:  # `lifelong deploy keys revoke`, elsewhere
                revoke_key(other.engine, "test-predict")
            clock.now += 0.5
            assert code("predict") == 200  # not rechecked yet
            clock.now += 0.5
            assert code("predict") == 401  # 1 s after: refused (the ttl is 5 s)
            assert code("admin") == 200 and code("feedback") == 200
