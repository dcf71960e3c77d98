"""The strategy registry and the spec language of the command line.

Specs read `name` or `name(key=value, ...)`, joined with `+` for hybrids; a list of specs
is split at top-level commas only. `lambda` on the command line is `lambda_` in Python.
Every strategy module in `lifelong.strategies` registers itself with `@register(name)`;
the modules are discovered automatically, so adding a method means adding one file.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args, get_origin

from lifelong.strategies.base import EXCLUSIVE_HOOKS, Strategy

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
            if mod.name not in ("base", "registry"):
                importlib.import_module(f"lifelong.strategies.{mod.name}")
        _discovered = True
    return STRATEGIES


def split_top_level(text: str, sep: str) -> list[str]:
    """Split `text` at `sep` characters that are not inside parentheses or brackets."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"malformed spec {text!r}: unbalanced ')'")
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError(f"malformed spec {text!r}: unclosed '('")
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_value(text: str) -> Any:
    """A spec value: a Python literal (number, tuple, quoted string) or a bare word."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_one(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse `name(key=value, ...)` into `(name, {key: value})` (no validation of names)."""
    spec = spec.strip()
    if not spec:
        raise ValueError("malformed spec: empty name")
    if "(" not in spec:
        if not _is_name(spec):
            raise ValueError(f"malformed spec {spec!r}: expected name or name(key=value, ...)")
        return spec, {}
    name, _, rest = spec.partition("(")
    name = name.strip()
    if not rest.endswith(")") or not _is_name(name):
        raise ValueError(f"malformed spec {spec!r}: expected name(key=value, ...)")
    params: dict[str, Any] = {}
    body = rest[:-1].strip()
    for item in split_top_level(body, ",") if body else []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not _is_name(key) or not value.strip():
            raise ValueError(f"malformed spec {spec!r}: {item!r} is not key=value")
        if key in params:
            raise ValueError(f"malformed spec {spec!r}: {key!r} given twice")
        params[key] = parse_value(value.strip())
    return name, params


def _is_name(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "-_" for c in text) and not text[0].isdigit()


def _py_name(key: str) -> str:
    return "lambda_" if key == "lambda" else key


def _spec_name(arg: str) -> str:
    return "lambda" if arg == "lambda_" else arg


def coerce(owner: str, key: str, value: Any, annotation: Any) -> Any:
    """Check `value` against a constructor annotation; return it converted (int -> float)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        if value not in args:
            raise ValueError(
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
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if errors else f"{owner}: {key} cannot be {value!r}")
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
        raise ValueError(f"{owner}: {key} must be {expect[annotation]}, got {value!r}")
    return value


def build_one(name: str, params: dict[str, Any]) -> Strategy:
    """Build registered strategy `name` with spec-level `params`, validating each value."""
    reg = registry()
    if name not in reg:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(sorted(reg))}")
    cls = reg[name]
    valid = cls.param_names()
    hints = typing.get_type_hints(cls.__init__)
    kwargs = {}
    for key, value in params.items():
        arg = _py_name(key)
        if arg not in valid:
            names = ", ".join(_spec_name(v) for v in valid) or "(none)"
            raise ValueError(f"strategy {name!r} has no parameter {key!r}; valid: {names}")
        kwargs[arg] = coerce(name, key, value, hints.get(arg, Any))
    try:
        return cls(**kwargs)
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


def check_hybrid(strategies: list[Strategy]) -> None:
    """Refuse a hybrid in which two strategies replace the same exclusive hook."""
    for hook in EXCLUSIVE_HOOKS:
        owners = [s.name for s in strategies if s.overrides(hook)]
        if len(owners) > 1:
            raise ValueError(
                f"cannot combine {' + '.join(owners)}: each replaces the {hook!r} hook; "
                "a hybrid may replace it only once"
            )


def canonical_spec(strategies: list[Strategy]) -> str:
    """Names as registered, parameters sorted, only those that differ from their default."""
    if not strategies:
        return "naive"
    parts = []
    for s in strategies:
        sig = inspect.signature(type(s).__init__)
        diff = []
        for arg, value in sorted(s.get_params().items(), key=lambda kv: _spec_name(kv[0])):
            default = sig.parameters[arg].default
            if default is inspect.Parameter.empty or value != default:
                diff.append(f"{_spec_name(arg)}={_format(value)}")
        parts.append(f"{s.name}({','.join(diff)})" if diff else s.name)
    return "+".join(parts)


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "(" + ",".join(_format(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def spec_params(strategies: list[Strategy]) -> dict[str, Any]:
    """Every hyper-parameter of a hybrid, keyed `name.param` (defaults included)."""
    return {
        f"{s.name}.{_spec_name(k)}": list(v) if isinstance(v, tuple) else v
        for s in strategies
        for k, v in s.get_params().items()
    }
