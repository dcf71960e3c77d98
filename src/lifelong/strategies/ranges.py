"""Hyper-parameter checking, in one place: types from the constructor's annotations
(`float`, `int`, `bool`, `str`, `Literal[...]` for choices, tuples, `X | None`) and
numeric bounds from the class's `ranges`.

    @register("ewc")
    class EWC(Strategy):
        ranges = {"lambda_": Range(ge=0), "fisher_samples": Range(ge=1)}

        def __init__(self, lambda_: float = 50.0, fisher_samples: int = 256) -> None: ...

`Strategy.__init_subclass__` wraps every constructor with `validate`, so `EWC(lambda_=-1)`
and the spec `ewc(lambda=-1)` are refused alike: "ewc: lambda must be >= 0, got -1".
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from lifelong.spec import spec_name


class ParamError(ValueError):
    """A hyper-parameter of the wrong type or out of its declared range. The message starts
    with the strategy's name once (`"ewc: lambda must be >= 0, got -1"`)."""


@dataclass(frozen=True, repr=False)
class Range:
    """Allowed values of a numeric hyper-parameter: a lower bound `ge` (>=) or `gt` (>),
    an upper bound `le` (<=) or `lt` (<); `None` is unbounded. NaN is never in range."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __post_init__(self) -> None:
        if (self.ge is not None and self.gt is not None) or (
            self.le is not None and self.lt is not None
        ):
            raise ValueError(f"{self!r}: give at most one lower and one upper bound")

    def __repr__(self) -> str:
        bounds = {k: v for k, v in vars(self).items() if v is not None}
        return f"Range({', '.join(f'{k}={v!r}' for k, v in bounds.items())})"

    def __contains__(self, value: float) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def describe(self) -> str:
        """`>= 0`, `> 0`, `in [0, 1]`, `in (0, 1)`, ..."""
        lo = self.ge if self.ge is not None else self.gt
        hi = self.le if self.le is not None else self.lt
        if lo is not None and hi is not None:
            left, right = "[" if self.ge is not None else "(", "]" if self.le is not None else ")"
            return f"in {left}{lo}, {hi}{right}"
        if lo is not None:
            return f"{'>=' if self.ge is not None else '>'} {lo}"
        if hi is not None:
            return f"{'<=' if self.le is not None else '<'} {hi}"
        return "any number"


def coerce(owner: str, key: str, value: Any, annotation: Any) -> Any:
    """Check `value` against a constructor annotation; return it converted (int -> float)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        if value not in args:
            raise ParamError(
                f"{owner}: {key}={value!r} is not valid; expected one of "
                f"{', '.join(map(repr, args))}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for a in args:
            if a is type(None):
                if value is None:
                    return None
                continue
            try:
                return coerce(owner, key, value, a)
            except ParamError as e:
                errors.append(str(e))
        raise ParamError(errors[0] if errors else f"{owner}: {key} cannot be {value!r}")
    if origin is tuple:
        vals = value if isinstance(value, (tuple, list)) else (value,)
        inner = args[0] if args else Any
        return tuple(coerce(owner, key, v, inner) for v in vals)
    expect = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a word"}
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif annotation is str:
        ok = isinstance(value, str)
    else:
        return value
    if not ok:
        raise ParamError(f"{owner}: {key} must be {expect[annotation]}, got {value!r}")
    return value


def validate(
    owner: str, given: dict[str, Any], hints: dict[str, Any], ranges: dict[str, Range]
) -> dict[str, Any]:
    """Check constructor arguments `given` (Python names) against their annotations `hints`
    and declared `ranges`; return them converted. Raises `ParamError`."""
    out = {}
    for arg, value in given.items():
        key = spec_name(arg)
        v = coerce(owner, key, value, hints.get(arg, Any))
        bounds = ranges.get(arg)
        if bounds is not None and v is not None:
            values = v if isinstance(v, tuple) else (v,)
            for x in values:
                if isinstance(x, bool) or not isinstance(x, (int, float)):
                    raise ParamError(f"{owner}: {key} must be a number, got {value!r}")
                if x not in bounds:
                    raise ParamError(f"{owner}: {key} must be {bounds.describe()}, got {value!r}")
        out[arg] = v
    return out


def checked_init(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap strategy constructor `init` to `validate` its arguments first (once: only the
    constructor of the instance's own class checks, with that class's `ranges`)."""
    sig = inspect.signature(init)
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = [n for n, p in list(sig.parameters.items())[1:] if p.kind in plain]

    @functools.cache
    def hints() -> dict[str, Any]:
        try:
            return typing.get_type_hints(init)
        except NameError:
            return {}

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        if type(self).__init__ is not wrapper:
            return init(self, *args, **kwargs)
        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError:
            return init(self, *args, **kwargs)  # let Python say what is wrong
        given = {k: v for k, v in bound.arguments.items() if k in named}
        bound.arguments.update(validate(self.name, given, hints(), type(self).ranges))
        return init(*bound.args, **bound.kwargs)

    return wrapper


__all__ = ["ParamError", "Range", "checked_init", "coerce", "validate"]
