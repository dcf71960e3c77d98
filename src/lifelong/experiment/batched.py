"""Many runs at once in one process: S seeds (or learning rates) of one MLP config, trained
together on stacked parameters.

`run_batched(config, seeds)` returns the same `results.json` rows as calling
`lifelong.experiment.run.run` once per seed. The S models' weights are stacked
(`[S, out, in]`) and every layer of all S models is one batched matrix product
(`torch.baddbmm` / `torch.bmm`), so one step of S runs costs about as many kernel launches
as one step of one run: the gain is meant for GPUs, where a small MLP's run is bound by
launches (not yet measured there). On one CPU core it costs about what S separate runs
cost (see `benchmarks/many_seeds.py`).

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
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
from lifelong.learner import Result as RunState
from lifelong.learner import resolve_device, stream_loop
from lifelong.models import build_model
from lifelong.strategies.base import Strategy
from lifelong.strategies.registry import build_strategies, canonical_spec, check_serves
from lifelong.train import Evaluator

#: Strategies `run_batched` trains: those whose only hook is `train_data` (same data for
#: every run).
SUPPORTED_STRATEGIES = ("naive", "joint", "cumulative")
SUPPORTED_MODELS = ("mlp",)


@dataclass
class StackedMLP:
    """The Linear layers of S MLPs, stacked: `weights[l]` is `[S, out, in]`, `biases[l]`
    `[S, out]`; a ReLU follows every layer but the last."""

    weights: list[Tensor]
    biases: list[Tensor]

    @staticmethod
    def stack(models: Sequence[nn.Module]) -> StackedMLP:
        """Stack the Linear layers of `models` (same architecture) in module order."""
        layers = [[m for m in model.modules() if isinstance(m, nn.Linear)] for model in models]
        depth = len(layers[0])
        weights = [torch.stack([ls[i].weight.detach() for ls in layers]) for i in range(depth)]
        biases = [torch.stack([ls[i].bias.detach() for ls in layers]) for i in range(depth)]
        return StackedMLP(weights, biases)

    def tensors(self) -> list[Tensor]:
        """Weights and biases, layer by layer (the order of `gradients`)."""
        return [t for wb in zip(self.weights, self.biases) for t in wb]

    def forward(self, x: Tensor, shared: bool = False) -> list[Tensor]:
        """Activations for inputs `x`: `[S, B, ...]` (one batch per run), or `[B, ...]`
        seen by every run when `shared`. Returns the flattened inputs `[S, B, D]`, each
        hidden ReLU output, and the logits `[S, B, C]` last."""
        if shared:
            h = x.flatten(1).unsqueeze(0).expand(self.weights[0].shape[0], -1, -1)
        else:
            h = x.flatten(2)
        acts = [h]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            acts.append(torch.relu(h) if i < last else h)
            h = acts[-1]
        return acts

    def gradients(self, acts: list[Tensor], dlogits: Tensor) -> list[Tensor]:
        """Back-propagate `dlogits` (`[S, B, C]`) through the layers: the gradients of
        `tensors()`, computed with the products autograd uses for `nn.Linear`
        (`grad_w = g^T h`, `grad_b = sum_B g`, `grad_h = g w`)."""
        grads: list[Tensor] = []
        g = dlogits
        for i in range(len(self.weights) - 1, -1, -1):
            h = acts[i]
            grads[:0] = [torch.bmm(g.transpose(1, 2), h), g.sum(1)]
            if i > 0:  # ReLU backward: the gradient passes where the output was > 0
                g = torch.bmm(g, self.weights[i]).masked_fill_(h <= 0, 0.0)
        return grads


class StackedSGD:
    """SGD (momentum, weight decay) for S runs whose tensors are stacked on dim 0.

    `groups` are contiguous slices of runs that share a learning rate; each group is one
    call of torch's functional `torch.optim.sgd.sgd` on views of the stacked tensors, so
    every element gets exactly the update `torch.optim.SGD` would give it. A fresh
    instance (or `reset()`) has no momentum.
    """

    def __init__(
        self, groups: Sequence[tuple[slice, float]], momentum: float, weight_decay: float
    ) -> None:
        self.groups = list(groups)
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buffers: list[list[Tensor | None]] = [[] for _ in self.groups]

    def reset(self) -> None:
        """Forget the momentum (a fresh optimizer)."""
        self.buffers = [[] for _ in self.groups]

    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
        """Update `params` in place with `grads` (both stacked, same order)."""
        from torch.optim.sgd import sgd

        for (rows, lr), bufs in zip(self.groups, self.buffers):
            if not bufs:
                bufs.extend([None] * len(params))
            sgd(
                [p[rows] for p in params],
                [g[rows] for g in grads],
                bufs,
                weight_decay=self.weight_decay,
                momentum=self.momentum,
                lr=lr,
                dampening=0.0,
                nesterov=False,
                maximize=False,
            )


def lr_groups(lrs: Sequence[float]) -> list[tuple[slice, float]]:
    """Contiguous runs of equal learning rates in `lrs`, as `(slice, lr)` pairs."""
    groups: list[tuple[slice, float]] = []
    start = 0
    for i in range(1, len(lrs) + 1):
        if i == len(lrs) or lrs[i] != lrs[start]:
            groups.append((slice(start, i), float(lrs[start])))
            start = i
    return groups


def logit_gradient(logits: Tensor, y: Tensor) -> Tensor:
    """d/d logits of the sum over runs of each run's mean cross-entropy (`[S, B, C]`):
    each run's slice is exactly the gradient of `F.cross_entropy(out, y)` for that run."""
    out = logits.detach().requires_grad_(True)
    S, B, C = out.shape
    loss = F.cross_entropy(out.reshape(S * B, C), y.reshape(-1), reduction="none")
    (grad,) = torch.autograd.grad(loss.view(S, B).mean(1).sum(), out)
    return grad


def train_experience_batched(
    net: StackedMLP,
    data: TensorSet,
    optimizer: StackedSGD,
    generators: Sequence[torch.Generator],
    epochs: int,
    batch_size: int,
) -> None:
    """Train all runs on `data` for `epochs`, each run in its own batch order (one
    `torch.randperm(n, generator=...)` per run and epoch, as `train_experience` draws)."""
    n = len(data)
    for _ in range(epochs if n else 0):
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators])
        orders = orders.to(data.x.device)
        for start in range(0, n, batch_size):
            idx = orders[:, start : start + batch_size]
            acts = net.forward(data.x[idx])
            grads = net.gradients(acts, logit_gradient(acts[-1], data.y[idx]))
            optimizer.step(net.tensors(), grads)


class BatchedEvaluator(Evaluator):
    """Accuracy of every run on every experience's test set, in one pass over their
    concatenation (the batched counterpart of `lifelong.train.Evaluator`)."""

    @torch.no_grad()
    def rows(self, net: StackedMLP) -> list[list[float]]:
        """One accuracy-matrix row per run (`[S][T]`)."""
        x, bs = self.test.x, self.batch_size
        pred = torch.cat(
            [net.forward(x[i : i + bs], shared=True)[-1].argmax(-1) for i in range(0, len(x), bs)],
            dim=1,
        )
        correct = torch.zeros(pred.shape[0], len(self.sizes), dtype=torch.float64, device=x.device)
        correct.index_add_(1, self.owner, (pred == self.test.y).double())
        rows: list[list[float]] = (correct.cpu() / self.sizes).tolist()
        return rows


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
