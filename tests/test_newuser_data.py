"""A new user's data on the way back in (issue 14, items 1-3, 10 and `classes`): `lifelong
predict` and `lifelong.load(...).predict` match named columns by name, read what training
reads, and a model can be exported without its training samples."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lifelong
from lifelong.cli import main
from lifelong.config import TrainConfig
from lifelong.experiment.run import RunConfig, run

pd = pytest.importorskip("pandas")

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COLS = [f"px{i}" for i in range(64)]


def _digits() -> Any:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    df = pd.DataFrame((x[:600] / 16).astype(np.float32), columns=COLS)
    df["label"] = [NAMES[v] for v in y[:600]]
    return df


def _train(path: Path, run_dir: Path, strategy: str = "replay(mem_size=50)") -> Path:
    table = {"target": "label"} if path.suffix else {"classes_per_experience": 1}
    cfg = RunConfig(
        data={"path": str(path), **table},
        strategy=strategy,
        model="mlp(hidden=(16,))",
        train=TrainConfig(epochs=1),
        threads=1,
    )
    run(cfg, run_dir=run_dir)
    return run_dir


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("newuser")
    df = _digits()
    df.to_csv(root / "digits.csv", index=False)
    return {"root": root, "df": df, "run": _train(root / "digits.csv", root / "run")}


def _predict(run_dir: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    code = main(["predict", str(run_dir), "--data", str(data)])
    out, err = capsys.readouterr()
    return code, (list(csv.reader(out.splitlines())) if code == 0 else err)


def test_predict_matches_named_columns_by_name(
    table: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root, df, rd = table["root"], table["df"], table["run"]
    feats = df[COLS].iloc[:40]
    feats.to_csv(root / "new.csv", index=False)
    feats[COLS[::-1]].to_csv(root / "reversed.csv", index=False)
    code, rows = _predict(rd, root / "new.csv", capsys)
    assert code == 0 and rows[0] == ["prediction", "class_name"] and len(rows) == 41
    assert _predict(rd, root / "reversed.csv", capsys) == (0, rows)
    # headerless numbers go by position
    np.savetxt(root / "bare.csv", feats.to_numpy(), delimiter=",")
    assert _predict(rd, root / "bare.csv", capsys) == (0, rows)
    # renamed, missing and unknown columns are refused by name
    feats.set_axis([f"f{i}" for i in range(64)], axis=1).to_csv(root / "renamed.csv", index=False)
    code, err = _predict(rd, root / "renamed.csv", capsys)
    assert code == 2 and "missing" in err and "'px0'" in err and "'f0'" in err
    pd.DataFrame(feats.to_numpy()).to_csv(root / "numbered.csv", index=False)  # header 0,1,..
    code, err = _predict(rd, root / "numbered.csv", capsys)
    assert code == 2 and "64 unknown: '0', '1'" in err
    feats.drop(columns="px7").assign(extra=1.0).to_csv(root / "odd.csv", index=False)
    code, err = _predict(rd, root / "odd.csv", capsys)
    assert code == 2 and "'px7'" in err and "'extra'" in err
    # the Python API on a DataFrame: by name too
    p = lifelong.load(rd)
    assert p.feature_names == COLS
    assert torch.equal(p.predict(feats[COLS[::-1]]), p.predict(feats.to_numpy()))
    with pytest.raises(ValueError, match="'px7'"):
        p.predict(feats.drop(columns="px7"))


def test_predict_reads_what_training_reads(
    table: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root, df, rd = table["root"], table["df"], table["run"]
    code, want = _predict(rd, root / "new.csv", capsys)
    # the training CSV itself: the label column is dropped by name
    code, rows = _predict(rd, root / "digits.csv", capsys)
    assert code == 0 and len(rows) == len(df) + 1 and rows[:41] == want
    df.iloc[:40].to_parquet(root / "new.parquet")
    assert _predict(rd, root / "new.parquet", capsys) == (0, want)
    # a sweep folder: use runs/<key>, and which exist
    sweep = root / "sweep"
    (sweep / "runs").mkdir(parents=True)
    (sweep / "results.json").write_text("{}")
    (sweep / "runs" / "abc123").symlink_to(rd)
    code, err = _predict(sweep, root / "new.csv", capsys)
    assert code == 2 and "runs/<key>" in err and "abc123" in err


def test_predict_reads_image_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(["cat", "dog"]):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(6):
            a = np.clip(rng.normal(60 + 120 * k, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(tmp_path / "photos" / name / f"{i}.png")
    rd = _train(tmp_path / "photos", tmp_path / "run", strategy="naive")
    (tmp_path / "new").mkdir()
    big = np.clip(rng.normal(180, 20, (16, 16)), 0, 255).astype(np.uint8)
    Image.fromarray(big).convert("RGB").save(tmp_path / "new" / "b.png")  # resized, grey
    Image.open(tmp_path / "photos" / "cat" / "0.png").save(tmp_path / "new" / "a.png")
    code, rows = _predict(rd, tmp_path / "new", capsys)
    assert code == 0 and rows[0] == ["file", "prediction", "class_name"]
    assert [r[0] for r in rows[1:]] == ["a.png", "b.png"]
    assert {r[2] for r in rows[1:]} <= {"cat", "dog"}


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = torch.load(folder / "tensors.pt", weights_only=True)
    return out


def test_export_holds_no_training_samples(
    table: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rd = table["run"]
    meta = json.loads((rd / "model" / "meta.json").read_text())
    manifest = meta["payload"]["manifest"]
    assert manifest["for_prediction"] is False
    assert any("replay" in w for w in manifest["training_samples"])
    x = torch.as_tensor(table["df"][COLS].to_numpy(copy=True))
    held = [t for t in _tensors(rd / "model").values() if t.dim() == 2 and t.shape[1] == 64]
    assert any(bool((t[:1] == x).all(1).any()) for t in held)  # the full save holds rows
    assert main(["export", str(rd), "--out", str(tmp_path / "export")]) == 0
    assert "no training samples" in capsys.readouterr().err
    exported = tmp_path / "export"
    for t in _tensors(exported).values():
        if t.dim() == 2 and t.shape[1] == 64:
            assert not bool((t[:, None, :] == x[None]).all(-1).any())
    manifest = json.loads((exported / "meta.json").read_text())["payload"]["manifest"]
    assert manifest["for_prediction"] is True and manifest["training_samples"] == []
    p, q = lifelong.load(rd), lifelong.load(exported)
    assert torch.equal(p.predict(x), q.predict(x))
    assert q.feature_names == COLS and q.classes == tuple(sorted(NAMES))
    code, rows = _predict(exported, table["root"] / "new.csv", capsys)
    assert code == 0 and rows == _predict(rd, table["root"] / "new.csv", capsys)[1]
    with pytest.raises(ValueError, match="exported for prediction"):
        q.learn(x[:10], ["one"] * 10)
    q.save(tmp_path / "again")  # an export saved again stays an export
    assert json.loads((tmp_path / "again" / "meta.json").read_text())["payload"]["manifest"][
        "for_prediction"
    ]


def test_icarl_export_keeps_its_class_means(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    learner = lifelong.Learner(
        "mlp(hidden=(16,))", "icarl(mem_size=40)", config=TrainConfig(epochs=1)
    )
    for classes in ([0, 1], [2, 3]):
        part = np.isin(y, classes)
        learner.learn(x[part], y[part])
    learner.save(tmp_path / "e", for_prediction=True)
    state = _tensors(tmp_path / "e")
    assert not any("ex_x_" in k for k in state) and any("class_means_" in k for k in state)
    assert torch.equal(lifelong.load(tmp_path / "e").predict(x), learner.predict(x))


def test_target_errors_speak_cli(table: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root = table["root"]
    wide = table["df"].copy()
    wide.insert(3, "zz_label", 0.0)
    wide.to_csv(root / "wide.csv", index=False)
    base = ["compare", "--data", str(root / "wide.csv"), "--strategies", "naive", "--out",
            str(root / "never")]  # fmt: skip
    assert main([*base, "--target", "lable"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'label'" in err and "px63" in err and "..." not in err
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "--target ..." in err and "target=" not in err and "label" in err
    assert main([*base, "--target", "label", "--n-experiences", "7"]) == 2
    assert "pass --classes-per-experience" in capsys.readouterr().err
    with pytest.raises(ValueError, match="target="):  # Python keeps its own wording
        lifelong.data.stream_from_files(root / "wide.csv")


def test_classes_are_names_where_the_data_had_names(table: dict[str, Any]) -> None:
    p = lifelong.load(table["run"])
    assert p.classes == tuple(sorted(NAMES)) and p.class_ids == tuple(range(10))
    learner = lifelong.Learner("mlp(hidden=(8,))", config=TrainConfig(epochs=1))
    learner.learn(np.random.rand(6, 3).astype(np.float32), ["b", "a", "b", "a", "c", "c"])
    assert learner.classes == ("a", "b", "c")
    plain = lifelong.Learner("mlp(hidden=(8,))", config=TrainConfig(epochs=1))
    plain.learn(np.random.rand(4, 3).astype(np.float32), [0, 1, 0, 1])
    assert plain.classes == (0, 1)


def test_learn_matches_dataframe_columns(tmp_path: Path) -> None:
    df = _digits()
    learner = lifelong.Learner("mlp(hidden=(8,))", config=TrainConfig(epochs=1))
    learner.learn(df[COLS].iloc[:100], df["label"].iloc[:100].to_numpy())
    assert learner.feature_names == COLS
    twin = lifelong.Learner.load(learner.save(tmp_path / "l"))
    learner.learn(df[COLS].iloc[100:200], df["label"].iloc[100:200].to_numpy())
    twin.learn(df[COLS[::-1]].iloc[100:200], df["label"].iloc[100:200].to_numpy())
    x = df[COLS].to_numpy()
    assert torch.equal(learner.predict(x), twin.predict(x))
    with pytest.raises(ValueError, match="'px3'"):
        learner.learn(df[COLS].drop(columns="px3").iloc[:10], df["label"].iloc[:10].to_numpy())


def test_deployment_batches_match_columns_by_name() -> None:
    from lifelong.deploy.errors import DeployError
    from lifelong.deploy.schema import check_features

    x = np.arange(6.0).reshape(2, 3)
    want = check_features(x, [3])
    got = check_features(x[:, [2, 0, 1]], [3], ["c", "a", "b"], expected=["a", "b", "c"])
    assert np.array_equal(got, want)
    frame = pd.DataFrame(x[:, ::-1], columns=["c", "b", "a"])
    assert np.array_equal(check_features(frame, [3], expected=["a", "b", "c"]), want)
    with pytest.raises(DeployError, match="missing 1 of its 3: 'c'; 1 unknown: 'z'"):
        check_features(x, [3], ["a", "b", "z"], expected=["a", "b", "c"])


def test_every_strategy_exports_without_samples_and_predicts_the_same(tmp_path: Path) -> None:
    from lifelong.strategies.registry import registry

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    x = (rng.normal(size=(120, 6)) + y[:, None]).astype(np.float32)
    rows = torch.from_numpy(x)
    checked = []
    for name, cls in sorted(registry().items()):
        if not cls.__module__.startswith("lifelong.") or name == "prompt":
            continue  # prompt needs a pretrained backbone (tests/text)
        scenario = "class" if "class" in cls.scenarios else cls.scenarios[0]
        task = {"task": 1} if scenario == "task" else {}
        learner = lifelong.Learner(
            "mlp(hidden=(8,))", name, config=TrainConfig(epochs=1, batch_size=16), scenario=scenario
        )
        for k, classes in enumerate(([0, 1], [2, 3])):
            part = np.isin(y, classes)
            learner.learn(x[part], y[part], task=k if scenario == "task" else None)
        holds = learner.state()["manifest"]["training_samples"]
        assert bool(holds) == (cls.stores_samples or cls.uses_past_data), name
        learner.save(tmp_path / name, for_prediction=True)
        for t in _tensors(tmp_path / name).values():
            if t.dim() == 2 and t.shape[1] == 6:
                assert not bool((t[:, None, :] == rows[None]).all(-1).any()), name
        again = lifelong.load(tmp_path / name)
        assert torch.equal(again.predict(x, **task), learner.predict(x, **task)), name
        checked.append(name)
    assert {"replay", "icarl", "gem", "pnn", "packnet", "adapter", "cumulative"} <= set(checked)
