"""Conformance suite: every registered strategy of the catalogue, automatically.

`check_strategy` (registration, hyper-parameters and their ranges, training in each
scenario served, plain `state_dict`, determinism, bit-identical resume) over the whole
catalogue; the refusal of unserved scenarios by a run and CUDA runs; and strategies broken
on purpose, which `check_strategy` must catch, naming the check.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience
from lifelong.experiment.run import RunConfig, run
from lifelong.strategies import Batch, Range, Strategy, StrategyCheckError, check_strategy
from lifelong.strategies.registry import STRATEGIES, register, registry

CATALOGUE = sorted(
    name for name, cls in registry().items() if cls.__module__.startswith("lifelong.strategies.")
)
SCENARIOS = ("class", "domain", "task")
FAST = dict(
    benchmark="synthetic", epochs=1, batch_size=16, lr=0.05, momentum=0.0, model="mlp(hidden=(32,))"
)


def _config(**kw: Any) -> RunConfig:
    return RunConfig.from_dict({**FAST, **kw})


#: strategies on a pretrained text backbone train the real MiniLM: slow on CPU
CHECKED = [
    pytest.param(n, marks=pytest.mark.slow) if registry()[n].needs_text_model else n
    for n in CATALOGUE
]


@pytest.mark.parametrize("name", CHECKED)
def test_check_strategy(name: str) -> None:
    check_strategy(registry()[name])


def test_check_strategy_takes_a_spec_or_an_instance() -> None:
    check_strategy("ewc(lambda=3)")
    check_strategy(registry()["lwf"](alpha=2.0))


@pytest.mark.parametrize("name", CATALOGUE)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_unserved_scenarios_are_refused(name: str, scenario: str) -> None:
    if scenario in registry()[name].scenarios:
        return  # trained by check_strategy
    with pytest.raises(ValueError, match=f"'{name}' serves the"):
        run(_config(strategy=name, scenario=scenario))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", [n for n in CATALOGUE if not registry()[n].needs_text_model])
def test_runs_on_cuda(name: str) -> None:
    cfg = _config(strategy=name, scenario=registry()[name].scenarios[0], device="cuda")
    row = run(cfg)
    assert row["status"] == "ok" and row["n_experiences"] == 3


# -- strategies broken on purpose ----------------------------------------------------------
class KeepsAFunction(Strategy):
    """Stores a function in its learned state (not serializable without pickles)."""

    def end(self, model: nn.Module, experience: Experience) -> None:
        self.scale_ = lambda x: 2 * x


class Nondeterministic(Strategy):
    """Adds a penalty scaled by OS entropy, which no seed controls."""

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        return out.pow(2).mean() * (int.from_bytes(os.urandom(2), "little") / 65536)


class UndeclaredRange(Strategy):
    """Checks its strength by hand (doubled prefix) instead of declaring a `Range`."""

    def __init__(self, lambda_: float = 1.0) -> None:
        if lambda_ < 0:
            raise ValueError(f"{self.name}: lambda must be >= 0, got {lambda_}")
        self.lambda_ = lambda_


class WrongDefault(Strategy):
    """Declares a range its own default violates."""

    ranges = {"samples": Range(ge=1)}

    def __init__(self, samples: int = 0) -> None:
        self.samples = samples


class ForgetsOnReload(Strategy):
    """Keeps its learned state in a private attribute that `state_dict` does not save."""

    def __init__(self) -> None:
        self._anchor: list[Tensor] = []

    def end(self, model: nn.Module, experience: Experience) -> None:
        self._anchor = [p.detach().clone() for p in model.parameters()]

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        if not self._anchor:
            return out.new_zeros(())
        return sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), self._anchor))


@pytest.fixture
def registered() -> Iterator[Callable[[str, type[Strategy]], type[Strategy]]]:
    """Register test strategies for one test only (other suites iterate the registry)."""
    added: list[str] = []

    def add(name: str, cls: type[Strategy]) -> type[Strategy]:
        added.append(name)
        return register(name)(cls)

    yield add
    for name in added:
        STRATEGIES.pop(name, None)


@pytest.mark.parametrize(
    ("cls", "check", "message"),
    [
        (KeepsAFunction, "state_dict", r"state_dict\(\)\.scale_ holds a function"),
        (Nondeterministic, "determinism", "with the same seed"),
        (UndeclaredRange, "ranges", "lambda is numeric but UndeclaredRange.ranges declares no"),
        (WrongDefault, "ranges", r"the default samples=0 is outside its range \(>= 1\)"),
        (ForgetsOnReload, "resume", "after resuming"),
    ],
)
def test_broken_strategies_fail_the_named_check(registered, cls, check, message) -> None:
    registered(f"test-broken-{check}", cls)
    with pytest.raises(StrategyCheckError, match=message) as info:
        check_strategy(cls)
    assert info.value.check == check and f"the {check!r} check" in str(info.value)


def test_an_unregistered_strategy_fails_registration() -> None:
    class Loose(Strategy):
        """Not registered."""

    with pytest.raises(AssertionError, match="'registered' check: Loose is not registered"):
        check_strategy(Loose)
