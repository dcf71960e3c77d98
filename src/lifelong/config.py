"""`TrainConfig`: the one settings object for how a learner trains.

Every field declares its default, its check and its help text here, once. The rest is
generated from these declarations: the `lifelong compare` flags and YAML keys, the keys a
sweep may vary, the parameters recorded in `results.json`, and the checks that refuse a
bad value when a command is parsed (before any worker starts). See docs/architecture.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

OPTIMIZERS = ("sgd", "adam")
PRECISIONS = ("fp32", "bf16")


def setting(
    default: Any,
    help: str,
    check: Callable[[Any], str | None] | None = None,
    choices: tuple[Any, ...] | None = None,
    sweep: bool = True,
) -> Any:
    """A `TrainConfig` field: its default, help text, check (returns what is wrong, or
    None), allowed values, and whether a sweep may vary it."""
    meta = {"help": help, "check": check, "choices": choices, "sweep": sweep}
    return dataclasses.field(default=default, metadata=meta)


def _int_at_least(low: int, optional: bool = False) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if optional and v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            return f"an integer >= {low}" + (" (or null)" if optional else "")
        return None

    return check


def _number(
    low: float, high: float | None = None, low_open: bool = False, high_open: bool = True
) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            ok = False
        else:
            ok = (v > low if low_open else v >= low) and (
                high is None or (v < high if high_open else v <= high)
            )
        if ok:
            return None
        lo = f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high:g}"
        return f"a number {lo}{hi}"

    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


@dataclass(frozen=True)
class TrainConfig:
    """How each experience is trained (the reference protocol's values by default).

    `online=True` forces one epoch (single pass); `reset_optimizer` starts each experience
    with a fresh optimizer state; `eval_batch_size` None picks one from the input size
    (`lifelong.train.eval_batch_size`); `precision="bf16"` runs forward and loss under
    bfloat16 autocast (weights and optimizer stay float32); `compile=True` runs each step
    as a `torch.compile`d function (`lifelong.compiled`) when every strategy is
    `compile_safe`, eagerly otherwise (with a warning)."""

    epochs: int = setting(2, "training epochs per experience", _int_at_least(1))
    batch_size: int = setting(32, "training batch size", _int_at_least(1))
    optimizer: str = setting("sgd", "optimizer", choices=OPTIMIZERS)
    lr: float = setting(0.01, "learning rate", _number(0, low_open=True))
    momentum: float = setting(0.9, "SGD momentum", _number(0, 1))
    weight_decay: float = setting(0.0, "L2 weight decay", _number(0))
    eval_batch_size: int | None = setting(
        None, "evaluation batch size (default: sized from the input)", _int_at_least(1, True)
    )
    online: bool = setting(False, "single pass over each experience", _bool)
    reset_optimizer: bool = setting(True, "fresh optimizer state at each experience", _bool)
    precision: str = setting("fp32", "fp32, or bf16 autocast", choices=PRECISIONS)
    compile: bool = setting(False, "torch.compile the training step", _bool, sweep=False)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            problem = check_value(f.name, getattr(self, f.name))
            if problem is not None:
                raise ValueError(problem)
        if isinstance(self.lr, int) and not isinstance(self.lr, bool):  # 1 -> 1.0
            object.__setattr__(self, "lr", float(self.lr))
        if self.compile:
            check_compile()

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` (checked like any new config)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, refusing unknown keys with the list of valid ones."""
        unknown = sorted(set(values) - set(TRAIN_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown training setting(s) {', '.join(unknown)}; "
                f"valid: {', '.join(TRAIN_FIELDS)}"
            )
        return cls(**values)


TRAIN_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig))


def field_info(name: str) -> dict[str, Any]:
    """The declaration of `TrainConfig` field `name`: default, help, check, choices, sweep,
    and `type` (the field's annotation as a string)."""
    for f in dataclasses.fields(TrainConfig):
        if f.name == name:
            return {"default": f.default, "type": str(f.type), **f.metadata}
    raise KeyError(name)


def add_train_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per `TrainConfig` field (`--batch-size`, `--no-reset-optimizer`, ...), with
    its declared type, choices, default and help; read back with `train_from_args`."""
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag, kind = "--" + f.name.replace("_", "-"), str(f.type)
        shown = "" if f.default is None else f" (default {f.default})"
        help_text = f"{f.metadata['help']}{shown}"
        if kind == "bool":
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text
            )
            continue
        convert = int if kind.startswith("int") else float if kind == "float" else str
        parser.add_argument(
            flag, type=convert, default=f.default, help=help_text, choices=f.metadata["choices"]
        )


def train_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of flags added by `add_train_arguments` (checked: a bad value
    raises `ValueError` naming the setting)."""
    return TrainConfig(**{k: getattr(args, k) for k in TRAIN_FIELDS if hasattr(args, k)})


def check_value(name: str, value: Any) -> str | None:
    """What is wrong with `value` for training setting `name`, or None when it is valid."""
    info = field_info(name)
    if info["choices"] is not None and value not in info["choices"]:
        return f"unknown {name} {value!r}; expected one of {', '.join(map(str, info['choices']))}"
    want = info["check"](value) if info["check"] is not None else None
    return None if want is None else f"{name} must be {want}, got {value!r}"


def compile_unavailable(device_type: str | None = None) -> str | None:
    """Why `torch.compile` cannot run here (on `device_type`, when given), or None."""
    import torch  # here, so that reading settings (`lifelong --help`) does not load torch

    version = torch.__version__
    if not hasattr(torch, "compile"):
        return f"torch {version} has no torch.compile (it needs torch >= 2.0)"
    import torch._dynamo as dynamo

    if not dynamo.eval_frame.is_dynamo_supported():
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        return f"torch.compile of torch {version} does not support Python {py}"
    if device_type == "cpu" and not (
        os.environ.get("CXX") or any(shutil.which(c) for c in ("g++", "c++", "clang++"))
    ):
        return "torch.compile on CPU needs a C++ compiler (g++ or clang++; or set CXX)"
    if device_type == "cuda" and importlib.util.find_spec("triton") is None:
        return "torch.compile on CUDA needs the triton package"
    return None


def check_compile(device_type: str | None = None) -> None:
    """Raise a `ValueError` saying why `compile=True` cannot work here, if it cannot."""
    reason = compile_unavailable(device_type)
    if reason is not None:
        raise ValueError(f"compile=True is not possible here: {reason}; train without it")


#: the defaults, for comparisons (`config == DEFAULT_TRAIN` fields)
DEFAULT_TRAIN = TrainConfig()
