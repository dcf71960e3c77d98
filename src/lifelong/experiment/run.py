"""One run: a benchmark (or stream), a scenario, a strategy spec, a model and a seed.

`run(config)` trains through the stream, fills the accuracy matrix and returns one row of
`results.json` (see docs/architecture.md). Failures are caught by the executor, not here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from lifelong.config import TRAIN_FIELDS, TrainConfig
from lifelong.data.benchmarks import fingerprint, get_benchmark
from lifelong.data.experience import Stream
from lifelong.experiment.rundir import RunDir
from lifelong.learner import Learner, Result, resolve_device
from lifelong.models import parse_model_spec
from lifelong.strategies.base import Strategy
from lifelong.strategies.registry import (
    build_strategies,
    canonical_spec,
    check_serves,
    spec_params,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunConfig:
    """Everything that shapes a run's result (and so its `run_id`).

    `benchmark` names a registered benchmark; `data` instead describes the user's own data
    source (options of `lifelong.data.files.stream_from_files`); `data_dir` is where
    file-based benchmarks live. `train` holds every training setting (`TrainConfig`, the
    one settings object); `extra` holds further recorded parameters.
    """

    benchmark: str = "split-mnist-5k"
    scenario: str = "class"
    strategy: str = "naive"
    model: str = "mlp"
    head: str = "fixed"
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    data: dict[str, Any] | None = None
    data_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):  # from JSON (a run's config.json)
            object.__setattr__(self, "train", TrainConfig.from_dict(self.train))

    @staticmethod
    def from_dict(values: dict[str, Any]) -> RunConfig:
        """Read a config written by `asdict` (nested `train`), or one written before
        `train` was nested (its training settings at the top level)."""
        values = dict(values)
        train = dict(values.pop("train", None) or {})
        for key in TRAIN_FIELDS:
            if key in values:
                train[key] = values.pop(key)
        return RunConfig(**values, train=TrainConfig.from_dict(train))


#: training settings added after run keys were first written: left out of the key at
#: their defaults, so the keys of existing output folders stay valid
_KEY_OPTIONAL = {
    "precision": "fp32",
    "compile": False,
    "eval_batch_size": None,
    "reset_optimizer": True,
}


def config_hash(config: RunConfig, **fields: Any) -> str:
    """A stable 16-hex hash of a config plus `fields`. Device and threads are left out (they
    do not change what is computed); the training settings are hashed flat, as before they
    were nested in `train`, and the later ones only when they differ from their defaults,
    so a new option does not change the keys of runs that do not use it."""
    key = {k: v for k, v in asdict(config).items() if k not in ("device", "threads", "train")}
    for name, value in config.train.to_dict().items():
        if name in _KEY_OPTIONAL and value == _KEY_OPTIONAL[name]:
            continue
        key[name] = value
    key.update(fields)
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_id(config: RunConfig, strategy: str, fingerprint: str | None) -> str:
    """The `run_id` of results.json: the config hash with the canonical strategy spec and
    the data fingerprint, i.e. everything that shapes the result."""
    return config_hash(config, strategy=strategy, data=fingerprint)


def train_config(config: RunConfig, stream: Stream) -> TrainConfig:
    """The loop's settings for `config` on `stream` (online streams set their batch size)."""
    tcfg = config.train
    if stream.online:
        size = int(str(stream.info.get("online_batch_size", 10)))
        tcfg = tcfg.replace(online=True, batch_size=size)
    return tcfg


def check_scenario(strategies: list[Strategy], stream: Stream, config: RunConfig) -> None:
    """Refuse a stream of another scenario than asked, or a strategy that does not serve it."""
    if stream.scenario != config.scenario:
        raise ValueError(
            f"the stream is {stream.scenario!r} but the run asks for {config.scenario!r}"
        )
    check_serves(strategies, stream.scenario)


def make_stream(config: RunConfig) -> Stream:
    """The stream a config describes: the user's data source, or a named benchmark."""
    if config.data is not None:
        from lifelong.data.files import stream_from_files  # type: ignore[import-not-found,unused-ignore]

        stream: Stream = stream_from_files(scenario=config.scenario, **config.data)
        return stream
    options = {"data_dir": config.data_dir} if config.data_dir else {}
    return get_benchmark(config.benchmark, config.scenario, **options)


