"""Hybrids by `+`: any combination runs without strategy-specific glue; replacing one
exclusive hook twice is refused with a message naming both strategies and the hook."""

from __future__ import annotations

import pytest

from lifelong.config import TrainConfig
from lifelong.experiment.run import RunConfig, run
from lifelong.strategies import build_strategies, canonical_spec

FAST = dict(
    benchmark="synthetic",
    train=TrainConfig(epochs=1, batch_size=16, lr=0.05, momentum=0.0),
    model="mlp(hidden=(32,))",
)


@pytest.mark.parametrize(
    "spec",
    [
        "replay(mem_size=60)+lwf(alpha=1)",
        "ewc+replay(mem_size=60)",
        "si+der(mem_size=60)",
        "derpp+er-ace",
        "mas+agem",
    ],
)
def test_hybrids_run_and_keep_their_spec(spec: str) -> None:
    strategies = build_strategies(spec)
    assert canonical_spec(strategies).count("+") == spec.count("+")
    row = run(RunConfig(**FAST, strategy=spec))
    assert row["status"] == "ok" and row["strategy"] == canonical_spec(strategies)
    assert all(f"{s.name}." in " ".join(row["params"]) for s in strategies)


def test_hybrid_changes_the_outcome_of_its_parts() -> None:
    replay = run(RunConfig(**FAST, strategy="replay(mem_size=60)"))["accuracy_matrix"]
    both = run(RunConfig(**FAST, strategy="replay(mem_size=60)+lwf(alpha=1)"))["accuracy_matrix"]
    assert both != replay


@pytest.mark.parametrize(
    ("spec", "hook"),
    [
        ("gem+agem", "grads"),
        ("icarl+er-ace", "loss"),
        ("cumulative+gdumb", "train_data"),
        ("icarl+packnet", "predict"),
    ],
)
def test_replacing_a_hook_twice_is_refused(spec: str, hook: str) -> None:
    a, b = spec.split("+")
    with pytest.raises(
        ValueError, match=rf"cannot combine {a} \+ {b}: each replaces the '{hook}' hook"
    ):
        build_strategies(spec)
