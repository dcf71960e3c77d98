"""The user's own data: CSV/Parquet tables, .npz arrays, image folders, disk-backed sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lifelong.config import TrainConfig
from lifelong.data import DiskSet, TensorSet, stream_from_files
from lifelong.experiment.run import RunConfig, run

FEATS = ["a", "b", "c"]


def table(n_per_class: int = 10, seed: int = 0) -> pd.DataFrame:
    """4 string classes, 3 numeric features, a site column (2 domains), a task column."""
    rng = np.random.default_rng(seed)
    names = np.array(["owl", "cat", "dog", "emu"])
    y = np.tile(np.arange(4), n_per_class)
    df = pd.DataFrame(rng.normal(size=(len(y), 3)) + y[:, None] * 3, columns=FEATS)
    df["label"] = names[y]
    df["site"] = np.where(np.arange(len(y)) % 8 < 4, "south", "north")
    df["task"] = np.where(y < 2, "t1", "t0")
    return df


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "animals.csv"
    table().to_csv(path, index=False)
    return path


def rows(s: TensorSet) -> set[tuple[float, ...]]:
    return {(*map(float, x), int(y)) for x, y in zip(s.x, s.y)}


def test_csv_class_stream_maps_string_labels_and_splits_stratified(csv: Path) -> None:
    s = stream_from_files(csv, "class", target="label", features=FEATS, classes_per_experience=2)
    assert s.name == "animals.csv" and s.scenario == "class" and s.n_classes == 4
    assert s.info["class_names"] == ["cat", "dog", "emu", "owl"]
    assert [e.classes for e in s] == [(0, 1), (2, 3)] and s.input_shape == (3,)
    for e in s:  # 10 samples per class: 2 test, 8 train, in every class
        assert torch.bincount(e.test.y).tolist()[min(e.classes) :] == [2, 2]
        assert torch.bincount(e.train.y).tolist()[min(e.classes) :] == [8, 8]
    df = table()
    ids = {n: i for i, n in enumerate(s.info["class_names"])}
    feats = df[FEATS].to_numpy(np.float32)
    want = {(*map(float, f), ids[lab]) for f, lab in zip(feats, df["label"])}
    got = set().union(*(rows(e.train) | rows(e.test) for e in s))
    assert got == want
    again = stream_from_files(
        csv, "class", target="label", features=FEATS, classes_per_experience=2
    )
    assert torch.equal(again[1].test.x, s[1].test.x)  # fixed seed


def test_class_order_by_name_or_id_and_n_experiences(csv: Path) -> None:
    s = stream_from_files(csv, target="label", features=FEATS, class_order=["owl", "emu", "0", "1"], n_experiences=2)  # fmt: skip
    assert [e.classes for e in s] == [(2, 3), (0, 1)]
    with pytest.raises(ValueError, match="'yak' is not a class; expected cat, dog, emu, owl"):
        stream_from_files(csv, target="label", features=FEATS, class_order=["yak", "cat", "dog", "emu"])  # fmt: skip


def test_domain_stream_one_experience_per_value(csv: Path) -> None:
    s = stream_from_files(csv, "domain", target="label", features=FEATS, domain_column="site")
    assert s.info["domains"] == ["south", "north"] and len(s) == 2
    assert all(e.classes == (0, 1, 2, 3) for e in s) and s.n_tasks == 1
    srt = stream_from_files(
        csv, "domain", target="label", features=FEATS, domain_column="site", domain_order="sorted"
    )
    assert srt.info["domains"] == ["north", "south"]
    assert rows(srt[0].train) | rows(srt[0].test) == rows(s[1].train) | rows(s[1].test)


def test_task_stream_from_a_column_or_from_class_groups(csv: Path) -> None:
    s = stream_from_files(csv, "task", target="label", features=FEATS, task_column="task")
    assert s.info["tasks"] == ["t1", "t0"] and [e.task for e in s] == [0, 1]
    assert [e.classes for e in s] == [(0, 3), (1, 2)]  # t1 (cat 0, owl 3) appears first
    s2 = stream_from_files(csv, "task", target="label", features=FEATS, n_experiences=2)
    assert [e.task for e in s2] == [0, 1] and s2[1].train.t.unique().tolist() == [1]


def test_parquet_gives_the_same_stream_as_csv(csv: Path, tmp_path: Path) -> None:
    pq = tmp_path / "animals.parquet"
    table().to_parquet(pq, row_group_size=7)
    a = stream_from_files(csv, "class", target="label", features=FEATS, n_experiences=2)
    b = stream_from_files(pq, "class", target="label", n_experiences=2, features=FEATS)
    for ea, eb in zip(a, b):
        assert torch.equal(ea.train.x, eb.train.x) and torch.equal(ea.test.y, eb.test.y)


def test_npz_with_images_and_task_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 5)
    x = rng.integers(0, 255, (20, 1, 4, 4)).astype(np.uint8)
    np.savez_compressed(tmp_path / "d.npz", x=x, y=y, t=(y >= 2).astype(int))
    s = stream_from_files(tmp_path / "d.npz", "class", n_experiences=2)
    assert s.input_shape == (1, 4, 4) and s[0].train.x.dtype == torch.float32
    t = stream_from_files(tmp_path / "d.npz", "task")
    assert [e.classes for e in t] == [(0, 1), (2, 3)] and t.n_tasks == 2
    np.savez(tmp_path / "bad.npz", x=x, labels=y)
    with pytest.raises(ValueError, match="expected x and y"):
        stream_from_files(tmp_path / "bad.npz")


def test_image_folder_resizes_to_the_first_image(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for cls, size in (("ant", (8, 6)), ("bee", (10, 12))):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(4):
            a = rng.integers(0, 255, (size[1], size[0], 3)).astype(np.uint8)
            Image.fromarray(a).save(tmp_path / "img" / cls / f"{i}.{'png' if i % 2 else 'jpg'}")
    s = stream_from_files(tmp_path / "img", "class", n_experiences=2)
    assert s.info["class_names"] == ["ant", "bee"] and s.input_shape == (3, 6, 8)
    x = torch.cat([s[0].train.x, s[0].test.x])
    assert x.min() >= 0 and x.max() <= 1 and len(x) == 4
    with pytest.raises(ValueError, match="subfolder names"):
        stream_from_files(tmp_path / "img", target="label")


def test_clear_errors_for_bad_columns_and_values(csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"target column 'lable' is not in animals.csv \(did you mean 'label'\?\); its columns are a, b, c, label, site, task"):  # fmt: skip
        stream_from_files(csv, target="lable")
    with pytest.raises(ValueError, match=r"feature columns \['z'\] are not in"):
        stream_from_files(csv, target="label", features=["a", "z"])
    with pytest.raises(ValueError, match="name the label column with target"):
        stream_from_files(csv)
    with pytest.raises(
        ValueError, match="feature column 'site' is not numeric: row 0 .* holds 'south'"
    ):
        stream_from_files(csv, target="label")
    df = table()
    df["b"] = df["b"].astype(object)
    df.loc[5, "b"] = "oops"
    df.to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(ValueError, match=r"feature column 'b' mixes numbers and text: row 5 \(0-based, header excluded\) holds 'oops'"):  # fmt: skip
        stream_from_files(tmp_path / "mixed.csv", target="label", features=FEATS)
    df = table()
    df.loc[3, "label"] = None
    df.to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(
        ValueError, match=r"target column 'label' has a missing value at row 3 \(0-based"
    ):
        stream_from_files(tmp_path / "nolabel.csv", target="label", features=FEATS)
    df = table().iloc[:-3]  # the last 'cat'/'dog'/'emu' rows go; add a lone class
    df = pd.concat([df, df.iloc[:1].assign(label="yak")])
    df.to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(ValueError, match="class 'yak' has only 1 sample; every class needs at least 2"):  # fmt: skip
        stream_from_files(tmp_path / "few.csv", target="label", features=FEATS)
    with pytest.raises(ValueError, match="domain scenario needs domain_column"):
        stream_from_files(csv, "domain", target="label", features=FEATS)
    with pytest.raises(ValueError, match="domain_column is for the domain scenario"):
        stream_from_files(csv, "class", target="label", domain_column="site")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="unsupported data file 'x.json'"):
        stream_from_files(tmp_path / "x.json")


def test_disk_backed_stream_matches_in_memory_and_reuses_its_cache(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    table(n_per_class=30).to_csv(path, index=False)
    opts = dict(target="label", features=FEATS, n_experiences=2, num_workers=0)
    mem = stream_from_files(path, in_memory=True, **opts)
    disk = stream_from_files(path, memory_limit_mb=1e-4, **opts)  # 1e-4 MB: forces disk
    assert disk.info["in_memory"] is False and mem.info["in_memory"] is True
    for m, d in zip(mem, disk):
        assert isinstance(d.train, DiskSet) and isinstance(d.test, TensorSet)
        assert torch.equal(d.train.x, m.train.x) and torch.equal(d.train.y, m.train.y)
        assert torch.equal(d.test.x, m.test.x)
        mask = m.train.y == m.train.y[-1]
        assert torch.equal(d.train[mask].x, m.train[mask].x)  # masks, slices as on TensorSet
        assert torch.equal(d.train[3:9:2].x, m.train[3:9:2].x) and len(d.train[:0]) == 0
    (cache,) = (tmp_path / ".lifelong-cache").iterdir()
    stamp = cache.stat().st_mtime_ns
    capped = stream_from_files(path, in_memory=False, max_test_per_experience=5, **opts)
    assert [len(e.test) for e in capped] == [5, 5]
    stream_from_files(path, in_memory=False, **opts)
    assert cache.stat().st_mtime_ns == stamp  # same options: the cache is reused


def test_disk_batches_use_persistent_workers_across_epochs_and_experiences(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(200, 5)).astype(np.float32), y=np.repeat(np.arange(4), 50))
    s = stream_from_files(path, in_memory=False, n_experiences=2, num_workers=1)
    a, b = s[0].train, s[1].train
    assert isinstance(a, DiskSet) and a._pool is b._pool
    pids = []
    for part in (a, b, a):
        order = torch.randperm(len(part))
        seen = torch.cat([batch.y for batch in part.batches(order, 16)])
        assert sorted(seen.tolist()) == sorted(part.y.tolist())
        loader = a._pool.loader  # type: ignore[union-attr]
        pids.append(sorted(w.pid for w in loader._iterator._workers))  # type: ignore[union-attr]
    assert pids[0] == pids[1] == pids[2] and pids[0][0] != os.getpid()
    first = next(a.batches(torch.arange(len(a)), 8))
    assert torch.equal(first.x, a.x[:8])


def test_run_trains_from_files_on_disk_and_in_memory(csv: Path) -> None:
    data = {"path": str(csv), "target": "label", "features": FEATS, "n_experiences": 2}
    rows_ = [
        run(
            RunConfig(
                strategy="naive",
                train=TrainConfig(epochs=1),
                data={**data, "in_memory": mem, "num_workers": 0},
            )
        )
        for mem in (True, False)
    ]
    assert rows_[0]["benchmark"] == "animals.csv" and rows_[0]["n_experiences"] == 2
    assert rows_[0]["accuracy_matrix"] == rows_[1]["accuracy_matrix"]


def test_compare_flags_become_the_data_option(
    csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lifelong.cli import _data_overrides, build_parser, main
    from lifelong.experiment.config import load_config

    argv = ["compare", "--data", str(csv), "--target", "label", "--features", "a,b,c"]
    argv += ["--class-order", "3,owl,1,0", "--n-experiences", "2", "--data-dir", "/tmp/x"]
    over = _data_overrides(build_parser().parse_args(argv))
    assert over == {
        "data_dir": "/tmp/x",
        "data": {"path": str(csv), "target": "label", "features": FEATS,
                 "class_order": [3, "owl", 1, 0], "n_experiences": 2},
    }  # fmt: skip
    (cfg,) = load_config(None, {**over, "strategies": ("naive",), "seeds": (0,)}).run_configs()
    assert cfg.data == over["data"] and cfg.data_dir == "/tmp/x" and cfg.scenario == "class"
    assert main(["compare", "--target", "label"]) == 2
    assert "--target needs --data PATH" in capsys.readouterr().err
