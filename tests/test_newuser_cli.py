"""What a new user tripped over on the command line (issue 14): runs without `--out`
resume, the README's own model example runs as written, hyper-parameters are
discoverable, an experiment file's paths are read against its folder, `dir(lifelong)`,
tuning on one's own data, and Ctrl-C said once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lifelong
import lifelong.experiment.compare as compare
from lifelong.cli import main
from lifelong.experiment.config import ConfigError, load_config
from lifelong.strategies.registry import registry
from lifelong.strategy_help import summary

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = ["--benchmark", "synthetic", "--seeds", "0", "--epochs", "1"]


def readme_section(title: str) -> str:
    return README.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_dir_lists_the_public_api():
    names = dir(lifelong)
    assert {"Learner", "TrainConfig", "run", "load", "deploy", "data"} <= set(names)
    assert "_LAZY" not in names and "annotations" not in names
    assert lifelong.deploy.__name__ == "lifelong.deploy"  # listed, so reachable


def test_strategies_name_prints_docstring_and_every_hyper_parameter(capsys):
    assert main(["strategies", "replay"]) == 0
    out = capsys.readouterr().out
    assert "Experience replay" in out and "When:" in out  # the whole docstring
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert re.search(r"int\s+500\s+>= 0", rows["mem_size"])
    assert re.search(r"int\s+32\s+>= 1", rows["replay_batch_size"])
    assert "reservoir" in rows["policy"] and "herding" in rows["policy"]
    assert "replay(mem_size=500,replay_batch_size=32,policy=reservoir)" in out
    assert main(["strategies", "ewc"]) == 0
    assert re.search(r"lambda\s+float\s+50.0\s+>= 0", capsys.readouterr().out)


def test_strategies_unknown_name_suggests_the_close_one(capsys):
    assert main(["strategies", "rplay"]) == 2
    assert "did you mean replay" in capsys.readouterr().err


def test_strategy_list_is_not_cut_when_written_to_a_file(capsys):
    assert main(["strategies"]) == 0  # capsys: not a terminal
    out = capsys.readouterr().out
    longest = max(registry().values(), key=lambda c: len(summary(c.__doc__)))
    assert len(summary(longest.__doc__)) > 110  # what the listing used to cut at
    assert summary(longest.__doc__) in out and "…" not in out


def test_ctrl_c_says_interrupted_once(tmp_path, monkeypatch, capsys):
    class CtrlC:
        def run(self, tasks, listener):
            raise KeyboardInterrupt

    monkeypatch.setattr(compare, "make_executor", lambda *a, **k: CtrlC())
    assert main(["compare", *FAST, "--strategies", "naive", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "interrupted" in line.split(":")[0]] == [
        line for line in err.splitlines() if line.startswith("interrupted: 0 of 1 runs saved")
    ] and err.count("\ninterrupted") == 1, err
    assert "run the same command again to resume" in err


def test_a_command_without_out_resumes_in_the_folder_it_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["compare", *FAST, "--strategies", "naive", "--workers", "1"]
    assert main(args) == 0
    err = capsys.readouterr().err
    [folder] = os.listdir(tmp_path / "runs")
    assert re.fullmatch(r"synthetic-[0-9a-f]{8}", folder) and f"runs/{folder}" in err
    assert main(args) == 0
    assert "1 already done, 0 to run" in capsys.readouterr().err
    other = load_config(None, {"benchmark": "synthetic", "strategies": "naive", "lr": 0.05})
    assert other.default_out(None) != os.path.join("runs", folder)  # another grid, elsewhere


def test_experiment_file_paths_are_read_against_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sales.csv").write_text("a,label\n1,x\n2,y\n")
    (tmp_path / "data" / "d2.yaml").write_text(
        "data: {path: sales.csv, target: label}\nout: runs/d2\nstrategies: [naive]\n"
    )
    exp = load_config("data/d2.yaml")
    assert exp.data is not None and exp.data["path"] == os.path.join("data", "sales.csv")
    assert exp.default_out("data/d2.yaml") == os.path.join("runs", "d2")  # output: here
    (tmp_path / "data" / "d3.yaml").write_text("data: {path: nothere.csv, target: label}\n")
    looked = str(tmp_path / "data" / "nothere.csv")
    with pytest.raises(ConfigError, match=f"does not exist; looked for {re.escape(looked)}"):
        load_config("data/d3.yaml")
    (tmp_path / "data" / "d4.yaml").write_text("data: {path: old.csv, target: label}\n")
    (tmp_path / "old.csv").write_text("a,label\n1,x\n")  # written for the current folder
    with pytest.raises(ConfigError, match=r"current folder's 'old.csv' write '\.\./old.csv'"):
        load_config("data/d4.yaml")


def test_tune_takes_the_users_own_data(tmp_path, monkeypatch, capsys):
    pytest.importorskip("optuna")  # the `tune` extra; CI installs every extra
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)) + np.repeat(np.eye(4), 30, axis=0) * 3
    rows = [",".join(map(str, r)) + f",c{i // 30}" for i, r in enumerate(x)]
    Path("mine.csv").write_text("a,b,c,d,label\n" + "\n".join(rows) + "\n")
    args = ["tune", "--data", "mine.csv", "--target", "label", "--classes-per-experience", "2",
            "--strategy", "ewc", "--param", "lambda=log:1:100", "--trials", "1",
            "--epochs", "1", "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("ewc(lambda=")
    assert (tmp_path / "runs" / "tune-mine-class-ewc" / "best.json").is_file()
    assert main([*args, "--benchmark", "synthetic"]) == 2
    assert "either --benchmark or --data" in capsys.readouterr().err


@pytest.mark.slow
def test_readme_model_example_runs_as_written(tmp_path):
    """The README's `mypkg/nets.py` and its command, in a fresh folder, no PYTHONPATH."""
    section = readme_section("Your own model")
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    [command] = re.findall(r"```bash\n(lifelong compare .*?)\n```", section, re.S)
    work = tmp_path / "work"
    path = work / code.splitlines()[0].removeprefix("# ").strip()
    path.parent.mkdir(parents=True)
    path.write_text(code)
    spec = re.search(r"--model '([^']+)'", command)
    strategies = re.search(r"--strategies (\S+)", command)
    assert spec and strategies and "adapter" in strategies[1]
    # as the installed `lifelong` script starts: its own folder on sys.path, not the current
    script = tmp_path / "bin" / "lifelong_script.py"
    script.parent.mkdir()
    script.write_text(
        "import sys\nfrom lifelong.cli import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, str(script), "compare", "--model", spec[1],
           "--strategies", strategies[1], *FAST, "--workers", "2", "--threads", "1"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout
    assert all(f" {s} " in table for s in strategies[1].split(","))
