"""One run: a benchmark (or stream), a scenario, a strategy spec, a model and a seed.

`run(config)` trains through the stream, fills the accuracy matrix and returns one row of
`results.json` (see DESIGN.md). Failures are caught by the executor, not here.
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
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lifelong import metrics
from lifelong.data.experience import Stream
from lifelong.strategies.base import Strategy
from lifelong.strategies.registry import canonical_spec, spec_params

if TYPE_CHECKING:
    from lifelong.checkpoint import RunDir, RunState
    from lifelong.train import Evaluator, TrainConfig

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunConfig:
    """Everything that shapes a run's result (and so its `run_id`).

    `benchmark` names a registered benchmark; `data` instead describes the user's own data
    source (options of `lifelong.data.files.stream_from_files`); `data_dir` is where
    file-based benchmarks live. `extra` holds further recorded parameters. `precision`
    ("fp32" or "bf16": bfloat16 autocast) and `compile` (the compiled step, see
    `lifelong.compiled`) are training settings.
    """

    benchmark: str = "split-mnist-5k"
    scenario: str = "class"
    strategy: str = "naive"
    model: str = "mlp"
    head: str = "fixed"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 2
    batch_size: int = 32
    online: bool = False
    precision: str = "fp32"
    compile: bool = False
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    data: dict[str, Any] | None = None
    data_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_device(device: str) -> torch.device:
    """`cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available) -> a `torch.device`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or auto")
    return torch.device(device)


def config_hash(config: RunConfig, **fields: Any) -> str:
    """A stable 16-hex hash of a config plus `fields`. Device and threads are left out (they
    do not change what is computed), and so are `precision`/`compile` at their defaults, so
    adding an option does not change the hashes of runs that do not use it."""
    key = {k: v for k, v in asdict(config).items() if k not in ("device", "threads")}
    for name, default in (("precision", "fp32"), ("compile", False)):
        if key.get(name) == default:
            key.pop(name)
    key.update(fields)
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_id(config: RunConfig, strategy: str, fingerprint: str | None) -> str:
    """The `run_id` of results.json: the config hash with the canonical strategy spec and
    the data fingerprint, i.e. everything that shapes the result."""
    return config_hash(config, strategy=strategy, data=fingerprint)


def train_config(config: RunConfig, stream: Stream) -> TrainConfig:
    """The loop's settings for `config` on `stream` (online streams set their batch size)."""
    from lifelong.train import TrainConfig

    tcfg = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        online=config.online or stream.online,
        precision=config.precision,
        compile=config.compile,
    )
    if stream.online:
        tcfg = replace(tcfg, batch_size=int(str(stream.info.get("online_batch_size", 10))))
    return tcfg


def check_scenario(strategies: list[Strategy], stream: Stream, config: RunConfig) -> None:
    """Refuse a stream of another scenario than asked, or a strategy that does not serve it."""
    if stream.scenario != config.scenario:
        raise ValueError(
            f"the stream is {stream.scenario!r} but the run asks for {config.scenario!r}"
        )
    for s in strategies:
        if stream.scenario not in s.scenarios:
            raise ValueError(
                f"strategy {s.name!r} serves the {', '.join(s.scenarios)} scenario(s), "
                f"not {stream.scenario!r}"
            )


def make_stream(config: RunConfig) -> Stream:
    """The stream a config describes: the user's data source, or a named benchmark."""
    if config.data is not None:
        from lifelong.data.files import stream_from_files  # type: ignore[import-not-found,unused-ignore]

        stream: Stream = stream_from_files(scenario=config.scenario, **config.data)
        return stream
    from lifelong.data.benchmarks import get_benchmark

    options = {"data_dir": config.data_dir} if config.data_dir else {}
    return get_benchmark(config.benchmark, config.scenario, **options)


def model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse `--model`: `mlp`, `mlp(hidden=(256,256))` or `pkg.mod:factory(width=64)`."""
    from lifelong.models import parse_model_spec

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

    With `run_dir`, a checkpoint is written to `run_dir/checkpoint/` after every experience
    and the trained model to `run_dir/model/` at the end (read it with `lifelong.load`).
    `resume=True` continues from that checkpoint when there is one (bit for bit on CPU) and
    starts afresh otherwise; `resume=False` starts afresh. Without `run_dir` nothing is
    written. See `lifelong.checkpoint`.
    """
    from lifelong.checkpoint import RunDir, RunState
    from lifelong.data.benchmarks import fingerprint
    from lifelong.models import build_model
    from lifelong.strategies.registry import build_strategies
    from lifelong.train import Evaluator

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
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    stream = stream.to(device)
    name, mparams = model_spec(config.model)
    model = build_model(name, stream, head=config.head, **mparams).to(device)
    evaluator = Evaluator(stream, tcfg.eval_batch_size)
    rid = run_id(config, canonical_spec(strategies), fp)
    ckpt = None if run_dir is None else RunDir(run_dir, config, rid, stream, device)
    st, optimizer = RunState(), None
    restored = ckpt.resume(model, strategies, tcfg, gen) if ckpt and resume else None
    if restored is not None:
        model, optimizer, st = restored
        wall0 -= st.wall_seconds
        if progress:
            progress(f"resumed from {run_dir} after experience {st.next_experience}/{len(stream)}")
    elif ckpt is not None:
        ckpt.clear()
    if not st.baseline:
        t0 = time.perf_counter()
        st.baseline = evaluator.row(model, strategies)
        st.eval_seconds += time.perf_counter() - t0
    model = _train_stream(
        model, strategies, stream, tcfg, gen, optimizer, st, evaluator, ckpt, wall0, progress
    )
    if ckpt is not None:
        ckpt.save_model(model, strategies)
    row = results_row(config, rid, fp, stream, strategies, tcfg, st)
    row["wall_seconds"] = time.perf_counter() - wall0
    return {**row, "_model": model, "_strategies": strategies}


def _train_stream(
    model: nn.Module,
    strategies: list[Strategy],
    stream: Stream,
    tcfg: TrainConfig,
    gen: torch.Generator,
    optimizer: torch.optim.Optimizer | None,
    st: RunState,
    evaluator: Evaluator,
    ckpt: RunDir | None,
    wall0: float,
    progress: Progress | None,
) -> nn.Module:
    """Train on each remaining experience, fill a row of the matrix after each, checkpoint."""
    from lifelong.train import train_experience

    T, whole = len(stream), any(s.sees_whole_stream for s in strategies)
    for i in range(st.next_experience, T):
        seen = stream.experiences if whole else stream.experiences[: i + 1]

        def on_epoch(e: int, n: int, i: int = i) -> None:
            if progress:
                progress(f"experience {i + 1}/{T} epoch {e}/{n}")

        t0 = time.perf_counter()
        model, optimizer = train_experience(
            model, strategies, stream[i], seen, optimizer, tcfg, gen, on_epoch
        )
        _sync(next(model.parameters()).device)
        st.train_seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        st.matrix.append(evaluator.row(model, strategies))
        st.eval_seconds += time.perf_counter() - t0
        if ckpt is not None:  # not counted in train_seconds
            st.next_experience, st.wall_seconds = i + 1, time.perf_counter() - wall0
            ckpt.save_checkpoint(model, strategies, optimizer, gen, st)
    return model


def results_row(
    config: RunConfig,
    rid: str,
    fp: str,
    stream: Stream,
    strategies: list[Strategy],
    tcfg: TrainConfig,
    st: RunState,
) -> dict[str, Any]:
    """The run's `results.json` row (DESIGN.md), metrics computed from the matrix."""
    matrix = st.matrix
    params = {
        "model": config.model,
        "head": config.head,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "momentum": config.momentum,
        "weight_decay": config.weight_decay,
        "epochs": tcfg.epochs,
        "batch_size": tcfg.batch_size,
        "online": tcfg.online,
        "precision": tcfg.precision,
        "compile": tcfg.compile,
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
        "final_average_accuracy": metrics.final_average_accuracy(matrix),
        "average_forgetting": metrics.average_forgetting(matrix),
        "backward_transfer": metrics.backward_transfer(matrix),
        "forward_transfer": metrics.forward_transfer(matrix, st.baseline),
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb() -> float:
    """Peak resident memory of this process in MB (ru_maxrss: KB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
