"""`lifelong advise`: the shortlist obeys the constraints, evidence matches the results
tables, prompts only on a terminal, and a small --verify writes results.json."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lifelong.advise import constraints as cons
from lifelong.advise import evidence, needed, rules, verify
from lifelong.advise.command import load_catalogue
from lifelong.cli import main

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue()
GRID = list(
    itertools.product(
        ("none", 100, "all"),  # keep_data
        (0.0, 30.0, None),  # retention_days
        (False, True),  # generated_ok
        (False, True),  # task ids at prediction
        (None, "mlp"),  # backbone
        cons.PRIORITIES,
        cons.SCENARIOS,
    )
)


@pytest.mark.parametrize("keep,days,gen,tids,backbone,priority,scenario", GRID)
def test_shortlist_obeys_every_constraint(keep, days, gen, tids, backbone, priority, scenario):
    c = cons.Constraints(
        keep_data=keep, retention_days=days, generated_ok=gen, task_ids_at_prediction=tids,
        backbone=backbone, priority=priority, scenario=scenario,
    )  # fmt: skip
    advice = rules.shortlist(c, CATALOGUE, evidence.load(scenario))
    assert advice.entries[0].spec == "naive"
    assert 3 <= len(advice.entries) <= 1 + rules.MAX_METHODS
    for e in advice.entries:
        assert rules.violations(e.spec, c, CATALOGUE) == [], (e.spec, c)
        assert e.reason and e.evidence
    if c.memory_cap == 0:
        assert any(why.startswith("no memory:") for _, why in advice.ruled_out)
    if days == 0:
        assert "no memory: retention is 0 days" in [why for _, why in advice.ruled_out]


def test_keep_none_stores_no_real_samples():
    c = cons.Constraints(keep_data="none", generated_ok=True, scenario="class")
    advice = rules.shortlist(c, CATALOGUE, evidence.load("class"))
    fams = {rules.family(n, CATALOGUE[n]) for e in advice.entries for n, _ in rules.parts(e.spec)}
    assert "memory" not in fams and "generative" in fams


def test_memory_capped_and_architectural_with_task_ids():
    c = cons.Constraints(keep_data=200, task_ids_at_prediction=True, scenario="task")
    specs = [e.spec for e in rules.shortlist(c, CATALOGUE, evidence.load("task")).entries]
    assert any(s.split("(")[0] in ("pnn", "packnet") for s in specs), specs
    assert any("mem_size=200" in s for s in specs), specs


def test_shipped_evidence_matches_the_results_tables():
    for scenario in cons.SCENARIOS:
        results = json.loads((ROOT / "benchmarks/results" / scenario / "results.json").read_text())
        shipped = evidence.load(scenario)
        assert shipped is not None
        expected = evidence.summarize(results, train_samples=shipped["train_samples"])
        assert shipped == expected
        assert shipped["strategies"]["naive"]["runs"] == 3


def test_resolve_flags_file_prompt_default():
    answers = iter(["300", "", "yes"])
    c = cons.resolve(
        {"priority": "retain"}, {"backbone": "mlp"}, interactive=True,
        input_fn=lambda prompt: next(answers, ""),
    )  # fmt: skip
    assert (c.keep_data, c.retention_days, c.generated_ok) == (300, None, True)
    assert (c.priority, c.backbone) == ("retain", "mlp")
    d = cons.resolve({"keep_data": "none"}, interactive=False)
    assert d.memory_cap == 0 and d.retention_days == 0 and d.priority == "balanced"
    assert cons.parse_period("12h") == 0.5 and cons.parse_period("1y") == 365


def test_stage2_verdicts():
    ev = evidence.load("class")
    cost = needed.from_evidence(ev, 40000)
    assert cost is not None and cost.samples == 40000
    yearly, _ = needed.assess(cons.Constraints(update_every="365d"), cost, ev)
    daily, lines = needed.assess(cons.Constraints(update_every="1d"), cost, ev)
    limited, _ = needed.assess(cons.Constraints(keep_data=100, update_every="1d"), cost, ev)
    tight, _ = needed.assess(cons.Constraints(update_every="1h", budget_seconds=0.01), cost, ev)
    assert (yearly, daily, limited, tight) == (False, False, True, True)
    assert any("stage 2" in x for x in lines)


def test_no_prompt_when_stdin_is_not_a_terminal():
    out = subprocess.run(
        [sys.executable, "-m", "lifelong.cli", "advise", "--update-every", "1d"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "?" not in out.stdout.split("Is continual learning needed?")[0]
    assert "1. naive" in out.stdout and "[" not in out.stderr


def test_verify_on_synthetic_writes_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(verify, "ISOLATE", False)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    argv = ["advise", "--benchmark", "synthetic", "--scenario", "class", "--keep-data", "60",
            "--verify", "--epochs", "1", "--tune-trials", "2", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = captured.out
    tuned = [line for line in captured.err.splitlines() if line.strip().startswith("tuned ")]
    assert tuned, captured.err  # the regularizer of the shortlist got its trials
    assert (
        tmp_path / f"tune-{tuned[0].split()[1].split('(')[0].rstrip(':')}" / "best.json"
    ).exists()
    rows = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["strategy"].split("(")[0] for r in rows} >= {"naive", "joint"}
    assert "winner:" in out and "paste: lifelong compare --strategies 'naive," in out
