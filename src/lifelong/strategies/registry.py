"""The strategy registry and the spec language of the command line.

Specs read `name` or `name(key=value, ...)`, joined with `+` for hybrids; a list of specs
is split at top-level commas only. `lambda` on the command line is `lambda_` in Python.
Every strategy module in `lifelong.strategies` registers itself with `@register(name)`;
the modules are discovered automatically, so adding a method means adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from lifelong.spec import (
    parse_one,
    py_name,
    spec_name,
    split_top_level,
)
from lifelong.strategies.base import EXCLUSIVE_HOOKS, Strategy, canonical_spec
from lifelong.strategies.ranges import ParamError, coerce

S = TypeVar("S", bound=type[Strategy])
STRATEGIES: dict[str, type[Strategy]] = {}
_discovered = False


def register(name: str) -> Callable[[S], S]:
    """Class decorator: register a `Strategy` subclass under `name`."""

    def deco(cls: S) -> S:
        if name in STRATEGIES and STRATEGIES[name] is not cls:
            raise ValueError(f"strategy name {name!r} is already registered")
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return deco


def registry() -> dict[str, type[Strategy]]:
    """All registered strategies (imports every module of `lifelong.strategies` once)."""
    global _discovered
    if not _discovered:
        import lifelong.strategies as pkg

        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name not in ("base", "check", "ranges", "registry"):
                importlib.import_module(f"lifelong.strategies.{mod.name}")
        _discovered = True
    return STRATEGIES


def build_one(name: str, params: dict[str, Any]) -> Strategy:
    """Build registered strategy `name` with spec-level `params`; the constructor checks
    each value against its annotation and the class's `ranges` (`ParamError`)."""
    reg = registry()
    if name not in reg:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(sorted(reg))}")
    cls = reg[name]
    valid = cls.param_names()
    kwargs = {}
    for key, value in params.items():
        arg = py_name(key)
        if arg not in valid:
            names = ", ".join(spec_name(v) for v in valid) or "(none)"
            raise ValueError(f"strategy {name!r} has no parameter {key!r}; valid: {names}")
        kwargs[arg] = value
    try:
        return cls(**kwargs)
    except ParamError:
        raise
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}: {e}") from e


def build_strategies(spec: str | Strategy | list[Strategy]) -> list[Strategy]:
    """Build a hybrid (a list of strategies) from a spec like `replay(mem_size=200)+lwf`.

    `naive` alone is the empty list. Two strategies that replace the same exclusive hook
    (training data, loss, gradients, prediction) are refused.
    """
    if isinstance(spec, Strategy):
        strategies = [spec]
    elif isinstance(spec, list):
        strategies = list(spec)
    else:
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(
                f"malformed strategy spec {spec!r}: expected e.g. 'naive' or 'ewc(lambda=100)'"
            )
        strategies = [build_one(*parse_one(part)) for part in split_top_level(spec, "+")]
    strategies = [s for s in strategies if s.name != "naive"]
    check_hybrid(strategies)
    return strategies


def check_serves(strategies: list[Strategy], scenario: str) -> None:
    """Refuse a strategy that does not serve `scenario`."""
    for s in strategies:
        if scenario not in s.scenarios:
            raise ValueError(
                f"strategy {s.name!r} serves the {', '.join(s.scenarios)} scenario(s), "
                f"not {scenario!r}"
            )


def check_hybrid(strategies: list[Strategy]) -> None:
    """Refuse a hybrid in which two strategies replace the same exclusive hook."""
    for hook in EXCLUSIVE_HOOKS:
        owners = [s.name for s in strategies if s.overrides(hook)]
        if len(owners) > 1:
            raise ValueError(
                f"cannot combine {' + '.join(owners)}: each replaces the {hook!r} hook; "
                "a hybrid may replace it only once"
            )


def spec_params(strategies: list[Strategy]) -> dict[str, Any]:
    """Every hyper-parameter of a hybrid, keyed `name.param` (defaults included)."""
    return {
        f"{s.name}.{spec_name(k)}": list(v) if isinstance(v, tuple) else v
        for s in strategies
        for k, v in s.get_params().items()
    }


__all__ = [
    "STRATEGIES",
    "build_one",
    "build_strategies",
    "canonical_spec",
    "check_hybrid",
    "check_serves",
    "coerce",
    "parse_one",
    "register",
    "registry",
    "spec_params",
    "split_top_level",
]
