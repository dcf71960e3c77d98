"""`lifelong deploy keys create`: the key is printed once and only its hash is stored;
scopes nest; names are unique; `lifelong serve` refuses bad options clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifelong import deploy
from lifelong.deploy.deployment import Deployment
from lifelong.serve.keys import KeyRing, allows, create_key, digest


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
