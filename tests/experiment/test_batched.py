"""`run_batched`: S runs trained together on stacked parameters give, run by run, the rows
that separate `run()` calls give (bit for bit on CPU), and unsupported configs are refused."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.config import TrainConfig
from lifelong.data import get_benchmark
from lifelong.data.experience import Stream
from lifelong.experiment.batched import (
    StackedMLP,
    logit_gradient,
    lr_groups,
    run_batched,
    train_batched,
)
from lifelong.experiment.run import RunConfig, run_learner
from lifelong.models import build_model

TIMING = {"train_seconds", "eval_seconds", "wall_seconds", "peak_memory_mb"}


def assert_same_run(
    batched: tuple[nn.Module, dict[str, Any]], config: RunConfig, stream: Stream
) -> None:
    """Same accuracy matrix, metrics, ids and params as `run(config)`; same trained
    weights, bit for bit."""
    learner, single = run_learner(config, stream)
    model, row = batched
    assert set(row) == set(single) | {"batched_runs"}
    for key in set(single) - TIMING:
        assert row[key] == single[key], key
    assert learner.model is not None
    want, got = learner.model.state_dict(), model.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name


@pytest.mark.parametrize(
    ("scenario", "strategy"),
    [("class", "naive"), ("class", "joint"), ("class", "cumulative"), ("domain", "naive")],
)
def test_batched_rows_equal_separate_runs(scenario: str, strategy: str) -> None:
    stream = get_benchmark("synthetic", scenario)
    config = RunConfig(
        benchmark="synthetic", scenario=scenario, strategy=strategy, train=TrainConfig(epochs=2)
    )
    seeds = [3, 0, 7]
    models, rows = train_batched(config, seeds, stream)
    assert [r["seed"] for r in rows] == seeds
    assert all(r["batched_runs"] == 3 for r in rows)
    for seed, pair in zip(seeds, zip(models, rows)):
        assert_same_run(pair, replace(config, seed=seed), stream)
    assert len({str(r["accuracy_matrix"]) for r in rows}) == 3  # the seeds really differ


def test_per_run_learning_rates_match_separate_runs() -> None:
    stream = get_benchmark("synthetic", "class")
    config = RunConfig(
        benchmark="synthetic", strategy="naive", train=TrainConfig(epochs=1, weight_decay=1e-3)
    )
    seeds, lrs = [0, 1, 0, 2], [0.1, 0.01, 0.01, 0.1]
    models, rows = train_batched(config, seeds, stream, lrs=lrs)
    for seed, lr, pair in zip(seeds, lrs, zip(models, rows)):
        assert pair[1]["params"]["lr"] == lr
        assert_same_run(pair, replace(config, seed=seed, train=config.train.replace(lr=lr)), stream)
    assert rows[0]["run_id"] != rows[2]["run_id"]  # same seed, other lr: another run


def test_momentum_free_sgd_and_online_streams() -> None:
    stream = replace(get_benchmark("synthetic", "class"), online=True)
    config = RunConfig(benchmark="synthetic", strategy="naive", train=TrainConfig(momentum=0.0))
    models, rows = train_batched(config, [1, 2], stream)
    for seed, pair in zip([1, 2], zip(models, rows)):
        assert pair[1]["params"]["online"] is True and pair[1]["params"]["batch_size"] == 10
        assert_same_run(pair, replace(config, seed=seed), stream)


def test_stacked_gradients_equal_autograd_of_each_model() -> None:
    stream = get_benchmark("synthetic", "class")
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(build_model("mlp", stream, hidden=(8, 5)))
    net = StackedMLP.stack(models)
    x, y = torch.randn(2, 12, 16), torch.randint(0, 6, (2, 12))
    acts = net.forward(x)
    grads = net.gradients(acts, logit_gradient(acts[-1], y))
    for s, model in enumerate(models):
        model.zero_grad()
        F.cross_entropy(model(x[s]), y[s]).backward()
        want = [p.grad for p in model.parameters()]
        assert len(want) == len(grads)
        for g, w in zip(grads, want):
            assert w is not None and torch.equal(g[s], w)


def test_lr_groups_are_contiguous_runs_of_equal_values() -> None:
    assert lr_groups([0.1, 0.1, 0.2, 0.1]) == [
        (slice(0, 2), 0.1),
        (slice(2, 3), 0.2),
        (slice(3, 4), 0.1),
    ]


@pytest.mark.parametrize(
    ("changes", "scenario", "message"),
    [
        ({"strategy": "ewc(lambda=10)"}, "class", "ewc"),
        ({"strategy": "replay(mem_size=20)"}, "class", "replay"),
        ({"model": "mlp(dropout=0.5)"}, "class", "dropout"),
        ({"model": "resnet18"}, "class", "resnet18"),
        ({"head": "grow"}, "class", "grow"),
        ({"train": TrainConfig(optimizer="adam")}, "class", "adam"),
        ({"train": TrainConfig(precision="bf16")}, "class", "bf16"),
        ({"train": TrainConfig(compile=True)}, "class", "compile"),
        ({}, "task", "task"),
    ],
)
def test_unsupported_configs_are_refused(
    changes: dict[str, Any], scenario: str, message: str
) -> None:
    stream = get_benchmark("synthetic", scenario)
    config = replace(RunConfig(benchmark="synthetic", scenario=scenario), **changes)
    with pytest.raises(ValueError, match=message):
        run_batched(config, [0, 1], stream)


def test_bad_seed_and_lr_lists_are_refused() -> None:
    stream = get_benchmark("synthetic", "class")
    config = RunConfig(benchmark="synthetic", strategy="naive")
    with pytest.raises(ValueError, match="at least one seed"):
        run_batched(config, [], stream)
    with pytest.raises(ValueError, match="one learning rate per seed"):
        run_batched(config, [0, 1], stream, lrs=[0.1])
    with pytest.raises(ValueError, match="> 0"):
        run_batched(config, [0, 1], stream, lrs=[0.1, -1.0])


@pytest.mark.slow
def test_reference_protocol_on_split_mnist_matches_separate_runs() -> None:
    stream = get_benchmark("split-mnist-5k", "class")
    config = RunConfig(strategy="naive")  # the reference protocol
    seeds = [0, 1, 2, 3]
    models, rows = train_batched(config, seeds, stream)
    for seed, pair in zip(seeds, zip(models, rows)):
        assert_same_run(pair, replace(config, seed=seed), stream)
        row = pair[1]
        assert 0.15 < row["final_average_accuracy"] < 0.3  # naive forgets in class-IL
