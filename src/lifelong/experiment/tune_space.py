"""The search space of `lifelong tune`: `--param` ranges, checked against the strategy.

`parse_param` reads one `--param` (`NAME=LOW:HIGH`, `NAME=log:LOW:HIGH`, `NAME=int:LOW:HIGH`,
`NAME=int:log:LOW:HIGH` or `NAME=A|B|C`) into a `ParamSpace`; `check_spaces` checks each
one is a hyper-parameter of the strategy being tuned (and draws integer-annotated ones as
integers).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lifelong.spec import parse_one, parse_value, split_top_level

if TYPE_CHECKING:  # optuna is imported only when a study runs
    import optuna


@dataclass(frozen=True)
class ParamSpace:
    """The range of one hyper-parameter: `low`..`high` (log-scaled if `log`), or `choices`."""

    name: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Draw this parameter's value for `trial`."""
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


def parse_param(text: str) -> ParamSpace:
    """Parse `--param`: `NAME=LOW:HIGH`, `NAME=log:LOW:HIGH`, `NAME=int:LOW:HIGH`,
    `NAME=int:log:LOW:HIGH` or `NAME=A|B|C` (a choice among values)."""
    name, eq, body = text.partition("=")
    name = name.strip()
    if not eq or not name or not body.strip():
        raise ValueError(f"malformed --param {text!r}: expected NAME=LOW:HIGH, e.g. 'alpha=0.1:2'")
    if "|" in body:
        choices = tuple(parse_value(c.strip()) for c in body.split("|"))
        return ParamSpace(name, choices=choices)
    parts = [p.strip() for p in body.split(":")]
    flags = {p for p in parts[:-2] if p in ("log", "int")}
    if len(parts) < 2 or len(flags) != len(parts) - 2:
        raise ValueError(
            f"malformed --param {text!r}: expected NAME=[int:][log:]LOW:HIGH or NAME=A|B|C"
        )
    try:
        low, high = float(parts[-2]), float(parts[-1])
    except ValueError:
        raise ValueError(f"--param {text!r}: LOW and HIGH must be numbers") from None
    if not low < high:
        raise ValueError(f"--param {text!r}: LOW must be below HIGH")
    if "log" in flags and low <= 0:
        raise ValueError(f"--param {text!r}: a log range needs LOW > 0")
    return ParamSpace(name, low, high, log="log" in flags, integer="int" in flags)


def check_spaces(
    strategy: str, spaces: Sequence[ParamSpace]
) -> tuple[str, dict[str, Any], tuple[ParamSpace, ...]]:
    """Parse the base spec (`name` or `name(fixed=...)`) and check each tuned parameter is a
    hyper-parameter of it; integer-annotated ones are drawn as integers."""
    from lifelong.strategies.registry import registry

    if len(split_top_level(strategy, "+")) != 1:
        raise ValueError(f"tune one strategy at a time, got the hybrid {strategy!r}")
    name, fixed = parse_one(strategy)
    reg = registry()
    if name not in reg:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(sorted(reg))}")
    cls = reg[name]
    hints = typing.get_type_hints(cls.__init__)
    valid = {("lambda" if a == "lambda_" else a): a for a in cls.param_names()}
    if not spaces:
        raise ValueError("give at least one --param to tune")
    out = []
    for sp in spaces:
        if sp.name not in valid:
            names = ", ".join(valid) or "(none)"
            raise ValueError(f"strategy {name!r} has no parameter {sp.name!r}; valid: {names}")
        if sp.name in fixed:
            raise ValueError(f"{sp.name!r} is both fixed in {strategy!r} and tuned")
        if not sp.choices and hints.get(valid[sp.name]) is int:
            sp = replace(sp, integer=True)
        if sp.integer and (sp.low != int(sp.low) or sp.high != int(sp.high)):
            raise ValueError(f"{name}.{sp.name} is an integer; got the range {sp.low}:{sp.high}")
        out.append(sp)
    if len({sp.name for sp in out}) != len(out):
        raise ValueError("each --param may be given once")
    return name, fixed, tuple(out)
