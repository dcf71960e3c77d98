"""Deep Generative Replay: the VAE, the generated rows, state, scenarios and accuracy."""

from __future__ import annotations

import io

import pytest
import torch

from lifelong.data import get_benchmark
from lifelong.experiment.run import RunConfig, run
from lifelong.models import build_model
from lifelong.models.vae import VAE
from lifelong.strategies import build_strategies
from lifelong.strategies.base import Batch
from lifelong.strategies.generative_replay import GenerativeReplay
from lifelong.train import TrainConfig, train_experience

SMALL = dict(
    benchmark="synthetic",
    train=TrainConfig(epochs=5, batch_size=16, lr=0.1, momentum=0.0),
    model="mlp(hidden=(32,))",
)


def test_vae_learns_and_samples_shaped_inputs() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 2, 8) * 0.5 + torch.linspace(-2, 2, 8)
    vae = VAE((2, 8), latent_size=4, hidden=32)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    with torch.no_grad():
        first = float(vae.loss(x))
    for _ in range(200):
        loss = vae.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(vae.loss(x)) < 0.5 * first
    s = vae.sample(5)
    assert s.shape == (5, 2, 8) and not s.requires_grad


def test_batches_get_teacher_labelled_generated_rows() -> None:
    stream = get_benchmark("synthetic", "class")
    torch.manual_seed(0)
    model = build_model("mlp", stream, hidden=(32,))
    gr = GenerativeReplay(latent_size=4, hidden=32)
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05)
    gen = torch.Generator().manual_seed(0)
    model, _ = train_experience(model, [gr], stream[0], stream.experiences[:1], None, cfg, gen)
    model, _ = train_experience(model, [gr], stream[1], stream.experiences[:2], None, cfg, gen)
    assert gr.classes_ == [0, 1, 2, 3] and gr.n_seen_ == 2
    gr.begin(model, stream[2])
    part = stream[2].train[torch.arange(10)]
    out = gr.batch(Batch(part.x, part.y, part.t, 10))
    assert out.n_stream == 10 and len(out.y) == 10 + 2 * 10  # one batch per past experience
    assert torch.equal(out.x[:10], part.x)
    assert set(out.y[10:].tolist()) <= {0, 1, 2, 3}  # only classes seen before
    equal = GenerativeReplay(latent_size=4, hidden=32, replay="equal")
    equal.load_state_dict(gr.state_dict())
    equal.begin(model, stream[2])
    assert len(equal.batch(Batch(part.x, part.y, part.t, 10)).y) == 20


def test_beats_naive_on_a_small_class_stream() -> None:
    naive = run(RunConfig(**SMALL, strategy="naive", scenario="class"))
    gr = run(RunConfig(**SMALL, strategy="generative-replay", scenario="class"))
    assert gr["final_average_accuracy"] > naive["final_average_accuracy"] + 0.05
    assert gr["average_forgetting"] < naive["average_forgetting"]


def test_state_round_trip() -> None:
    stream = get_benchmark("synthetic", "class")
    torch.manual_seed(0)
    model = build_model("mlp", stream, hidden=(32,))
    gr = GenerativeReplay(latent_size=4, hidden=32)
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05)
    gen = torch.Generator().manual_seed(0)
    model, _ = train_experience(model, [gr], stream[0], stream.experiences[:1], None, cfg, gen)
    buf = io.BytesIO()
    torch.save(gr.state_dict(), buf)
    buf.seek(0)
    twin = GenerativeReplay(latent_size=4, hidden=32)
    twin.load_state_dict(torch.load(buf, weights_only=True))
    a, b = gr.state_dict(), twin.state_dict()
    assert a.keys() == b.keys() and a["classes_"] == b["classes_"] == [0, 1]
    assert all(torch.equal(a["vae_"][k], b["vae_"][k]) for k in a["vae_"])
    assert gr._vae is not None and twin._vae is not None
    torch.manual_seed(5)
    sa = gr._vae.sample(4)
    torch.manual_seed(5)
    assert torch.equal(twin._vae.sample(4), sa)


def test_refuses_task_scenario_and_bad_values() -> None:
    cfg = RunConfig(**SMALL, strategy="generative-replay", scenario="task")
    with pytest.raises(ValueError, match="strategy 'generative-replay' serves the class, domain"):
        run(cfg)
    with pytest.raises(ValueError, match="latent_size"):
        build_strategies("generative-replay(latent_size=0)")
    with pytest.raises(ValueError, match="replay"):
        build_strategies("generative-replay(replay=all)")


@pytest.mark.slow
def test_beats_naive_on_split_mnist_class() -> None:
    def mean(spec: str) -> float:
        rows = [run(RunConfig(strategy=spec, scenario="class", seed=s)) for s in range(3)]
        return sum(r["final_average_accuracy"] for r in rows) / 3

    naive, gr = mean("naive"), mean("generative-replay")
    assert gr > naive + 0.2, (gr, naive)
