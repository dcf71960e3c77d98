"""The keys of an experiment config file, which are also the flags of `lifelong compare`:
each key's check and help, and `check_value`, whose errors name the source, the key, the
bad value and what was expected (unknown keys are refused with the list of valid ones).

The training keys (`epochs`, `lr`, `momentum`, ...), which of them a sweep may vary, their
help and checks are generated from the fields of `lifelong.config.TrainConfig` (the one
declaration of each training setting); the keys that are not training settings are
declared here. `lifelong.experiment.config` reads files and the command line with them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from lifelong.config import TRAIN_FIELDS, field_info
from lifelong.config import check_value as train_problem
from lifelong.experiment import values as chk

EXECUTORS = ("local", "ray")
#: Settings a sweep may vary (the rest of a run's config is fixed per sweep): the model,
#: the head and every `TrainConfig` field declared with `sweep=True`.
SWEEPABLE: tuple[str, ...] = ("model", "head") + tuple(
    k for k in TRAIN_FIELDS if field_info(k)["sweep"]
)


class ConfigError(ValueError):
    """A bad experiment config: the message names the source, key, value and expectation."""


def _train_checker(key: str) -> Callable[[Any], Any]:
    """The checker of training setting `key`: `lifelong.config.check_value`, the value
    normalised like the field (an int given for a float field becomes a float)."""
    kind = field_type(key)

    def check(v: Any) -> Any:
        problem = train_problem(key, v)
        if problem is not None:
            if kind in (int, float) and isinstance(v, str):
                problem += _number_text_hint(v)
            raise chk.Bad("", problem, names_key=True)
        return float(v) if kind is float and chk.is_int(v) else v

    return check


def _number_text_hint(text: str) -> str:
    """Why a number came as text: YAML 1.1 reads `1e-3` (no dot) as a string."""
    try:
        float(text)
    except ValueError:
        return ""
    mantissa, e, exponent = text.strip().lower().partition("e")
    if e and "." not in mantissa:
        return f" (YAML reads {text} as text; write {mantissa}.0e{exponent})"
    return " (a number in quotes is text; drop the quotes)"


def field_type(key: str) -> type:
    """The Python type of `TrainConfig` field `key` (`int | None` -> int)."""
    text = re.sub(r"<class '(\w+)'>", r"\1", str(field_info(key)["type"]))  # not postponed
    text = text.replace(" ", "").replace("|None", "").replace("None|", "")
    kinds = {"int": int, "float": float, "str": str, "bool": bool}
    if text not in kinds:  # a new kind of field: say so where it is declared
        raise TypeError(f"TrainConfig.{key}: cannot make a config key of type {text!r}")
    return kinds[text]


def _train_help(key: str) -> str:
    info = field_info(key)
    return str(info["help"]) + ("" if info["sweep"] else "; cannot be swept")


#: `TrainConfig` fields as config keys: checker and help, generated from the declarations.
TRAIN_CHECKS = {k: (_train_checker(k), _train_help(k)) for k in TRAIN_FIELDS}

CHECKS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "benchmark": (
        lambda x: chk.names(x, "a benchmark name or a list of them"),
        "benchmarks to run",
    ),
    "data": (
        chk.mapping,
        "your own data source (options of stream_from_files), instead of benchmark",
    ),
    "data_dir": (chk.opt_text, "folder where file-based benchmarks live"),
    "scenario": (chk.scenarios, "class, domain and/or task (default: the benchmark's first)"),
    "strategies": (chk.strategies, "strategy specs, e.g. [naive, 'ewc(lambda=100)']"),
    "sweep": (chk.sweep, "{'replay.mem_size': [100, 500], 'lr': [0.01, 0.1]}: grid of values"),
    "seeds": (chk.seeds, "seeds, e.g. [0, 1, 2]"),
    "model": (chk.text, "model spec, e.g. mlp or 'mlp(hidden=(256,256))'"),
    "head": (chk.choice("fixed", "grow"), "fixed or grow"),
    **TRAIN_CHECKS,
    "device": (chk.device, "cpu, cuda, cuda:N or auto"),
    "threads": (chk.opt_pos_int, "torch threads per run (default: cores // workers)"),
    "workers": (chk.opt_pos_int, "runs at once (default: one per core)"),
    "executor": (chk.choice(*EXECUTORS), "local (worker processes) or ray"),
    "address": (chk.opt_text, "address of an existing Ray cluster (executor: ray)"),
    "tracker": (chk.tracker, "mlflow, tensorboard, neptune and/or wandb"),
    "out": (
        chk.opt_text,
        "output folder (default runs/<config file name>, else runs/<benchmark>-<hash of the "
        "grid>: the same command resumes there)",
    ),
    "quiet": (chk.boolean, "no progress display"),
}
VALID_KEYS = tuple(CHECKS)


def check_value(source: str, key: str, value: Any, shown: str | None = None) -> Any:
    """Check one key's value; raise `ConfigError` naming source, key (as `shown`, e.g. a
    command-line flag), the value and what was expected."""
    if key not in CHECKS:
        close = difflib.get_close_matches(key, VALID_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{source}: unknown key {key!r}{hint}; valid keys: {', '.join(VALID_KEYS)}"
        )
    try:
        return CHECKS[key][0](value)
    except chk.Bad as e:
        if e.message and e.names_key:  # "lr must be a number > 0, got 0"
            flag = "" if (shown or key) == key else f"{shown}: "
            raise ConfigError(f"{source}: {flag}{e.message}") from None
        if e.message:
            raise ConfigError(f"{source}: {shown or key}: {e.message}") from None
        raise ConfigError(
            f"{source}: {shown or key}: expected {e}, got {value!r} ({type(value).__name__})"
        ) from None