def model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse `--model`: `mlp`, `mlp(hidden=(256,256))` or `pkg.mod:factory(width=64)`."""
    return parse_model_spec(spec)


def run(
    config: RunConfig,
    stream: Stream | None = None,
    progress: Progress | None = None,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train through the stream with `config`; return the run's `results.json` row.
    `run_learner` does the same and also returns the trained `Learner`."""
    return run_learner(config, stream, progress, run_dir=run_dir, resume=resume)[1]


def run_learner(
    config: RunConfig,
    stream: Stream | None = None,
    progress: Progress | None = None,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> tuple[Learner, dict[str, Any]]:
    """Config -> objects -> `Learner.fit_stream`: the trained learner and the row.

    With `run_dir`, a checkpoint is written to `run_dir/checkpoint/` after every experience
    and the trained learner to `run_dir/model/` at the end (read it with `lifelong.load`).
    `resume=True` continues from that checkpoint when there is one (bit for bit on CPU) and
    starts afresh otherwise; `resume=False` starts afresh. Without `run_dir` nothing is
    written. See `lifelong.experiment.rundir`.
    """
    _warm_up()
    wall0 = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    strategies = build_strategies(config.strategy)
    stream = make_stream(config) if stream is None else stream
    check_scenario(strategies, stream, config)
    fp = str(stream.info.get("fingerprint") or fingerprint(stream))
    tcfg = train_config(config, stream)
    rid = run_id(config, canonical_spec(strategies), fp)
    ckpt = None if run_dir is None else RunDir(run_dir, config, rid, device)
    restored = ckpt.resume() if ckpt and resume else None
    if restored is not None:
        learner, result = restored
        learner.config = tcfg
        wall0 -= result.wall_seconds
        if progress:
            done = result.next_experience
            progress(f"resumed from {run_dir} after experience {done}/{len(stream)}")
    else:
        if ckpt is not None:
            ckpt.clear()
        learner = Learner(
            config.model,
            strategies,
            config=tcfg,
            scenario=config.scenario,
            head=config.head,
            device=device,
            seed=config.seed,
        )
        result = Result()
    on_experience = None if ckpt is None else ckpt.save_checkpoint
    result = learner.fit_stream(stream, on_experience, result=result, progress=progress)
    if ckpt is not None:
        ckpt.save_model(learner)
    row = results_row(config, rid, fp, stream, strategies, tcfg, result)
    row["wall_seconds"] = time.perf_counter() - wall0
    return learner, row


def results_row(
    config: RunConfig,
    rid: str,
    fp: str,
    stream: Stream,
    strategies: list[Strategy],
    tcfg: TrainConfig,
    st: Result,
) -> dict[str, Any]:
    """The run's `results.json` row (docs/architecture.md), metrics computed from the matrix."""
    matrix = st.matrix
    figures = st.metrics()
    params = {
        "model": config.model,
        "head": config.head,
        **tcfg.to_dict(),
        "data_fingerprint": fp,
        **spec_params(strategies),
        **config.extra,
    }
    return {
        "run_id": rid,
        "benchmark": stream.name,
        "scenario": stream.scenario,
        "strategy": canonical_spec(strategies),
        "params": params,
        "seed": config.seed,
        "status": "ok",
        "error": None,
        "n_experiences": len(stream),
        "accuracy_matrix": matrix,
        **figures,
        "train_seconds": st.train_seconds,
        "eval_seconds": st.eval_seconds,
        "wall_seconds": None,
        "peak_memory_mb": peak_memory_mb(),
    }


def _warm_up() -> None:
    """Import what torch imports lazily on the first optimizer step (`torch._dynamo`, a few
    seconds), so that a fresh process does not count it in the run's `train_seconds`."""
    with contextlib.suppress(ImportError):
        import torch._dynamo  # noqa: F401


def peak_memory_mb() -> float:
    """Peak resident memory of this process in MB (ru_maxrss: KB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
