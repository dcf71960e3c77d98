"""The quadratic regularizers follow a classifier head that grows with new classes."""

from __future__ import annotations

import pytest
import torch

from lifelong.config import TrainConfig
from lifelong.experiment.run import RunConfig, run
from lifelong.strategies import build_strategies

FAST = dict(
    benchmark="synthetic",
    train=TrainConfig(epochs=1, batch_size=16, lr=0.05, momentum=0.0),
    head="grow",
)


@pytest.mark.parametrize("name", ["ewc", "online-ewc", "si", "mas"])
def test_regularizers_run_with_a_growing_head(name: str) -> None:
    [s] = build_strategies(name)
    row = run(RunConfig(**FAST, strategy=[s]))  # type: ignore[arg-type]
    assert row["status"] == "ok"
    head_w, head_b = s.importance_[-2], s.importance_[-1]
    assert head_w.shape[0] == head_b.shape[0] == 6  # grown to every class of the stream
    # the rows of the last experience's classes were added after every other experience
    assert head_w[:4].abs().sum() > 0


@pytest.mark.parametrize("name", ["ewc", "si", "mas"])
def test_zero_strength_with_a_growing_head_equals_naive(name: str) -> None:
    naive = run(RunConfig(**FAST, strategy="naive"))["accuracy_matrix"]
    zero = run(RunConfig(**FAST, strategy=f"{name}(lambda=0)"))["accuracy_matrix"]
    assert zero == naive


def test_new_rows_start_without_importance() -> None:
    from lifelong.strategies._params import grown

    stored = torch.ones(2, 3)
    param = torch.nn.Parameter(torch.zeros(4, 3))
    assert torch.equal(grown(stored, param), torch.cat([torch.ones(2, 3), torch.zeros(2, 3)]))
    other = torch.nn.Parameter(torch.zeros(4, 5))
    assert grown(stored, other) is stored  # not a growth: left for check_shapes to refuse
