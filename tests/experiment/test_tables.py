"""The printed comparison table, the runs' display labels and the result tables (issue 14:
sweep rows hide their values, a table too wide for 80 columns, results.parquet missing
without a word)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from lifelong.experiment import store
from lifelong.experiment.labels import row_labels
from lifelong.experiment.store import ResultStore, table_rows
from lifelong.experiment.table import summary_table, terminal_width


def result(strategy: str, params: dict[str, Any], seed: int = 0, acc: float = 0.5) -> dict:
    return {
        "run_id": f"{strategy}-{seed}", "benchmark": "split-digits", "scenario": "class",
        "strategy": strategy, "seed": seed, "status": "ok", "error": None,
        "n_experiences": 2, "accuracy_matrix": [[1.0, 0.0], [0.5, acc]],
        "final_average_accuracy": acc, "average_forgetting": 0.5 - acc / 10,
        "backward_transfer": -0.5, "forward_transfer": -0.05, "train_seconds": 1.25 + seed,
        "eval_seconds": 0.1, "wall_seconds": 1.5, "peak_memory_mb": 453.0 + seed,
        "params": {"lr": 0.01, "epochs": 1, **params},
    }  # fmt: skip


SWEEP = [  # sweep: replay.mem_size: [200, 500], ewc.lambda: [10, 100]; 500 and 100 are defaults
    result("naive", {}),
    result("replay(mem_size=200)", {"replay.mem_size": 200, "replay.policy": "reservoir"}),
    result("replay", {"replay.mem_size": 500, "replay.policy": "reservoir"}),
    result("ewc(lambda=10.0)", {"ewc.lambda": 10.0}),
    result("ewc", {"ewc.lambda": 100.0}),
    result("ewc+lwf", {"ewc.lambda": 100.0, "lwf.alpha": 1.0}),
    result("replay(mem_size=200)+lwf", {"replay.mem_size": 200, "lwf.alpha": 1.0}),
    result("replay+lwf(alpha=2.0)", {"replay.mem_size": 500, "lwf.alpha": 2.0}),
]


def test_every_row_shows_the_values_its_sweep_varied() -> None:
    assert row_labels(SWEEP) == [
        "naive",
        "replay(mem_size=200)",
        "replay(mem_size=500)",
        "ewc(lambda=10.0)",
        "ewc(lambda=100.0)",
        "ewc+lwf",  # the only ewc+lwf row: nothing varies among its kind
        "replay(mem_size=200)+lwf(alpha=1.0)",
        "replay(mem_size=500)+lwf(alpha=2.0)",
    ]
    # a training setting that varies is shown on every row, after the spec
    lrs = [result("naive", {"lr": lr}) for lr in (0.01, 0.05)]
    assert row_labels(lrs) == ["naive [lr=0.01]", "naive [lr=0.05]"]
    # nothing varies: the canonical spec as it is, also beside a failed run (no params)
    ok = result("replay", {"replay.mem_size": 500})
    failed = {**result("replay", {}), "status": "failed"}
    assert row_labels([ok, failed]) == ["replay", "replay"]


def test_the_printed_table_shows_the_hidden_default() -> None:
    table = summary_table(SWEEP)
    assert "replay(mem_size=500) " in table and "ewc(lambda=100.0) " in table
    assert "\nsplit-digits  class     replay  " not in table


def test_results_tables_carry_the_label_and_keep_the_spec() -> None:
    flat = table_rows(SWEEP[:3], ["k0", "k1", "k2"])
    assert [t["label"] for t in flat] == [
        "naive",
        "replay(mem_size=200)",
        "replay(mem_size=500)",
    ]
    assert [t["strategy"] for t in flat] == ["naive", "replay(mem_size=200)", "replay"]


def test_a_narrow_terminal_gets_the_compact_table() -> None:
    rows = [result(r["strategy"], r["params"], seed, 0.4 + seed / 10) for r in SWEEP for seed in (0, 1)]  # fmt: skip
    wide = summary_table(rows)
    assert max(len(line) for line in wide.splitlines()) > 100  # the full layout
    assert summary_table(rows, width=200) == wide  # fits: unchanged
    compact = summary_table(rows, width=80)
    lines = compact.splitlines()
    assert max(len(line) for line in lines) <= 80, compact
    assert lines[0].startswith("split-digits · class")
    assert lines[1].split() == ["strategy", "seeds", "acc", "forget", "BWT", "FWT", "train", "s", "MB"]  # fmt: skip
    naive = lines.index(next(line for line in lines if line.startswith("naive ")))
    assert lines[naive].split()[1:4] == ["2/2", "0.450", "0.455"]
    assert lines[naive + 1].split()[0] == "±0.071"  # std over the two seeds, below
    # one seed: no std lines
    single = summary_table(SWEEP, width=80).splitlines()
    assert not any(line.lstrip().startswith("±") for line in single)


def test_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "72")
    assert terminal_width() == 72
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert terminal_width() is None  # a file or a pipe: the full table


def test_missing_pyarrow_is_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    monkeypatch.setattr(store, "_said", set())
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        paths = ResultStore(tmp_path / name).write_tables(SWEEP, [str(i) for i in range(8)])
        assert [p.name for p in paths] == ["results.csv"]
    err = capsys.readouterr().err
    assert err.count("results.parquet not written: pyarrow is not installed") == 1, err
    assert "lifelong[data]" in err
