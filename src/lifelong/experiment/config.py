"""Experiment config files: the grid `lifelong compare experiment.yaml` runs.

A config is a YAML mapping whose keys are the options of `lifelong compare` (underscores
for dashes: `batch_size`), plus `data` (the user's own data source) and `sweep` (lists of
hyper-parameters to try). `load_config(path, overrides)` reads, checks and merges them;
command-line flags the user actually passed override single keys. Every error names the
file, the key, the bad value and what was expected; unknown keys are refused with the
list of valid ones.

The grid is benchmark x scenario x strategy x sweep x seed. A sweep key `name.param`
(e.g. `replay.mem_size: [100, 500]`) applies to every spec of `strategies` that contains
strategy `name`; a key naming a training setting (`lr`, `epochs`, ...) applies to all runs.
Several keys form their Cartesian product.

The keys, their checks and help are `lifelong.experiment.config_keys` (the training keys
generated from the fields of `lifelong.config.TrainConfig`); the grid of a sweep is
`lifelong.experiment.sweep`. This module reads files and the command line with them, and
generates `lifelong compare`'s flags from the same keys.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong.config import TRAIN_FIELDS, TrainConfig, field_info
from lifelong.experiment.config_keys import (
    CHECKS,
    EXECUTORS,
    SWEEPABLE,
    VALID_KEYS,
    ConfigError,
    check_value,
    field_type,
)
from lifelong.experiment.paths import against_file, missing_data
from lifelong.experiment.sweep import expand_sweep
from lifelong.spec import parse_one, split_top_level

if TYPE_CHECKING:  # torch-free at import time, so `lifelong --help` stays quick
    from lifelong.experiment.run import RunConfig

#: Keys that say how or where a grid runs, not what it computes: left out of `grid_hash`.
_HOW_KEYS = ("device", "threads", "workers", "executor", "address", "tracker", "out", "quiet")
#: Keys copied as they are from the experiment to every run's `RunConfig`.
_RUN_KEYS = ("model", "head", "device", "data", "data_dir")


#: public names; the keys' and the sweep's are re-exported from `config_keys` and `sweep`
__all__ = [
    "CHECKS",
    "EXECUTORS",
    "FILE_ONLY",
    "SWEEPABLE",
    "VALID_KEYS",
    "ConfigError",
    "ExperimentConfig",
    "add_compare_options",
    "check_value",
    "cli_overrides",
    "expand_sweep",
    "load_config",
    "read_file",
]


@dataclass(frozen=True)
class ExperimentConfig:
    """A checked experiment: the grid to run and how to run it (see the module docstring).

    `train` holds the training settings, which the file and the command line give as
    top-level keys (`epochs: 1`, `--epochs 1`)."""

    benchmark: tuple[str, ...] = ("split-mnist-5k",)
    data: dict[str, Any] | None = None
    data_dir: str | None = None
    scenario: tuple[str, ...] | None = None
    strategies: tuple[str, ...] = ("naive", "ewc", "lwf", "replay", "derpp", "cumulative", "joint")
    sweep: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)
    model: str = "mlp"
    head: str = "fixed"
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "cpu"
    threads: int | None = None
    workers: int | None = None
    executor: str = "local"
    address: str | None = None
    tracker: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: str | None = None
    quiet: bool = False

    def scenarios_of(self, benchmark: str) -> tuple[str, ...]:
        """The scenarios run on `benchmark` (default: its first; `class` for own data)."""
        if self.scenario:
            return self.scenario
        if self.data is not None:
            return ("class",)
        from lifelong.data.benchmarks import BENCHMARKS

        return (BENCHMARKS[benchmark].scenarios[0],)

    def run_configs(self, threads: int | None = None) -> list[RunConfig]:
        """Every run of the grid, in order: benchmark, scenario, strategy, sweep, seed."""
        from lifelong.experiment.run import RunConfig

        benchmarks = ("data",) if self.data is not None else self.benchmark
        out = []
        for bench in benchmarks:
            for scen in self.scenarios_of(bench):
                for spec, settings in expand_sweep(self.strategies, self.sweep):
                    train = self.train.replace(
                        **{k: v for k, v in settings.items() if k in TRAIN_FIELDS}
                    )
                    base = RunConfig(
                        benchmark=RunConfig.benchmark if self.data is not None else bench,
                        scenario=scen,
                        strategy=spec,
                        threads=threads or self.threads,
                        train=train,
                        **{k: getattr(self, k) for k in _RUN_KEYS},
                    )
                    own = {k: v for k, v in settings.items() if k not in TRAIN_FIELDS}
                    out += [replace(base, seed=s, **own) for s in self.seeds]
        return out

    def to_dict(self) -> dict[str, Any]:
        """The experiment as a config file's mapping (training settings at the top level,
        lists for tuples): `load_config` of it gives this experiment back."""
        out: dict[str, Any] = {}
        for key in VALID_KEYS:
            v = getattr(self.train, key) if key in TRAIN_FIELDS else getattr(self, key)
            if isinstance(v, dict):
                v = {k: list(x) if isinstance(x, tuple) else x for k, x in v.items()}
            out[key] = list(v) if isinstance(v, tuple) else v
        return out

    def default_out(self, config_path: str | None) -> str:
        """`out`, else `runs/<config file stem>`, else `runs/<benchmark>-<grid hash>`: the
        same command finds its folder again (and resumes there); another grid gets another."""
        if self.out:
            return self.out
        if config_path:
            return os.path.join("runs", Path(config_path).stem)
        return os.path.join("runs", f"{self._source_name()}-{self.grid_hash()}")

    def grid_hash(self) -> str:
        """8 hex digits of what shapes the grid's results (not how or where it runs)."""
        default = ExperimentConfig().to_dict()  # keys at their defaults are left out, so a
        grid = {  # setting added in a later version does not move existing folders
            k: v for k, v in self.to_dict().items() if k not in _HOW_KEYS and v != default[k]
        }
        text = json.dumps(grid, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def _source_name(self) -> str:
        if self.data is not None:
            return Path(str(self.data.get("path", "data"))).stem or "data"
        more = f"+{len(self.benchmark) - 1}" if len(self.benchmark) > 1 else ""
        return self.benchmark[0] + more


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw mapping of a YAML (or JSON) config file."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror or e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys to values at the top level, "
            f"got {type(raw).__name__}; valid keys: {', '.join(VALID_KEYS)}"
        )
    return raw


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None
) -> ExperimentConfig:
    """Read `path` (optional), apply `overrides` (keys the user set on the command line),
    check every value and the grid as a whole, and return the `ExperimentConfig`."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if path is not None:
        for key, value in read_file(path).items():
            values[key] = check_value(str(path), str(key), value)
            origin[key] = str(path)
        values = against_file(values, path)
    for key, value in (overrides or {}).items():
        other = {"data": "benchmark", "benchmark": "data"}.get(key)
        if other and value is not None and origin.get(other) == str(path):
            values.pop(other)  # a data source on the command line replaces the file's
        values[key] = check_value("command line", key, value, _flag(key))
        origin[key] = f"command line ({_flag(key)})"
    default_src = str(path) if path is not None else "command line"

    def src(key: str) -> str:
        return origin.get(key, default_src)

    if values.get("data") is not None and "benchmark" in values:
        raise ConfigError(f"{src('data')}: give either benchmark or data, not both")
    values["train"] = _train_config(
        {k: values.pop(k) for k in TRAIN_FIELDS if k in values},
        values.get("device", ExperimentConfig.device),
        src,
    )
    values["sweep"] = _check_sweep(values.get("sweep", {}), src("sweep"))
    if src("strategies") != src("sweep"):  # strategies from the command line: keep the
        names = _strategy_names(values.get("strategies", ExperimentConfig.strategies))
        values["sweep"] = {  # file's sweep keys that still apply
            k: v for k, v in values["sweep"].items() if "." not in k or k.split(".")[0] in names
        }
    cfg = ExperimentConfig(**values)
    _check_grid(cfg, src)
    return cfg


def _train_config(settings: dict[str, Any], device: str, src: Callable[[str], str]) -> TrainConfig:
    """The experiment's `TrainConfig` from its (checked) training keys; `compile: true`
    refused, naming where it was set, where torch.compile cannot run on `device`."""
    if settings.get("compile"):
        from lifelong.config import compile_unavailable

        reason = compile_unavailable("cpu" if device == "cpu" else None)
        if reason is not None:
            raise ConfigError(f"{src('compile')}: compile: true is not possible here: {reason}")
    try:
        return TrainConfig.from_dict(settings)
    except ValueError as e:  # a check across settings (each one was checked alone)
        raise ConfigError(f"{src(next(iter(settings), 'train'))}: {e}") from None


def _strategy_names(specs: Sequence[str]) -> set[str]:
    try:
        return {parse_one(p)[0] for s in specs for p in split_top_level(s, "+")}
    except ValueError:
        return set()  # reported with the file and key by _check_grid


def _check_sweep(sweep: dict[str, tuple[Any, ...]], source: str) -> dict[str, tuple[Any, ...]]:
    """Check (and normalise) the values of swept training settings."""
    out = {}
    for key, vals in sweep.items():
        if key in TRAIN_FIELDS and key not in SWEEPABLE:
            raise ConfigError(
                f"{source}: sweep: {key!r} cannot be swept; set it once for the experiment "
                f"({key}: ...); a sweep may vary {', '.join(SWEEPABLE)}"
            )
        if "." not in key and key not in SWEEPABLE:
            raise ConfigError(
                f"{source}: sweep: unknown key {key!r}; expected 'strategy.param' "
                f"or one of {', '.join(SWEEPABLE)}"
            )
        check = "." not in key
        out[key] = tuple(check_value(f"{source}: sweep", key, v) if check else v for v in vals)
    return out


def _check_grid(cfg: ExperimentConfig, src: Callable[[str], str]) -> None:
    """Cross-key checks: benchmark names and scenarios, strategy specs, sweep keys."""
    from lifelong.data.benchmarks import BENCHMARKS

    if cfg.data is None:
        for b in cfg.benchmark:
            if b not in BENCHMARKS:
                raise ConfigError(
                    f"{src('benchmark')}: benchmark: unknown benchmark {b!r}; "
                    f"expected one of {', '.join(sorted(BENCHMARKS))}"
                )
            bad = [s for s in cfg.scenario or () if s not in BENCHMARKS[b].scenarios]
            if bad:
                raise ConfigError(
                    f"{src('scenario')}: scenario: benchmark {b!r} does not define the "
                    f"{bad[0]!r} scenario; it defines {', '.join(BENCHMARKS[b].scenarios)}"
                )
    else:
        _check_data(cfg.data, src("data"))
    try:
        expand_sweep(cfg.strategies, {})
    except ValueError as e:
        raise ConfigError(f"{src('strategies')}: strategies: {e}") from None
    try:
        expand_sweep(cfg.strategies, cfg.sweep)
    except ValueError as e:
        raise ConfigError(f"{src('sweep')}: sweep: {e}") from None


def _check_data(data: dict[str, Any], source: str) -> None:
    """Check `data` keys against `stream_from_files`'s parameters, where that module exists."""
    import inspect

    try:
        from lifelong.data.files import stream_from_files  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return
    problem = missing_data(data.get("path"), source)
    if problem is not None:
        raise ConfigError(problem)
    params = inspect.signature(stream_from_files).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n in params if n != "scenario"]
    for key in data:
        if key not in valid:
            raise ConfigError(
                f"{source}: data: unknown key {key!r}; valid keys: {', '.join(valid)}"
            )


