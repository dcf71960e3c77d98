"""Value checkers of experiment config keys: each returns the value normalised (lists to
tuples, comma-separated text to a tuple) or raises `Bad(expected)`, from which
`lifelong.experiment.config` builds its error message (file, key, value, expectation).

The training settings (`epochs`, `lr`, ...) are not checked here: their checks are declared
with the fields of `lifelong.config.TrainConfig`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lifelong.spec import split_top_level

SCENARIO_NAMES = ("class", "domain", "task")


class Bad(Exception):
    """Raised by a value checker with what it expected, e.g. `Bad("a positive integer")`;
    `message`, when given, replaces the generic "expected ..., got ..." text; `names_key`
    says that `message` names the key itself ("lr must be a number > 0, got 0")."""

    def __init__(self, expected: str, message: str | None = None, names_key: bool = False) -> None:
        super().__init__(expected)
        self.message = message
        self.names_key = names_key


def is_int(v: Any) -> bool:
    """True for an int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def text(v: Any) -> str:
    """A non-empty string (stripped)."""
    if isinstance(v, str) and v.strip():
        return v.strip()
    raise Bad("a non-empty string")


def opt_text(v: Any) -> str | None:
    """A non-empty string, or None."""
    return None if v is None else text(v)


def pos_int(v: Any) -> int:
    """An integer >= 1."""
    if is_int(v) and v >= 1:
        return int(v)
    raise Bad("a positive integer")


def opt_pos_int(v: Any) -> int | None:
    """An integer >= 1, or None."""
    return None if v is None else pos_int(v)


def boolean(v: Any) -> bool:
    """true or false."""
    if isinstance(v, bool):
        return v
    raise Bad("true or false")


def choice(*names: str) -> Callable[[Any], str]:
    """A checker accepting only `names`."""

    def check(v: Any) -> str:
        if v in names:
            return str(v)
        raise Bad("one of " + ", ".join(names))

    return check


def names(v: Any, expected: str = "a name or a list of names") -> tuple[str, ...]:
    """A list of non-empty strings, or one string split at top-level commas."""
    items = split_top_level(v, ",") if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)) or not items:
        raise Bad(expected)
    if not all(isinstance(x, str) for x in items):
        raise Bad(expected)
    if not all(x.strip() for x in items):
        raise Bad(expected, f"malformed list {v!r}: empty entry; expected {expected}")
    return tuple(x.strip() for x in items)


def strategies(v: Any) -> tuple[str, ...]:
    """Strategy specs: a list, or one string split at top-level commas."""
    return names(v, "a list of strategy specs (or one comma-separated string)")


def scenarios(v: Any) -> tuple[str, ...] | None:
    """Scenario names (class, domain, task), or None for the benchmark's first."""
    if v is None:
        return None
    found = names(v, "a scenario or a list of them (class, domain, task)")
    for x in found:
        if x not in SCENARIO_NAMES:
            msg = f"unknown scenario {x!r}; expected one of {', '.join(SCENARIO_NAMES)}"
            raise Bad("class, domain or task", msg)
    return found


def seeds(v: Any) -> tuple[int, ...]:
    """One integer, a list of integers, or `0,1,2`."""
    if isinstance(v, str):
        try:
            v = [int(s) for s in v.split(",") if s.strip()]
        except ValueError:
            raise Bad("an integer or a list of integers") from None
    items = [v] if is_int(v) else v
    if not isinstance(items, (list, tuple)) or not items or not all(map(is_int, items)):
        raise Bad("an integer or a non-empty list of integers")
    return tuple(items)


def device(v: Any) -> str:
    """cpu, cuda, cuda:N or auto."""
    d = text(v)
    if d in ("cpu", "auto", "cuda") or (d.startswith("cuda:") and d[5:].isdigit()):
        return d
    raise Bad("cpu, cuda, cuda:N or auto")


def mapping(v: Any) -> dict[str, Any] | None:
    """A mapping with string keys (as a dict), or None."""
    if v is None:
        return None
    if isinstance(v, Mapping) and all(isinstance(k, str) for k in v):
        return dict(v)
    raise Bad("a mapping of option names to values")


def tracker(v: Any) -> dict[str, dict[str, Any]]:
    """`mlflow`, `mlflow,wandb`, a list of names, or `{name: {option: value}}`."""
    if v is None:
        return {}
    if isinstance(v, Mapping):
        out: dict[str, dict[str, Any]] = {}
        for name, opts in v.items():
            if not isinstance(name, str) or not (opts is None or isinstance(opts, Mapping)):
                raise Bad("tracker names mapped to mappings of options")
            out[name] = dict(opts or {})
        return out
    if isinstance(v, (list, tuple)):
        found = tuple(n for item in v for n in names(item, "tracker names"))
    else:
        found = names(v, "a tracker name, a list of them, or {name: {options}}")
    return {n: {} for n in found}


def sweep(v: Any) -> dict[str, tuple[Any, ...]]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise Bad("a mapping of 'strategy.param' (or a training setting) to a list of values")
    out = {}
    for k, vals in v.items():
        if not isinstance(k, str) or not isinstance(vals, (list, tuple)) or not vals:
            raise Bad(f"a non-empty list of values for each key (key {k!r} has {vals!r})")
        out[k] = tuple(vals)
    return out
