"""Conformance suite: every registered strategy of the catalogue, automatically.

For each strategy: it builds from its spec, clones, its state round-trips through
`state_dict` (as tensors and plain values that `torch.load(weights_only=True)` accepts) and
training continues identically after the round trip, the same seed gives the same result,
it runs in every scenario it serves and refuses the others with a clear error, and it runs
on CUDA when one is present.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
import torch

from lifelong.data import get_benchmark
from lifelong.experiment.run import RunConfig, run
from lifelong.models import build_model
from lifelong.strategies import Strategy, build_strategies, registry
from lifelong.strategies.registry import canonical_spec
from lifelong.train import Evaluator, TrainConfig, train_experience

CATALOGUE = sorted(
    name for name, cls in registry().items() if cls.__module__.startswith("lifelong.strategies.")
)
SCENARIOS = ("class", "domain", "task")
FAST = dict(
    benchmark="synthetic",
    train=TrainConfig(epochs=1, batch_size=16, lr=0.05, momentum=0.0),
    model="mlp(hidden=(32,))",
)


def _first_scenario(name: str) -> str:
    return registry()[name].scenarios[0]


def _check_plain(value: Any, where: str) -> None:
    if (
        isinstance(value, torch.Tensor)
        or value is None
        or isinstance(value, (bool, int, float, str))
    ):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, (str, int)), f"{where}: key {k!r} is not a str/int"
            _check_plain(v, f"{where}.{k}")
        return
    raise AssertionError(
        f"{where} holds a {type(value).__name__}; state must be tensors and plain values"
    )


@pytest.mark.parametrize("name", CATALOGUE)
def test_builds_clones_and_lists(name: str) -> None:
    [s] = build_strategies(name) or [None]
    if name == "naive":
        assert build_strategies("naive") == []
        return
    assert isinstance(s, Strategy) and s.name == name
    assert canonical_spec([s]) == name
    c = s.clone()
    assert type(c) is type(s) and c is not s and c.get_params() == s.get_params()
    assert registry()[name].__doc__, f"{name} needs a docstring"


def _train(strategies: list[Strategy], model: torch.nn.Module, stream, exps: range, seed: int):
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = None
    for i in exps:
        model, opt = train_experience(
            model, strategies, stream[i], stream.experiences[: i + 1], opt, cfg, gen
        )
    return model


@pytest.mark.parametrize("name", [n for n in CATALOGUE if n != "naive"])
def test_state_round_trip_continues_identically(name: str) -> None:
    scenario = _first_scenario(name)
    stream = get_benchmark("synthetic", scenario)
    torch.manual_seed(0)
    base = build_model("mlp", stream, hidden=(32,))
    [s] = build_strategies(name)
    model = _train([s], copy.deepcopy(base), stream, range(2), seed=0)

    state = s.state_dict()
    _check_plain(state, f"{name}.state_dict()")
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)

    twin = s.clone()
    twin.load_state_dict(loaded)
    torch.manual_seed(0)
    rebuilt = build_model("mlp", stream, hidden=(32,))
    rebuilt = twin.rebuild(rebuilt)
    rebuilt.load_state_dict(copy.deepcopy(model.state_dict()))

    a = _train([s], model, stream, range(2, len(stream)), seed=7)
    b = _train([twin], rebuilt, stream, range(2, len(stream)), seed=7)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{name}: parameter {k} differs after a state round trip"
    ev = Evaluator(stream)
    assert ev.row(a, [s]) == ev.row(b, [twin])


@pytest.mark.parametrize("name", CATALOGUE)
def test_same_seed_same_result(name: str) -> None:
    cfg = RunConfig(**FAST, strategy=name, scenario=_first_scenario(name), seed=3)
    assert run(cfg)["accuracy_matrix"] == run(cfg)["accuracy_matrix"]


@pytest.mark.parametrize("name", CATALOGUE)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenarios_served_or_refused(name: str, scenario: str) -> None:
    cfg = RunConfig(**FAST, strategy=name, scenario=scenario)
    if scenario in registry()[name].scenarios:
        row = run(cfg)
        assert row["n_experiences"] == 3 and 0.0 <= row["final_average_accuracy"] <= 1.0
    else:
        with pytest.raises(ValueError, match=f"'{name}' serves the"):
            run(cfg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", CATALOGUE)
def test_runs_on_cuda(name: str) -> None:
    row = run(RunConfig(**FAST, strategy=name, scenario=_first_scenario(name), device="cuda"))
    assert row["status"] == "ok" and row["n_experiences"] == 3
