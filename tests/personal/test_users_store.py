"""Users as rows of the deployment's store, at scale: 10,000 users on a tiny real
sentence-transformers backbone (a one-layer BERT with random weights, built and saved in a
temporary folder, loaded offline as `text:PATH`): a mixed-user batch is predicted by each
user's own head, an update of one user leaves every other user's row bit-identical, and
forgetting a user leaves no row, sample, file or byte of theirs. Also on PostgreSQL."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

MISSING = [m for m in ("sqlalchemy", "transformers") if not importlib.util.find_spec(m)]
if MISSING and os.environ.get("CI") != "true":  # optional extras: skip here, fail in CI
    pytest.skip(
        f"needs {', '.join(MISSING)} (pip install -e '.[deploy,text]')", allow_module_level=True
    )

from lifelong import deploy  # noqa: E402
from lifelong.config import TrainConfig  # noqa: E402
from lifelong.data.text import encode_texts  # noqa: E402
from lifelong.deploy import store  # noqa: E402
from lifelong.deploy.deployment import Deployment  # noqa: E402
from lifelong.deploy.users import forget_user, learn_users, predict_users  # noqa: E402
from lifelong.learner import Learner  # noqa: E402
from lifelong.personal.persist import read_user_bytes  # noqa: E402

_spec = importlib.util.spec_from_file_location(  # the deployment tests' PostgreSQL server
    "lifelong_deploy_fixtures_users", Path(__file__).parents[1] / "deploy" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_deploy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_deploy)
postgres, pg_database = _deploy.postgres, _deploy.pg_database
files_holding = _deploy.files_holding

TEXTS = ["alpha report", "beta memo", "gamma invoice"]  # one per class
CHARS = 32  # the deployment's input rows: 32 code points
PERMS = list(itertools.permutations(range(3)))  # user i labels text j as PERMS[i % 6][j]


def tiny_backbone(root: Path) -> Path:
    """A sentence-transformers folder: a character-level BERT tokenizer and a one-layer
    BERT of 16 features with random weights (seeded), mean pooling, normalization."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root.mkdir(parents=True)
    chars = string.ascii_lowercase + string.digits
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    try:  # transformers 5 takes the vocabulary itself, 4.x a vocab.txt
        tok = BertTokenizerFast(vocab={v: i for i, v in enumerate(vocab)})
    except (TypeError, ValueError):
        tok = None
    if tok is None or len(tok.get_vocab()) != len(vocab):
        tok = BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    tok.save_pretrained(root)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(root)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]  # fmt: skip
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": 16, "pooling_mode_mean_tokens": True}
    (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A saved learner: the tiny backbone (frozen) and a head trained on the 3 texts
    (features cached in a temporary folder while this module's tests run)."""
    root = tmp_path_factory.mktemp("tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFELONG_FEATURE_CACHE", str(root / "features"))
        backbone = tiny_backbone(root / "backbone")
        config = TrainConfig(epochs=5, lr=0.1)
        learner = Learner(f"text:{backbone}", "naive", config=config, seed=0)
        learner.learn(encode_texts(TEXTS * 4, max_chars=CHARS), np.array([0, 1, 2] * 4))
        learner.save(root / "model")
        yield root / "model"


def rows(dep: Path) -> dict[str, tuple[Any, ...]]:
    """Every users row: {id: (state bytes, revision, created_at, updated_at)}."""
    with Deployment(dep) as d, d.engine.connect() as conn:
        return {
            r.id: (bytes(r.state), r.revision, r.created_at, r.updated_at)
            for r in conn.execute(store.users.select())
        }


def subjects(dep: Path) -> dict[str, int]:
    from sqlalchemy import func, select

    s = store.samples
    with Deployment(dep) as d, d.engine.connect() as conn:
        q = select(s.c.subject, func.count()).group_by(s.c.subject)
        return {k: int(n) for k, n in conn.execute(q)}


def own_predictions(state: bytes, feats: torch.Tensor) -> np.ndarray:
    """Predictions of one user's head read from their row alone (no shared bank)."""
    p = read_user_bytes(state)
    logits = feats @ p["weight"].T + p["bias"]
    return logits.masked_fill(~p["seen"], float("-inf")).argmax(1).numpy()


def features(model: Path, x: np.ndarray) -> torch.Tensor:
    from lifelong.models.pretrained import encode_cached

    return encode_cached(Learner.load(model).model, torch.from_numpy(x))


def test_ten_thousand_users_in_one_deployment(tiny_model: Path, tmp_path: Path) -> None:
    dep, n_users = tmp_path / "dep", 10_000
    deploy.create(dep, from_run=tiny_model)
    texts = encode_texts(TEXTS, max_chars=CHARS)
    ids = [f"u{i:05d}" for i in range(n_users)]
    # 30,001 rows, 3 distinct texts (features computed once); u00042 sends one more row,
    # so that their head is theirs alone (users labelling alike learn equal heads)
    x = np.concatenate([np.tile(texts, (n_users, 1)), texts[:1]])
    y = np.array([PERMS[i % 6][j] for i in range(n_users) for j in range(3)] + [PERMS[0][0]])
    who = [*np.repeat(ids, 3), "u00042"]
    out = learn_users(dep, x, y, who, strategy="naive")  # one batched update of all
    assert (out["users"], out["new_users"], out["ingested"]) == (n_users, n_users, len(y))
    before = rows(dep)
    assert len(before) == n_users and {r[1] for r in before.values()} == {1}
    assert subjects(dep)["u00042"] == 4

    # a mixed batch: each user's row j = i % 3, shuffled, plus users without a head
    order = np.random.default_rng(0).permutation(n_users)
    mixed_users = [ids[i] for i in order] + ["nobody", "nobody-else"]
    mixed = np.concatenate([texts[order % 3], texts[:2]])
    classes, version = predict_users(dep, mixed, mixed_users)
    assert version == "v1.0"
    feats = features(tiny_model, mixed)
    for k, uid in enumerate(mixed_users[:n_users]):
        assert classes[k] == own_predictions(before[uid][0], feats[k : k + 1])[0], uid
    learnt = np.array([PERMS[i % 6][i % 3] for i in order])
    assert (classes[:n_users] == learnt).mean() > 0.95  # each head learned its own labels
    assert (classes[-2:] == deploy.predict(dep, texts[:2], record=False).classes).all()

    # one user's update: only their row changes
    flipped = np.array([2, 0, 1]) if PERMS[42 % 6] != (2, 0, 1) else np.array([1, 2, 0])
    learn_users(dep, texts, flipped, "u00042")
    after = rows(dep)
    changed = [uid for uid in ids if after[uid] != before[uid]]
    assert changed == ["u00042"]
    assert after["u00042"][1] == 2 and after["u00042"][2] == before["u00042"][2]
    again, _ = predict_users(dep, mixed, mixed_users)
    moved = {mixed_users[k] for k in np.flatnonzero(again != classes)}
    assert moved <= {"u00042"}

    # forget: no row, sample, file or byte of theirs is left
    heads = [read_user_bytes(r[0]) for r in (before["u00042"], after["u00042"])]
    needles = [p["weight"].numpy().tobytes() for p in heads] + [b"u00042"]
    assert files_holding([dep], needles), "the search must see the user's head"
    gone = forget_user(dep, "u00042")
    assert gone["deleted"] == 7 and gone["head_deleted"]
    assert files_holding([dep], needles) == []
    left = rows(dep)
    assert "u00042" not in left and len(left) == n_users - 1
    assert all(left[uid] == after[uid] for uid in left)
    assert "u00042" not in subjects(dep) and not (dep / "users").exists()
    assert deploy.status(dep)["users"] == n_users - 1


def test_cli_user_column(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lifelong.cli import main

    dep, data = tmp_path / "dep", tmp_path / "upload.npz"
    deploy.create(dep, from_run=tiny_model)
    texts = encode_texts(TEXTS, max_chars=CHARS)
    who = np.array(["ann"] * 3 + ["bob"] * 3)
    np.savez(data, x=np.tile(texts, (2, 1)), y=np.array([2, 1, 0, 1, 2, 0]), who=who)
    for _ in range(2):
        assert (
            main(["deploy", "ingest", str(dep), "--data", str(data), "--user-column", "who"]) == 0
        )
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["users"] == 2
    assert main(["deploy", "predict", str(dep), "--data", str(data), "--user-column", "who"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in lines] == [2, 1, 0, 1, 2, 0]
    assert sorted(rows(dep)) == ["ann", "bob"]
    with pytest.raises(SystemExit, match="no array 'whom'"):
        main(["deploy", "predict", str(dep), "--data", str(data), "--user-column", "whom"])
    with pytest.raises(SystemExit, match="not both"):
        main(["deploy", "predict", str(dep), "--data", str(data), "--user", "a", "--user-column", "who"])  # fmt: skip
    with pytest.raises(deploy.DeployError, match="not valid"):
        learn_users(dep, texts, [0, 1, 2], ["ann", "../x", "bob"])


def test_cli_csv_of_documents_with_a_user_column(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--text-column` + `--user-column`: a CSV of documents, a user per row."""
    import csv

    from lifelong.cli import main

    backbone = tiny_model.parent / "backbone"  # a learner on full-width text rows
    learner = Learner(f"text:{backbone}", "naive", config=TrainConfig(epochs=5, lr=0.1), seed=0)
    learner.learn(encode_texts(TEXTS * 4), np.array([0, 1, 2] * 4))
    learner.save(tmp_path / "model")
    dep, data = tmp_path / "dep", tmp_path / "docs.csv"
    deploy.create(dep, from_run=tmp_path / "model")
    labels = {"ann": [2, 0, 1], "bob": [1, 2, 0]}
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["doc", "owner", "label"])
        w.writerows([t, u, labels[u][j]] for u in labels for j, t in enumerate(TEXTS))
    args = ["--data", str(data), "--text-column", "doc", "--user-column", "owner"]
    for _ in range(2):
        assert main(["deploy", "ingest", str(dep), *args, "--target", "label"]) == 0
    assert main(["deploy", "predict", str(dep), *args, "--target", "label"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    got = [int(r.split(",")[1]) for r in lines[lines.index("id,class,version") + 1 :]]
    assert got == labels["ann"] + labels["bob"]
    assert sorted(rows(dep)) == ["ann", "bob"] and subjects(dep) == {"ann": 6, "bob": 6}


def test_folders_from_before_the_table_are_moved_in(tiny_model: Path, tmp_path: Path) -> None:
    """A deployment whose users were folders (DIR/users/u/<id>/) and whose database has no
    users table: the first user call creates the table and moves the users into it."""
    from sqlalchemy import text

    from lifelong.deploy.users import _shared
    from lifelong.personal import UserFolder

    dep = tmp_path / "dep"
    deploy.create(dep, from_run=tiny_model)
    with Deployment(dep) as d, d.engine.begin() as conn:
        conn.execute(text("DROP TABLE users"))
    texts = encode_texts(TEXTS, max_chars=CHARS)
    heads = _shared(Learner.load(tiny_model), "naive")
    heads.update({"old-user": (features(tiny_model, texts), torch.tensor([2, 0, 1]))})
    UserFolder(dep / "users").save(heads, ["old-user"])
    classes, _ = predict_users(dep, texts, "old-user")
    assert classes.tolist() == heads.predict(features(tiny_model, texts), "old-user").tolist()
    assert list(rows(dep)) == ["old-user"] and not (dep / "users").exists()


def test_users_table_on_postgresql(tiny_model: Path, tmp_path: Path, pg_database: Any) -> None:
    dep = tmp_path / "dep"
    deploy.create(dep, from_run=tiny_model, db=pg_database.url)
    texts = encode_texts(TEXTS, max_chars=CHARS)
    users = ["pg-ann", "pg-bob", "pg-cy"]
    y = np.array([PERMS[i][j] for i in range(3) for j in range(3)])
    learn_users(dep, np.tile(texts, (3, 1)), y, np.repeat(users, 3))
    before = rows(dep)
    classes, _ = predict_users(dep, np.tile(texts, (3, 1)), np.repeat(users, 3))
    feats = features(tiny_model, texts)
    for i, uid in enumerate(users):
        assert (classes[3 * i : 3 * i + 3] == own_predictions(before[uid][0], feats)).all()
    learn_users(dep, texts, [1, 2, 0], "pg-bob")
    after = rows(dep)
    assert after["pg-ann"] == before["pg-ann"] and after["pg-cy"] == before["pg-cy"]
    assert after["pg-bob"][1] == 2
    needles = [read_user_bytes(after["pg-bob"][0])["weight"].numpy().tobytes()]
    roots = [dep, pg_database.files]
    pg_database.checkpoint()
    assert files_holding(roots, needles), "the search must see the user's head"
    assert forget_user(dep, "pg-bob")["head_deleted"]
    pg_database.checkpoint()
    assert files_holding(roots, needles) == []
    assert sorted(rows(dep)) == ["pg-ann", "pg-cy"] and "pg-bob" not in subjects(dep)


def test_a_row_changed_during_an_update_is_read_again(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer updates a user's row between this update's read and its write: the
    write expects the revision it read, finds another, and the update starts again from
    the new row (nothing of the first attempt is stored)."""
    from lifelong.deploy import users as users_mod

    dep = tmp_path / "dep"
    deploy.create(dep, from_run=tiny_model)
    texts = encode_texts(TEXTS, max_chars=CHARS)
    learn_users(dep, texts, [0, 1, 2], [5, 5, 5])  # numeric ids are their decimal text
    real_sync, calls = users_mod.UserHeads.sync, []

    def sync_then_race(self: Any, conn: Any, users: Any) -> None:
        real_sync(self, conn, users)
        calls.append(1)
        if len(calls) == 1:  # the first attempt: someone else writes "5" meanwhile
            learn_users(dep, texts, [2, 0, 1], "5")

    monkeypatch.setattr(users_mod.UserHeads, "sync", sync_then_race)
    out = learn_users(dep, texts, [1, 2, 0], "5")
    assert len(calls) == 3  # attempt 1 (+ the other writer's own read), attempt 2
    assert rows(dep)["5"][1] == 3 and not out["new_users"]
    assert subjects(dep)["5"] == 9  # 3 + 3 by the other writer + 3: none twice


def test_a_cache_of_heads_follows_the_rows(tiny_model: Path, tmp_path: Path) -> None:
    """`UserHeads` (what a server keeps): an update, a forget and a user created again
    under the same id (revision 1 again) are each seen at the next sync."""
    from lifelong.deploy.users import Production, UserHeads

    dep = tmp_path / "dep"
    deploy.create(dep, from_run=tiny_model)
    texts = encode_texts(TEXTS, max_chars=CHARS)
    feats = features(tiny_model, texts)
    cache = UserHeads(Production(Learner.load(tiny_model), "v1.0"))

    def answer() -> list[int]:
        with Deployment(dep) as d, d.engine.connect() as conn:
            cache.sync(conn, ["ann"])
        return cache.predict(feats, ["ann"] * 3).tolist()

    production = deploy.predict(dep, texts, record=False).classes.tolist()
    own = lambda: own_predictions(rows(dep)["ann"][0], feats).tolist()  # noqa: E731
    assert answer() == production
    learn_users(dep, texts, [2, 0, 1], "ann", strategy="naive")
    old = answer()
    assert old == own() and rows(dep)["ann"][1] == 1
    forget_user(dep, "ann")  # and created again before this cache syncs: revision 1 again
    learn_users(dep, texts, [1, 2, 0], "ann", strategy="naive")
    assert rows(dep)["ann"][1] == 1 and own() != old and answer() == own()
    learn_users(dep, texts, [2, 0, 1], "ann", strategy="naive")  # revision 2
    assert answer() == own()
    forget_user(dep, "ann")
    assert answer() == production and "ann" not in cache.heads
