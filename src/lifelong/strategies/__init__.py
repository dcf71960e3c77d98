"""The strategy catalogue: one file per method, found by `registry()`.

Build strategies from specs with `build_strategies("replay(mem_size=200)+lwf")`.
"""

from lifelong.spec import parse_one, split_top_level
from lifelong.strategies.base import Batch, Strategy, canonical_spec
from lifelong.strategies.registry import build_strategies, register, registry

__all__ = [
    "Batch",
    "Strategy",
    "build_strategies",
    "canonical_spec",
    "parse_one",
    "register",
    "registry",
    "split_top_level",
]
