"""The training loop: every hook of DESIGN.md is exercised by a small test strategy here."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data import Experience, TensorSet, get_benchmark
from lifelong.experiment.run import RunConfig, run
from lifelong.models import MultiHead, build_model
from lifelong.strategies import Batch, Strategy
from lifelong.train import Evaluator, TrainConfig, train_experience

CFG = dict(benchmark="synthetic", epochs=2, batch_size=16, lr=0.05, momentum=0.0)  # flat form


def _run(strategy, scenario: str = "class", seed: int = 0, **kw):
    values = {**CFG, **kw, "strategy": strategy, "scenario": scenario, "seed": seed}
    return run(RunConfig.from_dict(values))


class CountingSteps(Strategy):
    """Per-step hook: counts optimizer steps; `end` records experiences."""

    def __init__(self) -> None:
        self.steps_ = 0
        self.ended_: list[int] = []

    def after_step(self, model: nn.Module) -> None:
        self.steps_ += 1

    def end(self, model: nn.Module, experience: Experience) -> None:
        self.ended_.append(experience.index)


class FreezeFirstLayer(Strategy):
    """Gradient projection: zero the gradient of the first Linear layer."""

    def grads(self, model: nn.Module) -> None:
        first = next(m for m in model.modules() if isinstance(m, nn.Linear))
        first.weight.grad.zero_()
        first.bias.grad.zero_()


class AlwaysClassZero(Strategy):
    """Replaced prediction: always class 0."""

    def predict(self, model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros(len(x), dtype=torch.long, device=x.device)


class ZeroLoss(Strategy):
    """Replaced loss: zero times the logits, so nothing is learned."""

    def loss(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        return out.sum() * 0.0


class DoubleBatch(Strategy):
    """Batch hook: append a copy of the batch (like replay appends memory rows)."""

    def __init__(self) -> None:
        self.sizes_: list[int] = []

    def batch(self, batch: Batch) -> Batch:
        b = Batch(
            torch.cat([batch.x, batch.x]),
            torch.cat([batch.y, batch.y]),
            torch.cat([batch.t, batch.t]),
            batch.n_stream,
        )
        self.sizes_.append(len(b.y))
        return b


class L2Penalty(Strategy):
    """Penalty hook: a huge weight decay on the output logits."""

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        return 1e3 * (out**2).mean()


class OnlyFirstExperienceData(Strategy):
    """Data replacement: always train on the first experience seen."""

    def train_data(self, experience: Experience, seen: Sequence[Experience]) -> TensorSet:
        return seen[0].train


def test_naive_forgets_and_cumulative_remembers():
    naive, cum = _run("naive"), _run("cumulative")
    assert naive["average_forgetting"] > 0.5
    assert cum["final_average_accuracy"] > naive["final_average_accuracy"] + 0.3
    assert cum["average_forgetting"] < 0.2


def test_joint_reports_one_row_repeated():
    j = _run("joint")
    rows = j["accuracy_matrix"]
    assert all(r == rows[0] for r in rows)
    assert j["average_forgetting"] == 0.0 and j["backward_transfer"] == 0.0
    assert j["final_average_accuracy"] > 0.9


def test_same_seed_same_result_and_different_seed_differs():
    a, b, c = _run("naive", seed=1), _run("naive", seed=1), _run("naive", seed=2)
    assert a["accuracy_matrix"] == b["accuracy_matrix"]
    assert a["run_id"] == b["run_id"] != c["run_id"]


def test_joint_trains_every_task_head():
    # joint trains on all experiences at once: every task's head must be open for it
    r = _run("joint", scenario="task")
    assert min(r["accuracy_matrix"][0]) > 0.9


def test_task_scenario_uses_one_head_per_task():
    r = _run("naive", scenario="task")
    assert r["final_average_accuracy"] > 0.95  # each head only separates its two classes
    stream = get_benchmark("synthetic", "task")
    assert isinstance(build_model("mlp", stream), MultiHead)


def _train_with(strategies: list[Strategy], scenario: str = "class"):
    torch.manual_seed(0)
    stream = get_benchmark("synthetic", scenario)
    model = build_model("mlp", stream, hidden=(16,))
    cfg = TrainConfig(epochs=1, batch_size=20, lr=0.1)
    gen = torch.Generator().manual_seed(0)
    opt = None
    for i, e in enumerate(stream):
        model, opt = train_experience(
            model, strategies, e, stream.experiences[: i + 1], opt, cfg, gen
        )
    return model, stream


def test_after_step_and_end_hooks():
    s = CountingSteps()
    _train_with([s])
    assert s.steps_ == 3 * 6  # 3 experiences x ceil(120 / 20) steps
    assert s.ended_ == [0, 1, 2]


def test_grads_hook_projects_gradients():
    torch.manual_seed(0)
    stream = get_benchmark("synthetic", "class")
    before = build_model("mlp", stream, hidden=(16,))
    first = before.backbone[1].weight.detach().clone()
    model, _ = _train_with([FreezeFirstLayer()])
    # same init (seed 0) and the first layer never moved
    assert torch.equal(model.backbone[1].weight, first)
    assert not torch.equal(model.head.weight, before.head.weight)


def test_predict_hook_replaces_inference():
    r = _run(AlwaysClassZero())
    # class 0 is in experience 0 only; half its test samples are class 0
    assert r["accuracy_matrix"][-1] == [0.5, 0.0, 0.0]


def test_loss_hook_replaces_the_loss():
    torch.manual_seed(0)
    stream = get_benchmark("synthetic", "class")
    init = build_model("mlp", stream, hidden=(16,)).state_dict()
    model, _ = _train_with([ZeroLoss()])
    assert all(torch.equal(init[k], v) for k, v in model.state_dict().items())


def test_batch_and_penalty_hooks():
    d = DoubleBatch()
    _train_with([d])
    assert set(d.sizes_) == {40}
    plain = _run("naive")
    pen = _run(L2Penalty())
    assert pen["final_average_accuracy"] != plain["final_average_accuracy"]


def test_train_data_hook_replaces_data():
    r = _run(OnlyFirstExperienceData())
    assert r["accuracy_matrix"][-1][0] > 0.9 and r["accuracy_matrix"][-1][2] == 0.0


def test_online_mode_is_single_pass():
    s = CountingSteps()
    r = run(RunConfig.from_dict({**CFG, "online": True, "batch_size": 10, "strategy": [s]}))
    assert r["params"]["epochs"] == 2 and s.steps_ == 3 * 12  # one pass, 120 samples / 10


def test_evaluator_matches_a_manual_loop():
    stream = get_benchmark("synthetic", "class")
    torch.manual_seed(0)
    model = build_model("mlp", stream, hidden=(8,))
    row = Evaluator(stream, batch_size=7).row(model, [])
    with torch.no_grad():
        manual = [(model(e.test.x).argmax(1) == e.test.y).float().mean().item() for e in stream]
    assert row == pytest.approx(manual)


def test_optimizer_settings_and_errors():
    r = _run("naive", optimizer="adam", lr=0.01)
    assert r["params"]["optimizer"] == "adam" and r["status"] == "ok"
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; expected one of sgd, adam"):
        _run("naive", optimizer="rmsprop")
    with pytest.raises(ValueError, match="lr must be a number > 0, got -1"):
        _run("naive", lr=-1.0)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        _run("naive", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            _run("naive", device="cuda")


def test_growing_head():
    r = _run("naive", head="grow")
    assert r["status"] == "ok"
    stream = get_benchmark("synthetic", "class")
    model = build_model("mlp", stream, head="grow")
    from lifelong.train import adapt_model

    adapt_model(model, stream[0])
    assert model(stream[0].train.x).shape[1] == 2
    adapt_model(model, stream[1])
    assert model(stream[0].train.x).shape[1] == 4


def test_strategy_scenario_refusal():
    class TaskOnly(Strategy):
        scenarios = ("task",)
        name = "task-only"

    with pytest.raises(ValueError, match="'task-only' serves the task scenario"):
        _run(TaskOnly())


def test_cross_entropy_is_the_default_loss():
    stream = get_benchmark("synthetic", "class")
    out = torch.randn(4, 6)
    b = Batch(stream[0].train.x[:4], stream[0].train.y[:4], stream[0].train.t[:4], 4)
    assert torch.equal(Strategy().loss(nn.Identity(), b, out), F.cross_entropy(out, b.y))
