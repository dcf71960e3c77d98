"""Many runs at once in one process: S seeds (or learning rates) of one MLP config, trained
together on stacked parameters.

`run_batched(config, seeds)` returns the same `results.json` rows as calling
`lifelong.experiment.run.run` once per seed. The S models' weights are stacked
(`[S, out, in]`) and every layer of all S models is one batched matrix product
(`torch.baddbmm` / `torch.bmm`), so one step of S runs costs about as many kernel launches
as one step of one run: the gain is meant for GPUs, where a small MLP's run is bound by
launches (not yet measured there). On one CPU core it costs about what S separate runs
cost (see `benchmarks/many_seeds.py`). The stacked arithmetic (layers, backward pass, SGD,
evaluation) is `lifelong.experiment.stacked`; this module checks what it can train and runs
it through the one stream loop.

Each run is exactly the run `run()` would make:
* its model is initialised by `torch.manual_seed(seed)` then `build_model(...)`;
* its batch order is its own `torch.Generator().manual_seed(seed)` randperm sequence, as
  in `lifelong.train.train_experience`;
* its optimizer is its own SGD (with momentum / weight decay), applied by torch's own
  functional `torch.optim.sgd.sgd` on the stacked tensors (the implementation
  `torch.optim.SGD` would pick on that device), its state reset at each experience like
  the default `TrainConfig(reset_optimizer=True)`;
* the gradients are written out by hand (back-propagation through Linear/ReLU with the
  same matrix products autograd uses for `nn.Linear`; autograd through `bmm`, or
  `torch.func.vmap`, computes the weight gradient as `h^T g` instead of `(g^T h)`, which
  rounds differently), so on CPU the accuracy matrices and trained weights are bit for bit
  those of separate runs (checked by `tests/experiment/test_batched.py`). On CUDA, batched
  and single cuBLAS kernels may round differently: expect tiny differences there.

Supported: the `mlp` model without dropout and with the fixed head (class and domain
scenarios), SGD, and the strategies that only change the training data (`naive`,
`joint`, `cumulative`). Runs may differ by seed and by learning rate (`lrs=`). Anything
else is refused with a `ValueError` that names it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from lifelong.config import TrainConfig
from lifelong.data.benchmarks import fingerprint
from lifelong.data.experience import Experience, Stream, TensorSet
from lifelong.experiment.run import (
    RunConfig,
    make_stream,
    model_spec,
    peak_memory_mb,
    results_row,
    run_id,
    train_config,
)
from lifelong.experiment.stacked import (
    BatchedEvaluator,
    StackedMLP,
    StackedSGD,
    logit_gradient,
    lr_groups,
    train_experience_batched,
)
from lifelong.inputs import resolve_device
from lifelong.loop import stream_loop
from lifelong.models import build_model
from lifelong.results import Result as RunState
from lifelong.strategies.base import Strategy
from lifelong.strategies.registry import build_strategies, canonical_spec, check_serves

#: Strategies `run_batched` trains: those whose only hook is `train_data` (same data for
#: every run).
SUPPORTED_STRATEGIES = ("naive", "joint", "cumulative")
SUPPORTED_MODELS = ("mlp",)
#: public names; the stacked arithmetic's are re-exported from `stacked`
__all__ = [
    "SUPPORTED_MODELS",
    "SUPPORTED_STRATEGIES",
    "BatchedEvaluator",
    "StackedMLP",
    "StackedSGD",
    "check_supported",
    "logit_gradient",
    "lr_groups",
    "run_batched",
    "train_batched",
    "train_experience_batched",
]


def check_supported(config: RunConfig, stream: Stream) -> list[Strategy]:
    """The config's strategies, or a `ValueError` naming what `run_batched` cannot train."""

    strategies = build_strategies(config.strategy)
    bad = [s.name for s in strategies if s.name not in SUPPORTED_STRATEGIES]
    if bad:
        raise ValueError(
            f"run_batched cannot train strategy {', '.join(bad)} (spec {config.strategy!r}); "
            f"it trains only {', '.join(SUPPORTED_STRATEGIES)} -- use run() for the others"
        )
    name, params = model_spec(config.model)
    if name not in SUPPORTED_MODELS or set(params) - {"hidden", "dropout"}:
        raise ValueError(
            f"run_batched cannot train model {config.model!r}; it trains only "
            f"{', '.join(SUPPORTED_MODELS)} (with `hidden`, without dropout)"
        )
    if float(params.get("dropout", 0.0)):
        raise ValueError(
            f"run_batched cannot train model {config.model!r}: dropout is not supported"
        )
    if config.head != "fixed":
        raise ValueError(f"run_batched supports head 'fixed' only, got {config.head!r}")
    train = config.train
    if train.optimizer != "sgd":
        raise ValueError(f"run_batched supports optimizer 'sgd' only, got {train.optimizer!r}")
    if train.precision != "fp32" or train.compile:
        raise ValueError(
            f"run_batched trains in eager fp32 only, got precision={train.precision!r}, "
            f"compile={train.compile!r}"
        )
    if stream.scenario == "task":
        raise ValueError(
            "run_batched supports the class and domain scenarios, not 'task' (multi-head model)"
        )
    check_serves(strategies, stream.scenario)
    return strategies


def _stream(config: RunConfig, stream: Stream | None) -> Stream:
    if stream is None:
        return make_stream(config)
    if stream.scenario != config.scenario:
        raise ValueError(
            f"the stream is {stream.scenario!r} but the run asks for {config.scenario!r}"
        )
    return stream


