"""The `lifelong` command: help without torch, listings, compare, results.json, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lifelong.cli import main

RUN_KEYS = {
    "run_id",
    "benchmark",
    "scenario",
    "strategy",
    "params",
    "seed",
    "status",
    "error",
    "n_experiences",
    "accuracy_matrix",
    "final_average_accuracy",
    "average_forgetting",
    "backward_transfer",
    "forward_transfer",
    "train_seconds",
    "eval_seconds",
    "wall_seconds",
    "peak_memory_mb",
}
TOP_KEYS = {
    "schema_version",
    "lifelong_version",
    "torch_version",
    "device",
    "threads",
    "git_commit",
    "runs",
}


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom lifelong.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "compare" in out.stdout


def test_listings_one_line_each(capsys):
    assert main(["benchmarks"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("split-mnist-5k ") for line in lines)
    assert main(["strategies"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert {line.split()[0] for line in lines} >= {"naive", "joint", "cumulative"}


def test_compare_writes_results_json(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "compare",
            "--benchmark",
            "synthetic",
            "--strategies",
            "naive,cumulative",
            "--seeds",
            "0,1",
            "--epochs",
            "1",
            "--lr",
            "0.05",
            "--out",
            str(out),
            "--workers",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "cumulative" in table and "±" in table
    doc = json.loads((out / "results.json").read_text())
    assert set(doc) == TOP_KEYS
    assert doc["schema_version"] == 1 and doc["device"] == "cpu"
    assert len(doc["runs"]) == 4
    for r in doc["runs"]:
        assert set(r) == RUN_KEYS
        assert r["status"] == "ok" and r["error"] is None
        assert r["scenario"] == "class" and r["n_experiences"] == 3
        assert all(0.0 <= a <= 1.0 for row in r["accuracy_matrix"] for a in row)
        assert r["peak_memory_mb"] > 10 and r["train_seconds"] > 0
    assert {r["strategy"] for r in doc["runs"]} == {"naive", "cumulative"}
    # run ids are stable per config and differ across seeds/strategies
    assert len({r["run_id"] for r in doc["runs"]}) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--benchmark", "nope"], "unknown benchmark 'nope'"),
        (["--scenario", "domain"], "does not define the 'domain' scenario"),
        (["--scenario", "sideways"], "unknown scenario 'sideways'"),
        (["--strategies", "naive,bogus"], "unknown strategy 'bogus'"),
        (["--strategies", "naive,cumulative(x=1)"], "has no parameter 'x'"),
        (["--strategies", "naive,"], "empty entry"),
    ],
)
def test_compare_errors(args, message, capsys, tmp_path):
    code = main(["compare", "--out", str(tmp_path), "--quiet", *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_failed_run_keeps_its_row(tmp_path, capsys):
    # cuda on a CPU-only machine fails inside the run; the row records the failure
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    code = main(
        [
            "compare",
            "--benchmark",
            "synthetic",
            "--strategies",
            "naive",
            "--seeds",
            "0",
            "--device",
            "cuda",
            "--out",
            str(tmp_path),
            "--quiet",
            "--workers",
            "1",
        ]
    )
    assert code == 1
    doc = json.loads((tmp_path / "results.json").read_text())
    [row] = doc["runs"]
    assert row["status"] == "failed" and "CUDA is not available" in row["error"]


def test_bad_data_fails_before_any_run(tmp_path, capsys):
    csv = tmp_path / "mixed.csv"
    rows = ["a,b,label"] + [f"{i},{i % 3},{'x' if i % 2 else 'y'}" for i in range(40)]
    rows[6] = "5,oops,x"
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    code = main(["compare", "--data", str(csv), "--target", "label", "--strategies", "naive",
                 "--seeds", "0", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 2
    assert "feature column 'b' mixes numbers and text" in capsys.readouterr().err
    assert not (out / "results.json").exists()
    code = main(["compare", "--data", str(csv), "--target", "lable", "--out", str(out), "--quiet"])
    assert code == 2 and "target column 'lable' is not in mixed.csv" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly() -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "lifelong.cli", "strategies"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err, err
