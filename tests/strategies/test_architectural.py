"""Architectural strategies: PNN, PackNet and LoRA adapters (exactness, state, scenarios)."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from lifelong.data import get_benchmark
from lifelong.data.benchmarks import synthetic_data
from lifelong.data.experience import Stream
from lifelong.data.scenarios import permuted
from lifelong.experiment.run import RunConfig, run
from lifelong.models import build_model
from lifelong.models.lora import LoRALinear, LoRAModel
from lifelong.strategies import Strategy, build_strategies
from lifelong.strategies.adapter import Adapter
from lifelong.strategies.packnet import FREE, PackNet
from lifelong.strategies.pnn import PNN, PNNModel
from lifelong.train import TrainConfig, forward, predict, train_experience

CFG = TrainConfig(epochs=2, batch_size=16, lr=0.05, momentum=0.9)
SMALL = dict(
    train=TrainConfig(epochs=3, batch_size=16, lr=0.05, momentum=0.9), model="mlp(hidden=(32,32))"
)


def task_stream() -> Stream:
    """Synthetic blobs under 3 feature permutations, one task each: naive forgets a little."""
    tr, te = synthetic_data()
    return permuted(tr, te, 3, scenario="task", name="permuted-synthetic")


def train(model: nn.Module, strategies: list[Strategy], stream: Stream, exps: range) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    opt = None
    for i in exps:
        model, opt = train_experience(
            model, strategies, stream[i], stream.experiences[: i + 1], opt, CFG, gen
        )
    return model


def fresh(stream: Stream) -> nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", stream, hidden=(32, 32))


def round_trip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# -- all three: less forgetting than naive, scenarios, hyper-parameters --------------------
@pytest.mark.parametrize("spec", ["pnn", "packnet", "adapter(per_experience=true)"])
def test_no_forgetting_where_naive_forgets(spec: str) -> None:
    stream = task_stream()
    naive = run(RunConfig(**SMALL, strategy="naive", scenario="task"), stream=stream)
    row = run(RunConfig(**SMALL, strategy=spec, scenario="task"), stream=stream)
    assert naive["average_forgetting"] > 0.0
    assert row["average_forgetting"] == 0.0
    assert row["final_average_accuracy"] > 0.8


@pytest.mark.parametrize("name", ["pnn", "packnet"])
def test_refuses_class_scenario(name: str) -> None:
    cfg = RunConfig(**SMALL, benchmark="synthetic", strategy=name, scenario="class")
    with pytest.raises(ValueError, match=f"strategy '{name}' serves the task scenario"):
        run(cfg)


@pytest.mark.parametrize(
    "spec", ["packnet(prune_ratio=1.0)", "packnet(post_prune_epochs=-1)", "adapter(rank=0)"]
)
def test_bad_hyper_parameters(spec: str) -> None:
    with pytest.raises(ValueError, match=spec.split("(")[1].split("=")[0]):
        build_strategies(spec)


@pytest.mark.parametrize("cls", [PNN, PackNet])
def test_needs_multi_head_model(cls: type[Strategy]) -> None:
    stream = get_benchmark("synthetic", "class")
    with pytest.raises(ValueError, match="multi-head"):
        cls().begin(fresh(stream), stream[0])


# -- PNN -----------------------------------------------------------------------------------
def test_pnn_freezes_old_columns_and_predictions() -> None:
    stream = task_stream()
    pnn = PNN()
    model = train(fresh(stream), [pnn], stream, range(1))
    assert isinstance(model, PNNModel) and len(model.columns) == 1
    col0 = copy.deepcopy(model.columns[0].state_dict())
    x0, t0 = stream[0].test.x, stream[0].test.t
    out0 = forward(model, x0, t0)
    model = train(model, [pnn], stream, range(1, 3))
    assert len(model.columns) == 3 and pnn.tasks_ == [0, 1, 2]
    for k, v in model.columns[0].state_dict().items():
        assert torch.equal(v, col0[k]), k
    assert torch.equal(forward(model, x0, t0), out0)
    # a batch mixing tasks gives each sample its own task's output
    xs = torch.cat([stream[2].test.x, x0])
    ts = torch.cat([stream[2].test.t, stream[0].test.t])
    mixed = forward(model, xs, ts)
    assert torch.allclose(mixed[len(stream[2].test) :], out0)
    assert torch.allclose(
        mixed[: len(stream[2].test)], forward(model, stream[2].test.x, stream[2].test.t)
    )


def test_pnn_task_seen_again_leaves_later_tasks_alone() -> None:
    stream = task_stream()
    pnn = PNN()
    model = train(fresh(stream), [pnn], stream, range(2))
    x1, t1 = stream[1].test.x, stream[1].test.t
    out1 = forward(model, x1, t1)
    head0 = model.columns[0].head.weight.clone()
    model = train(model, [pnn], stream, range(1))  # task 0 again
    assert len(model.columns) == 2
    assert torch.equal(forward(model, x1, t1), out1)
    assert not torch.equal(model.columns[0].head.weight, head0)


def test_pnn_rebuild_reproduces_outputs() -> None:
    stream = task_stream()
    pnn = PNN()
    model = train(fresh(stream), [pnn], stream, range(2))
    twin = PNN()
    twin.load_state_dict(round_trip(pnn.state_dict()))
    rebuilt = twin.rebuild(fresh(stream))
    rebuilt.load_state_dict(model.state_dict())
    test = stream[0].test
    x, t = torch.cat([test.x, stream[1].test.x]), torch.cat([test.t, stream[1].test.t])
    assert torch.equal(forward(rebuilt, x, t), forward(model, x, t))


def test_pnn_refuses_non_mlp_backbone() -> None:
    stream = task_stream()
    model = fresh(stream)
    model.backbone.append(nn.LayerNorm(32))
    with pytest.raises(ValueError, match="LayerNorm"):
        PNN().begin(model, stream[0])


# -- PackNet -------------------------------------------------------------------------------
def test_packnet_keeps_earlier_tasks_weights_and_predictions() -> None:
    stream = task_stream()
    pn = PackNet(prune_ratio=0.5)
    model = train(fresh(stream), [pn], stream, range(1))
    owners = {k: v.clone() for k, v in pn.owners_.items()}
    for name, owner in owners.items():  # half of the free weights claimed, the rest zeroed
        assert abs((owner == 0).float().mean().item() - 0.5) < 0.01
        assert bool((dict(model.backbone.named_parameters())[name][owner == FREE] == 0).all())
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    x0, t0 = stream[0].test.x, stream[0].test.t
    pred0 = predict(model, [pn], x0, t0)
    model = train(model, [pn], stream, range(1, 3))
    after = model.backbone.state_dict()
    for name, owner in owners.items():
        assert torch.equal(after[name][owner == 0], before[name][owner == 0]), name
        assert not torch.equal(after[name], before[name])  # later tasks did train
    for name in before:
        if name not in owners:  # biases: frozen after the first task
            assert torch.equal(after[name], before[name]), name
    assert torch.equal(predict(model, [pn], x0, t0), pred0)
    assert pn.tasks_ == [0, 1, 2]


def test_packnet_masks_round_trip() -> None:
    stream = task_stream()
    pn = PackNet()
    model = train(fresh(stream), [pn], stream, range(2))
    twin = PackNet()
    twin.load_state_dict(round_trip(pn.state_dict()))
    assert twin.tasks_ == pn.tasks_ and twin.owners_.keys() == pn.owners_.keys()
    for k in pn.owners_:
        assert torch.equal(twin.owners_[k], pn.owners_[k])
    x = torch.cat([stream[0].test.x, stream[1].test.x])
    t = torch.cat([stream[0].test.t, stream[1].test.t])
    assert torch.equal(predict(model, [twin], x, t), predict(model, [pn], x, t))


# -- adapters ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scenario", "per_experience"), [("class", False), ("domain", True), ("task", True)]
)
def test_adapter_removal_restores_backbone_bit_for_bit(scenario: str, per_experience: bool) -> None:
    stream = get_benchmark("synthetic", scenario)
    model = fresh(stream)
    original = list(model.backbone)
    x = stream[0].test.x
    before = model.backbone(x).clone()
    ad = Adapter(rank=4, per_experience=per_experience)
    adapted = train(model, [ad], stream, range(3))
    assert isinstance(adapted, LoRAModel)
    layers = adapted.lora_layers()
    assert layers and all(len(layer.A) == (3 if per_experience else 1) for layer in layers)
    assert all(bool(b.abs().sum() > 0) for layer in layers for b in layer.B)  # they learned
    trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert all(".A." in n or ".B." in n or "backbone" not in n for n in trainable)
    restored = Adapter.remove(adapted)
    assert restored is model and list(model.backbone) == original
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert torch.equal(model.backbone(x), before)
    assert all(p.requires_grad for p in model.parameters())


def test_adapter_rebuild_reproduces_outputs() -> None:
    stream = task_stream()
    ad = Adapter(per_experience=True)
    model = train(fresh(stream), [ad], stream, range(2))
    twin = Adapter(per_experience=True)
    twin.load_state_dict(round_trip(ad.state_dict()))
    assert twin.keys_ == [0, 1]
    rebuilt = twin.rebuild(fresh(stream))
    rebuilt.load_state_dict(model.state_dict())
    x = torch.cat([stream[0].test.x, stream[1].test.x])
    t = torch.cat([stream[0].test.t, stream[1].test.t])
    assert torch.equal(forward(rebuilt, x, t), forward(model, x, t))


def test_adapter_needs_linear_backbone() -> None:
    model = nn.Sequential(nn.Conv1d(1, 2, 3))
    model.backbone = nn.Sequential(nn.Conv1d(1, 2, 3))  # type: ignore[assignment]
    with pytest.raises(ValueError, match="no nn.Linear"):
        LoRAModel(model)


@pytest.mark.slow
def test_pnn_split_mnist_task_accuracy() -> None:
    rows = [run(RunConfig(strategy="pnn", scenario="task", seed=s)) for s in range(3)]
    accs = [r["final_average_accuracy"] for r in rows]
    assert sum(accs) / 3 >= 0.95, accs
    assert all(r["average_forgetting"] == 0.0 for r in rows)