# -- the command line of `lifelong compare`, generated from the same keys ------------------
#: Keys set in the file only (the data source has its own flags in the CLI).
FILE_ONLY = ("data", "data_dir", "sweep")
#: Types and choices of the flags of the keys that are not training settings (those of the
#: training settings come from `TrainConfig`'s fields).
_TYPES: dict[str, Any] = {"threads": int, "workers": int}
_CHOICES: dict[str, tuple[str, ...]] = {"head": ("fixed", "grow"), "executor": EXECUTORS}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    """Add the config-file argument and one flag per config key to `parser`.

    Every flag defaults to None, so `cli_overrides` knows which ones the user gave."""
    parser.add_argument(
        "config", nargs="?", default=None, help="experiment file (YAML); flags override its keys"
    )
    defaults = ExperimentConfig()
    for key, (_, help_text) in CHECKS.items():
        if key in FILE_ONLY:
            continue
        train = key in TRAIN_FIELDS
        default = getattr(defaults.train if train else defaults, key)
        kind = field_type(key) if train else type(default)
        choices = field_info(key)["choices"] if train else _CHOICES.get(key)
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        shown = (
            "" if default is None or default is False or default == {} else f" (default {default})"
        )
        kwargs: dict[str, Any] = {"default": None, "help": help_text + shown}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif key == "tracker":
            kwargs.update(action="append", help=help_text + "; repeatable or comma-separated")
        else:
            kwargs.update(type=kind if train else _TYPES.get(key, str), choices=choices)
        parser.add_argument(_flag(key), **kwargs)


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the user set on the command line (flags left out are None)."""
    return {
        k: v for k in VALID_KEYS if k not in FILE_ONLY and (v := getattr(args, k, None)) is not None
    }
