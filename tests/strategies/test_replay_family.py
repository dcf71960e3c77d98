"""The replay family: replay (reservoir, class-balanced, herding), DER, DER++, ER-ACE, GDumb."""

from __future__ import annotations

import copy
import io
from dataclasses import replace
from functools import lru_cache

import pytest
import torch
import torch.nn.functional as F

from lifelong.data import get_benchmark
from lifelong.data.experience import Stream
from lifelong.experiment.run import RunConfig, run
from lifelong.models import build_model
from lifelong.strategies import Batch, Strategy, build_strategies
from lifelong.strategies.der import IGNORE, logit_distance
from lifelong.train import Evaluator, TrainConfig, train_experience

SMALL = dict(epochs=2, batch_size=16, lr=0.01, momentum=0.9, model="mlp(hidden=(64,))")
FAMILY = [
    "replay(mem_size=100)",
    "replay(mem_size=100,policy=class_balanced)",
    "replay(mem_size=100,policy=herding)",
    "der(mem_size=100)",
    "derpp(mem_size=100)",
    "er-ace(mem_size=100)",
    "gdumb(mem_size=100)",
]


@lru_cache(maxsize=3)
def small_mnist(scenario: str = "class") -> Stream:
    """The first 3 experiences of split-mnist-5k with 300 training samples each."""
    s = get_benchmark("split-mnist-5k", scenario)
    g = torch.Generator().manual_seed(0)
    exps = tuple(
        replace(e, train=e.train[torch.randperm(len(e.train), generator=g)[:300]])
        for e in s.experiences[:3]
    )
    return replace(s, experiences=exps, info={})


def _row(spec: str, scenario: str = "class", seed: int = 0, **kw: object) -> dict:
    stream = small_mnist(scenario) if scenario != "domain" else None
    bench = {"benchmark": "synthetic"} if stream is None else {}
    return run(
        RunConfig.from_dict(
            {**SMALL, **kw, **bench, "strategy": spec, "scenario": scenario, "seed": seed}
        ),
        stream=stream,
    )


@pytest.mark.parametrize("scenario", ["class", "task", "domain"])
def test_replay_with_no_memory_is_exactly_naive(scenario: str) -> None:
    for spec in ("replay(mem_size=0)", "replay(mem_size=0,policy=herding)", "der(mem_size=0)"):
        assert _row(spec, scenario)["accuracy_matrix"] == _row("naive", scenario)["accuracy_matrix"]


@pytest.mark.parametrize("spec", FAMILY)
def test_beats_naive_on_a_small_class_incremental_stream(spec: str) -> None:
    naive = _row("naive")
    row = _row(spec)
    assert row["final_average_accuracy"] > naive["final_average_accuracy"] + 0.3
    assert row["average_forgetting"] < naive["average_forgetting"] - 0.3


@pytest.mark.parametrize("spec", FAMILY)
@pytest.mark.parametrize("scenario", ["task", "domain"])
def test_runs_in_task_and_domain_scenarios(spec: str, scenario: str) -> None:
    row = _row(spec, scenario)
    assert row["status"] == "ok" and 0.0 <= row["final_average_accuracy"] <= 1.0


def _train(
    strategies: list[Strategy], model: torch.nn.Module, stream: Stream, exps: range, seed: int
) -> torch.nn.Module:
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = None
    for i in exps:
        model, opt = train_experience(
            model, strategies, stream[i], stream.experiences[: i + 1], opt, cfg, gen
        )
    return model


@pytest.mark.parametrize("spec", FAMILY)
def test_state_round_trip_continues_identically_in_task_scenario(spec: str) -> None:
    stream = get_benchmark("synthetic", "task")
    torch.manual_seed(0)
    [s] = build_strategies(spec)
    model = _train([s], build_model("mlp", stream, hidden=(32,)), stream, range(2), seed=0)
    raw = io.BytesIO()
    torch.save(s.state_dict(), raw)
    raw.seek(0)
    twin = s.clone()
    twin.load_state_dict(torch.load(raw, weights_only=True))
    other = copy.deepcopy(model)
    a = _train([s], model, stream, range(2, 3), seed=7)
    b = _train([twin], other, stream, range(2, 3), seed=7)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert Evaluator(stream).row(a, [s]) == Evaluator(stream).row(b, [twin])


def test_replay_mixes_memory_rows_after_stream_rows_keeping_task_ids() -> None:
    stream = get_benchmark("synthetic", "task")
    [s] = build_strategies("replay(mem_size=50,replay_batch_size=8)")
    _train([s], build_model("mlp", stream, hidden=(16,)), stream, range(2), seed=0)
    assert len(s.buffer_) == 50 and set(s.buffer_.t_.tolist()) == {0, 1}  # type: ignore[attr-defined,union-attr]
    x, y, t = stream[2].train.x[:16], stream[2].train.y[:16], stream[2].train.t[:16]
    out = s.batch(Batch(x, y, t, 16))
    assert out.n_stream == 16 and out.x.shape[0] == 24
    assert torch.equal(out.x[:16], x) and set(out.t[16:].tolist()) <= {0, 1}


