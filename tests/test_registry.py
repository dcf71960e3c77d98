"""Strategy specs: parsing, validation errors, canonical form, hybrids."""

from __future__ import annotations

from typing import Literal

import pytest
from torch import Tensor, nn

from lifelong.spec import parse_one
from lifelong.strategies import (
    Batch,
    Range,
    Strategy,
    build_strategies,
    canonical_spec,
    split_top_level,
)
from lifelong.strategies.registry import STRATEGIES, register


@register("test-knobs")
class Knobs(Strategy):
    """A strategy with one hyper-parameter of each kind (for spec tests)."""

    ranges = {"lambda_": Range(), "mem_size": Range(ge=0)}

    def __init__(
        self,
        lambda_: float = 1.0,
        mem_size: int = 10,
        mode: Literal["a", "b"] = "a",
        flag: bool = False,
    ) -> None:
        self.lambda_, self.mem_size, self.mode, self.flag = lambda_, mem_size, mode, flag


@register("test-loss-a")
class LossA(Strategy):
    """Replaces the loss."""

    def loss(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        return out.sum()


@register("test-loss-b")
class LossB(LossA):
    """Replaces the loss too."""


def test_split_top_level_keeps_parentheses():
    assert split_top_level("naive,derpp(mem_size=500,alpha=0.1,beta=0.5)", ",") == [
        "naive",
        "derpp(mem_size=500,alpha=0.1,beta=0.5)",
    ]
    assert parse_one("x(a=1, b=(2,3), c=word)") == ("x", {"a": 1, "b": (2, 3), "c": "word"})


def test_build_and_canonical_spec():
    [s] = build_strategies("test-knobs(mode=b, lambda=3, mem_size=10)")
    assert isinstance(s, Knobs) and s.lambda_ == 3.0 and isinstance(s.lambda_, float)
    # sorted, defaults dropped, `lambda` spelled as on the command line
    assert canonical_spec([s]) == "test-knobs(lambda=3.0,mode=b)"
    assert canonical_spec(build_strategies("naive")) == "naive"
    assert build_strategies("naive") == []
    assert canonical_spec(build_strategies("naive+test-knobs")) == "test-knobs"


def test_clone_and_params():
    [s] = build_strategies("test-knobs(flag=true)")
    c = s.clone()
    assert c is not s and c.get_params() == s.get_params() == {
        "lambda_": 1.0,
        "mem_size": 10,
        "mode": "a",
        "flag": True,
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", r"unknown strategy 'nope'; expected one of .*naive"),
        ("test-knobs(lamda=1)", r"has no parameter 'lamda'; valid: lambda, mem_size, mode, flag"),
        ("test-knobs(lambda=abc)", r"lambda must be a number, got 'abc'"),
        ("test-knobs(mem_size=1.5)", r"mem_size must be an integer, got 1.5"),
        ("test-knobs(mem_size=-1)", r"mem_size must be >= 0, got -1"),
        ("test-knobs(mode=c)", r"mode='c' is not valid; expected one of 'a', 'b'"),
        ("test-knobs(flag=2)", r"flag must be a boolean"),
        ("test-knobs(lambda=1", r"malformed spec .*unclosed"),
        ("test-knobs(lambda)", r"malformed spec .*'lambda' is not key=value"),
        ("test-knobs(a=1,a=2)", r"'a' given twice"),
        ("", r"malformed strategy spec"),
        ("bad name", r"malformed spec 'bad name'"),
    ],
)
def test_bad_specs_name_the_bad_value(spec, message):
    with pytest.raises(ValueError, match=message):
        build_strategies(spec)


def test_hybrid_replacing_the_same_hook_twice_is_refused():
    with pytest.raises(
        ValueError,
        match=r"cannot combine test-loss-a \+ test-loss-b: each replaces the 'loss' hook",
    ):
        build_strategies("test-loss-a+test-loss-b")
    assert len(build_strategies("test-loss-a+test-knobs")) == 2


def test_registry_lists_baselines():
    from lifelong.strategies import registry

    names = set(registry())
    assert {"naive", "joint", "cumulative"} <= names
    assert STRATEGIES["naive"].name == "naive"


def test_ranges_are_checked_once_for_direct_construction_and_specs():
    from lifelong.strategies.derpp import DERpp
    from lifelong.strategies.ewc import EWC

    for make in (lambda: EWC(lambda_=-1), lambda: build_strategies("ewc(lambda=-1)")):
        with pytest.raises(ValueError, match=r"^ewc: lambda must be >= 0, got -1$"):
            make()
    with pytest.raises(ValueError, match=r"^ewc: fisher_samples must be an integer, got 2.5$"):
        EWC(fisher_samples=2.5)  # type: ignore[arg-type]
    assert EWC(lambda_=3).lambda_ == 3.0 and isinstance(EWC(lambda_=3).lambda_, float)
    assert {"mem_size", "alpha", "beta"} <= set(DERpp.ranges)  # inherited from DER
    with pytest.raises(ValueError, match=r"^derpp: mem_size must be >= 0, got -1$"):
        DERpp(mem_size=-1)


def test_a_range_must_name_a_constructor_argument():
    with pytest.raises(TypeError, match=r"Typo.ranges names no constructor argument: \['lamda'\]"):

        class Typo(Strategy):
            """Misspells its parameter."""

            ranges = {"lamda": Range(ge=0)}

            def __init__(self, lambda_: float = 1.0) -> None:
                self.lambda_ = lambda_
