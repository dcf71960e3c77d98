"""`lifelong simulate --data FILE`: your own table replayed as the production stream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from lifelong.simulate.streams import from_file  # noqa: E402


@pytest.fixture
def table(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = np.where(x[:, 0] > 0, "yes", "no")
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": y, "when": np.arange(n)[::-1]})
    df["text"] = [f"row number {i}" for i in range(n)]
    path = tmp_path / "mine.csv"
    df.drop(columns=["text"]).to_csv(path, index=False)
    df.to_csv(tmp_path / "texts.csv", index=False)
    return path


def test_rows_in_time_order_labels_as_ids(table: Path) -> None:
    df = pd.read_csv(table)
    s = from_file(table, "label", time_column="when", n=300, drift_at=[150])
    assert s.x.shape == (300, 2) and s.x.dtype == np.float32 and s.drifts == (150,)
    newest_last = df.iloc[::-1].reset_index(drop=True)  # "when" counts down in the file
    assert np.array_equal(s.x[:, 0], newest_last["a"].to_numpy(np.float32)[:300])
    assert s.info["classes"] == ["no", "yes"]
    assert np.array_equal(s.y, (newest_last["label"][:300] == "yes").to_numpy().astype(int))
    in_file = from_file(table, "label")
    assert np.array_equal(in_file.x[:, 0], df["a"].to_numpy(np.float32))
    with pytest.raises(ValueError, match="inside the 400 rows"):
        from_file(table, "label", drift_at=[400])
    with pytest.raises(ValueError, match="no such file"):
        from_file(table.with_name("nope.csv"), "label")


def test_a_text_column_is_read_as_code_points(table: Path) -> None:
    s = from_file(table.with_name("texts.csv"), "label", text_column="text", n=5)
    first = "".join(chr(int(c)) for c in s.x[0] if c)
    assert first == "row number 0" and s.info["text_column"] == "text"


def test_cli_replays_the_file(table: Path, tmp_path: Path, capsys) -> None:
    from lifelong.cli import main

    out = tmp_path / "sim"
    args = ["simulate", "--data", str(table), "--target", "label", "--time-column", "when",
            "--warmup", "100", "--batch-size", "50", "--policy", "stateful", "--epochs", "1",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    result = json.loads((out / "simulation.json").read_text())
    assert result["stream"]["name"] == "mine" and result["stream"]["rows"] == 400
    assert result["policies"]["stateful"]["updates"] >= 1
    assert main(["simulate", "--target", "label"]) == 2
    assert "--target goes with --data FILE" in capsys.readouterr().err
    assert main(["simulate", "--data", str(table)]) == 2
    assert "--data needs --target" in capsys.readouterr().err