def test_reservoir_replay_offers_each_sample_once_per_experience() -> None:
    [s] = build_strategies("replay(mem_size=10000)")
    stream = get_benchmark("synthetic", "class")
    _train([s], build_model("mlp", stream, hidden=(16,)), stream, range(2), seed=0)
    assert s.buffer_.seen_ == len(stream[0].train) + len(stream[1].train)  # type: ignore[attr-defined]


def test_der_rows_skip_the_cross_entropy_and_match_stored_logits() -> None:
    stream = get_benchmark("synthetic", "class")
    [s] = build_strategies("derpp(mem_size=40,replay_batch_size=8,alpha=0.5,beta=2)")
    model = _train([s], build_model("mlp", stream, hidden=(16,)), stream, range(1), seed=0)
    x, y, t = stream[1].train.x[:16], stream[1].train.y[:16], stream[1].train.t[:16]
    batch = s.batch(Batch(x, y, t, 16))
    assert batch.x.shape[0] == 32 and (batch.y[16:] == IGNORE).all()
    out = model(batch.x)
    assert torch.allclose(F.cross_entropy(out, batch.y), F.cross_entropy(out[:16], y))
    rows, logits = batch.extras["der.rows"], batch.extras["der.logits"]
    rows2, labels2 = batch.extras["derpp.rows"], batch.extras["derpp.labels"]
    want = 0.5 * F.mse_loss(out[rows], logits) + 2 * F.cross_entropy(out[rows2], labels2)
    assert torch.allclose(s.penalty(model, batch, out), want)
    # logits of other tasks' heads (masked when stored) do not count
    stored = torch.tensor([[1.0, -1e4], [2.0, -1e4]])
    assert torch.allclose(
        logit_distance(torch.tensor([[2.0, 5.0], [2.0, 7.0]]), stored), torch.tensor(0.5)
    )


def test_er_ace_masks_absent_classes_for_the_incoming_batch_only() -> None:
    [s] = build_strategies("er-ace(mem_size=10)")
    out = torch.randn(6, 6, requires_grad=True)
    y = torch.tensor([0, 1, 0, 1, 4, 5])  # 4 stream rows (classes 0, 1), 2 memory rows
    s.seen_ = torch.tensor([False, False, False, False, True, True])  # type: ignore[attr-defined]
    loss = s.loss(torch.nn.Identity(), Batch(torch.zeros(6, 1), y, torch.zeros(6), 4), out)
    stream_ce = F.cross_entropy(out[:4, :2], y[:4])
    memory_ce = F.cross_entropy(out[4:][:, [0, 1, 4, 5]], torch.tensor([2, 3]))
    assert torch.allclose(loss, stream_ce + memory_ce)


def test_gdumb_trains_from_scratch_on_a_balanced_memory() -> None:
    stream = small_mnist("class")
    [s] = build_strategies("gdumb(mem_size=90)")
    model = build_model("mlp", stream, hidden=(16,))
    init = copy.deepcopy(model.state_dict())
    _train([s], model, stream, range(2), seed=0)
    assert not torch.equal(model.state_dict()["head.weight"], init["head.weight"])
    model = s.begin(model, stream[2])
    for k, v in model.state_dict().items():
        assert torch.equal(v, init[k]), k
    data = s.train_data(stream[2], stream.experiences)
    assert len(data) == 90 and torch.bincount(data.y).tolist() == [15] * 6


def test_bad_hyper_parameters_are_refused() -> None:
    for spec, msg in [
        ("replay(mem_size=-1)", "mem_size must be >= 0"),
        ("replay(replay_batch_size=0)", "replay_batch_size must be >= 1"),
        ("replay(policy=fifo)", "expected one of 'reservoir'"),
        ("der(alpha=-1)", "alpha must be >= 0"),
        ("derpp(beta=-1)", "beta must be >= 0"),
        ("gdumb(passes=0)", "passes must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=msg):
            build_strategies(spec)


# -- the reference protocol (split-mnist-5k, MLP 784-400-400-10, 2 epochs, seeds 0, 1, 2) ----
def _mean_final(spec: str, **kw: object) -> float:
    rows = [run(RunConfig(strategy=spec, seed=s, **kw)) for s in (0, 1, 2)]  # type: ignore[arg-type]
    return sum(r["final_average_accuracy"] for r in rows) / len(rows)


@pytest.mark.slow
def test_reference_protocol_accuracy() -> None:
    assert _mean_final("replay(mem_size=500)", scenario="class") >= 0.60
    assert _mean_final("derpp(mem_size=500)", scenario="class") >= 0.65


@pytest.mark.slow
def test_replay_beats_naive_on_permuted_mnist() -> None:
    kw = dict(benchmark="permuted-mnist-5k", scenario="domain")
    assert _mean_final("replay(mem_size=500)", **kw) >= _mean_final("naive", **kw) + 0.03
