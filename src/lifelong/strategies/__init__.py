"""The strategy catalogue: one file per method, found by `registry()`.

Build strategies from specs with `build_strategies("replay(mem_size=200)+lwf")`.
`check_strategy` (the conformance checks, `lifelong.strategies.check`) trains models, so it
sits above this package and is loaded on first use.
"""

from typing import Any

from lifelong.spec import parse_one, split_top_level
from lifelong.strategies.base import Batch, Strategy, canonical_spec
from lifelong.strategies.ranges import ParamError, Range
from lifelong.strategies.registry import build_strategies, register, registry

__all__ = [
    "Batch",
    "ParamError",
    "Range",
    "Strategy",
    "StrategyCheckError",
    "build_strategies",
    "canonical_spec",
    "check_strategy",
    "parse_one",
    "register",
    "registry",
    "split_top_level",
]


def __getattr__(name: str) -> Any:
    if name in ("check_strategy", "StrategyCheckError"):
        import importlib

        return getattr(importlib.import_module("lifelong.strategies.check"), name)
    raise AttributeError(f"module 'lifelong.strategies' has no attribute {name!r}")
