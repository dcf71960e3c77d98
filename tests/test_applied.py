"""Projection methods project the update SGD applies (momentum and weight decay included),
so momentum can no longer undo their constraint."""

from __future__ import annotations

import statistics

import pytest
import torch

from lifelong.applied import applied_update
from lifelong.config import TrainConfig
from lifelong.data import split_by_class
from lifelong.data.benchmarks import synthetic_data
from lifelong.learner import Learner


def _sgd_step(params: list[torch.nn.Parameter], opt: torch.optim.Optimizer, project) -> None:
    for p in params:
        p.grad = torch.randn_like(p)
    with applied_update(opt, params):
        project(params)
    opt.step()


@pytest.mark.parametrize("momentum, wd", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-2)])
def test_the_applied_step_is_what_the_hook_left(momentum: float, wd: float) -> None:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
    opt = torch.optim.SGD(params, lr=0.1, momentum=momentum, weight_decay=wd)
    direction = [torch.randn_like(p) for p in params]

    def project(ps: list[torch.nn.Parameter]) -> None:  # keep only the part along `direction`
        g = torch.cat([p.grad.flatten() for p in ps])
        d = torch.cat([x.flatten() for x in direction])
        coef = (g @ d) / (d @ d)
        for p, x in zip(ps, direction):
            p.grad.copy_(coef * x)

    for _ in range(4):  # the momentum buffer fills up over the steps
        before = [p.detach().clone() for p in params]
        _sgd_step(params, opt, project)
        step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, params)])
        d = torch.cat([x.flatten() for x in direction])
        cos = (step @ d) / (step.norm() * d.norm())
        assert abs(abs(float(cos)) - 1) < 1e-5  # the whole applied step lies along `direction`


def _final_accuracy(spec: str, seed: int) -> float:
    train, test = synthetic_data(n_classes=6, dim=16, per_class=60)
    stream = split_by_class(train, test, scenario="class", classes_per_experience=2)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, momentum=0.9)
    result = Learner("mlp(hidden=(32,))", spec, config=cfg, seed=seed).fit_stream(stream)
    return float(result.metrics()["final_average_accuracy"] or 0)


def test_agem_with_momentum_keeps_the_past() -> None:
    naive = statistics.mean(_final_accuracy("naive", s) for s in (0, 1))
    agem = statistics.mean(_final_accuracy("agem(mem_size=60,sample_size=32)", s) for s in (0, 1))
    assert agem > naive + 0.1, (agem, naive)


def test_adam_is_refused_for_projection_methods() -> None:
    train, _ = synthetic_data(n_classes=2, dim=4, per_class=10)
    learner = Learner("mlp(hidden=(8,))", "agem", config=TrainConfig(optimizer="adam"))
    with pytest.raises(ValueError, match="agem projects the update SGD applies"):
        learner.learn(train.x, train.y)