def _run_configs(
    config: RunConfig, seeds: Sequence[int], lrs: Sequence[float] | None
) -> list[RunConfig]:
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("run_batched needs at least one seed, got none")
    lrs = [config.train.lr] * len(seeds) if lrs is None else [float(v) for v in lrs]
    if len(lrs) != len(seeds):
        raise ValueError(f"lrs needs one learning rate per seed ({len(seeds)}), got {len(lrs)}")
    bad = [v for v in lrs if not v > 0]
    if bad:
        raise ValueError(f"every learning rate must be > 0, got {bad}")
    return [replace(config, seed=s, train=config.train.replace(lr=lr)) for s, lr in zip(seeds, lrs)]


def _init_model(config: RunConfig, stream: Stream, device: torch.device) -> nn.Module:
    """The model `run(config)` starts from: `torch.manual_seed(seed)`, then `build_model`."""

    torch.manual_seed(config.seed)
    name, params = model_spec(config.model)
    return build_model(name, stream, head=config.head, **params).to(device)


def _unstack(net: StackedMLP, models: Sequence[nn.Module]) -> None:
    """Copy each run's trained weights from `net` into its own model."""
    with torch.no_grad():
        for s, model in enumerate(models):
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            for layer, w, b in zip(linears, net.weights, net.biases):
                layer.weight.copy_(w[s])
                layer.bias.copy_(b[s])


def run_batched(
    config: RunConfig,
    seeds: Sequence[int],
    stream: Stream | None = None,
    *,
    lrs: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """The rows of `train_batched` (without the trained models)."""
    return train_batched(config, seeds, stream, lrs=lrs)[1]


def train_batched(
    config: RunConfig,
    seeds: Sequence[int],
    stream: Stream | None = None,
    *,
    lrs: Sequence[float] | None = None,
) -> tuple[list[nn.Module], list[dict[str, Any]]]:
    """Train `len(seeds)` runs of `config` together; return one `results.json` row per run,
    in the order of `seeds`, each the row `run(config)` returns for that seed (and lr:
    `replace(config, seed=seed, train=config.train.replace(lr=lr))`).

    `lrs` (optional, one per seed) gives each run its own learning rate: a sweep over
    seeds x learning rates is `seeds=[0, 0, 1, 1], lrs=[0.01, 0.1, 0.01, 0.1]`. The time
    columns are the shared totals divided by the number of runs (`batched_runs` says how
    many shared them); `peak_memory_mb` is the process's. Returns the trained models (one
    per run, in the order of `seeds`) and the rows.
    """

    wall0 = time.perf_counter()
    configs = _run_configs(config, seeds, lrs)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    stream = _stream(config, stream)
    strategies = check_supported(config, stream)
    fp = str(stream.info.get("fingerprint") or fingerprint(stream))
    tcfg = replace(train_config(config, stream), lr=min(c.train.lr for c in configs))
    stream = stream.to(device)
    perm = sorted(range(len(configs)), key=lambda i: configs[i].train.lr)  # equal lrs side by side
    models = [_init_model(configs[i], stream, device) for i in perm]
    net = StackedMLP.stack(models)
    gens = [torch.Generator().manual_seed(configs[i].seed) for i in perm]
    groups = lr_groups([configs[i].train.lr for i in perm])
    results = _train_and_evaluate(
        net, stream, strategies, tcfg, StackedSGD(groups, tcfg.momentum, tcfg.weight_decay), gens
    )
    train_s, eval_s = results[0].train_seconds, results[0].eval_seconds
    _unstack(net, models)
    spec, S = canonical_spec(strategies), len(configs)
    shared = {"train_seconds": train_s / S, "eval_seconds": eval_s / S, "batched_runs": S}
    wall, peak = (time.perf_counter() - wall0) / S, peak_memory_mb()
    rows: dict[int, dict[str, Any]] = {}
    trained: dict[int, nn.Module] = {}
    for k, i in enumerate(perm):
        state = results[k]
        own = tcfg.replace(lr=configs[i].train.lr)  # the row records the run's own lr
        row = results_row(
            configs[i], run_id(configs[i], spec, fp), fp, stream, strategies, own, state
        )
        row.update(shared, wall_seconds=wall, peak_memory_mb=peak)
        rows[i], trained[i] = row, models[k]
    return [trained[i] for i in range(S)], [rows[i] for i in range(S)]


def _train_and_evaluate(
    net: StackedMLP,
    stream: Stream,
    strategies: Sequence[Strategy],
    tcfg: TrainConfig,
    optimizer: StackedSGD,
    gens: Sequence[torch.Generator],
) -> list[RunState]:
    """Train all runs through the stream with the one stream loop (`stream_loop`),
    evaluating after each experience: one result per run (untrained accuracies, accuracy
    matrix; train and eval seconds are the shared totals)."""
    evaluator = BatchedEvaluator(stream, tcfg.eval_batch_size)
    epochs = 1 if tcfg.online else tcfg.epochs

    def train(exp: Experience, seen: list[Experience], on_epoch: object) -> None:
        data = _train_data(strategies, exp, seen)
        optimizer.reset()  # a fresh optimizer per experience, as `reset_optimizer=True`
        train_experience_batched(net, data, optimizer, gens, epochs, tcfg.batch_size)

    results = [RunState() for _ in gens]
    whole = any(s.sees_whole_stream for s in strategies)
    stream_loop(
        stream.experiences,
        [],
        whole,
        train,
        lambda: evaluator.rows(net),
        results,
        device=net.weights[0].device,
    )
    return results


def _train_data(
    strategies: Sequence[Strategy], exp: Experience, seen: Sequence[Experience]
) -> TensorSet:
    data = exp.train
    for s in strategies:
        if s.overrides("train_data"):
            data = s.train_data(exp, seen)
    if not isinstance(data, TensorSet):
        raise ValueError(
            f"run_batched needs in-memory training data (TensorSet), got {type(data).__name__}"
        )
    return data
