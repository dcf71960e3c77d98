"""The result store: run keys, atomic files, per-run folders, CSV/Parquet tables."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pandas as pd
import pytest

from lifelong.config import TrainConfig
from lifelong.experiment.executors import failed_row
from lifelong.experiment.run import RunConfig
from lifelong.experiment.store import (
    ROW_FIELDS,
    ResultStore,
    read_json,
    run_key,
    table_rows,
    write_json,
)


def test_run_key_is_stable_and_ignores_device_and_threads():
    c = RunConfig(benchmark="synthetic", strategy="replay(mem_size=100)", seed=1)
    assert run_key(c) == run_key(
        RunConfig(benchmark="synthetic", strategy="replay(mem_size=100)", seed=1)
    )
    assert run_key(c) == run_key(replace(c, threads=4, device="cuda"))
    keys = {run_key(replace(c, **kw)) for kw in
            ({"seed": 2}, {"train": TrainConfig(lr=0.1)}, {"strategy": "naive"},
             {"train": TrainConfig(epochs=3)}, {"data": {"path": "a"}})}  # fmt: skip
    assert len(keys) == 5 and run_key(c) not in keys


def test_json_files_are_written_atomically(tmp_path):
    path = write_json(tmp_path / "a" / "x.json", {"k": [1, 2]})
    assert read_json(path) == {"k": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temporary left
    path.write_text("{broken")
    assert read_json(path) is None and read_json(tmp_path / "missing.json") is None


def test_prepare_drops_a_stale_row_and_done_needs_status_ok(tmp_path):
    store = ResultStore(tmp_path)
    c = RunConfig(benchmark="synthetic")
    key = run_key(c)
    store.prepare(key, c)
    assert json.loads((store.run_dir(key) / "config.json").read_text())["benchmark"] == "synthetic"
    assert store.row(key) is None and store.done(key) is None
    store.save(key, failed_row(c, "boom"))
    assert store.row(key)["status"] == "failed" and store.done(key) is None
    store.prepare(key, c)  # a new attempt
    assert store.row(key) is None
    store.save(key, {**failed_row(c, ""), "status": "ok"})
    assert store.done(key)["status"] == "ok"
    assert "queued" in (store.run_dir(key) / "run.log").read_text()


def _ok_row(seed: int, acc: float, extra: dict) -> dict:
    return {
        "run_id": f"id{seed}", "benchmark": "synthetic", "scenario": "class",
        "strategy": "replay(mem_size=100)", "seed": seed, "status": "ok", "error": None,
        "n_experiences": 2, "accuracy_matrix": [[1.0, 0.0], [0.5, acc]],
        "final_average_accuracy": (0.5 + acc) / 2, "average_forgetting": 0.5,
        "backward_transfer": -0.5, "forward_transfer": None, "train_seconds": 1.25,
        "eval_seconds": 0.1, "wall_seconds": 1.5, "peak_memory_mb": 300.0,
        "params": {"lr": 0.01, "epochs": 1, "online": False, **extra},
    }  # fmt: skip


def _same(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if isinstance(b, float) or isinstance(a, float):
        return a == pytest.approx(b, rel=1e-12)
    return a == b


def test_tables_read_back_with_pandas_equal_results_json(tmp_path):
    pytest.importorskip("pyarrow")  # the `data` extra
    rows = [
        _ok_row(0, 0.75, {"replay.mem_size": 100, "hidden": [400, 400]}),
        _ok_row(1, 1 / 3, {"replay.mem_size": 100.5, "hidden": [400, 400]}),
        failed_row(RunConfig(benchmark="synthetic", seed=2), "ValueError: boom"),
    ]
    store = ResultStore(tmp_path)
    store.write_results(rows, {"schema_version": 1})
    paths = store.write_tables(rows, ["k0", "k1", "k2"])
    assert [p.name for p in paths] == ["results.csv", "results.parquet"]
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    for df in (pd.read_csv(paths[0]), pd.read_parquet(paths[1])):
        assert len(df) == 3 and list(df["run_key"]) == ["k0", "k1", "k2"]
        for i, run in enumerate(runs):
            got = df.iloc[i].to_dict()
            for f in ROW_FIELDS:
                assert _same(got[f], run[f]), (f, got[f], run[f])
            m = got["accuracy_matrix"]
            assert (json.loads(m) if isinstance(m, str) else None) == run["accuracy_matrix"]
            for k, v in run["params"].items():
                cell = got[f"params.{k}"]
                want = json.dumps(v) if isinstance(v, (list, dict)) else v
                assert _same(cell, want), (k, cell, want)


def test_table_columns_have_one_type_each():
    rows = [_ok_row(0, 0.5, {"x": 1}), _ok_row(1, 0.5, {"x": 2.5}), _ok_row(2, 0.5, {"x": "a"})]
    assert [t["params.x"] for t in table_rows(rows[:2])] == [1.0, 2.5]
    assert [t["params.x"] for t in table_rows(rows)] == ["1", "2.5", "a"]
