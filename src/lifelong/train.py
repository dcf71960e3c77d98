"""The one training loop, and evaluation into the accuracy matrix.

    data -> strategies' batch -> forward -> loss (+ penalties) -> backward
         -> strategies' grads -> step -> strategies' after_step

In-memory data is batched by indexing tensors (no per-sample `DataLoader`). Progress and
logging are callbacks around the loop, never the way methods hook in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from lifelong.applied import around_grads, projected_params
from lifelong.compiled import compiled_step
from lifelong.config import TrainConfig
from lifelong.data.experience import Experience, Stream, TensorSet
from lifelong.models.functional import adapt_model, forward, trainable
from lifelong.strategies.base import Batch, Hooks, Strategy, step_loss


def make_optimizer(
    model: nn.Module, cfg: TrainConfig, strategies: Sequence[Strategy] = ()
) -> torch.optim.Optimizer:
    """SGD (with momentum) or Adam over the model's trainable parameters.

    A strategy that projects gradients (GEM, A-GEM: `projects_gradients`) projects the
    update SGD applies, momentum and weight decay included (`lifelong.applied`); Adam,
    which rescales each coordinate, would break its constraint and is refused."""
    params = trainable(model)
    projecting = [s.name for s in strategies if s.projects_gradients]
    if projecting and cfg.optimizer != "sgd":
        raise ValueError(
            f"{projecting[0]} projects the update SGD applies; optimizer {cfg.optimizer!r} "
            "would break its constraint: use optimizer 'sgd'"
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _same_params(optimizer: torch.optim.Optimizer, model: nn.Module) -> bool:
    have = [p for g in optimizer.param_groups for p in g["params"]]
    want = trainable(model)
    return len(have) == len(want) and all(a is b for a, b in zip(have, want))


def train_experience(
    model: nn.Module,
    strategies: Sequence[Strategy],
    experience: Experience,
    seen: Sequence[Experience],
    optimizer: torch.optim.Optimizer | None,
    cfg: TrainConfig,
    generator: torch.Generator,
    on_epoch: Callable[[int, int], None] | None = None,
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Train on one experience; return the (possibly adapted) model and its optimizer.

    The optimizer (and its momentum) is rebuilt at each experience when
    `cfg.reset_optimizer` (the default, as in most continual-learning work), and always when
    the set of trainable parameters changed (a new head, a new column, frozen layers).
    """
    hooks = Hooks(strategies)
    for e in (*seen, experience):  # heads for every experience whose data may be trained on
        adapt_model(model, e)
    for s in hooks.begin:
        model = s.begin(model, experience)
    if optimizer is None or cfg.reset_optimizer or not _same_params(optimizer, model):
        optimizer = make_optimizer(model, cfg, strategies)
    data: TensorSet = experience.train
    for s in hooks.train_data:
        data = s.train_data(experience, seen)
    n, epochs = len(data), 1 if cfg.online else cfg.epochs
    step = make_step(model, strategies, optimizer, cfg)
    model.train()
    for epoch in range(epochs if n else 0):
        order = torch.randperm(n, generator=generator)
        for part in data.batches(order, cfg.batch_size):
            batch = Batch(part.x, part.y, part.t, len(part.y))
            for s in hooks.batch:
                batch = s.batch(batch)
            step(batch)
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs)
    for s in hooks.end:
        s.end(model, experience)
    return model, optimizer


Step = Callable[[Batch], None]


class EagerStep:
    """The eager step engine: forward, loss and penalties (`step_loss`), backward, the
    strategies' `grads` hooks, the optimizer step, their `after_step` hooks. The compiled
    engine (`lifelong.compiled.CompiledStep`) does the same with the same `step_loss`."""

    def __init__(
        self, model: nn.Module, hooks: Hooks, optimizer: torch.optim.Optimizer, cfg: TrainConfig
    ) -> None:
        self.model, self.hooks, self.optimizer = model, hooks, optimizer
        self.loss_hook = hooks.loss[0] if hooks.loss else None
        self.autocast = _autocast(cfg, model)
        self.projected = projected_params(model, hooks.grads)

    def __call__(self, batch: Batch) -> None:
        with self.autocast:
            loss = step_loss(self.model, self.loss_hook, self.hooks.penalty, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with around_grads(self.optimizer, self.projected):
            for s in self.hooks.grads:
                s.grads(self.model)
        self.optimizer.step()
        for s in self.hooks.after_step:
            s.after_step(self.model)


def make_step(
    model: nn.Module,
    strategies: Sequence[Strategy],
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
) -> Step:
    """The step engine the config asks for: compiled (`cfg.compile`, when the hybrid and
    the optimizer allow it; else a warning) or eager."""
    step = compiled_step(model, strategies, optimizer, cfg) if cfg.compile else None
    return step if step is not None else EagerStep(model, Hooks(strategies), optimizer, cfg)


def _autocast(cfg: TrainConfig, model: nn.Module) -> contextlib.AbstractContextManager[object]:
    """bfloat16 autocast on the model's device type when asked, else a no-op context."""
    if cfg.precision != "bf16":
        return contextlib.nullcontext()
    param = next(model.parameters(), None)
    device_type = param.device.type if param is not None else "cpu"
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)


@torch.no_grad()
def predict(
    model: nn.Module, strategies: Sequence[Strategy], x: Tensor, t: Tensor, batch_size: int = 1024
) -> Tensor:
    """Predicted class ids for `x` (task ids `t`), using a strategy's `predict` if it has one."""
    hooks = Hooks(strategies)
    was_training = model.training
    model.eval()
    preds = []
    for start in range(0, len(x), batch_size):
        xb, tb = x[start : start + batch_size], t[start : start + batch_size]
        if hooks.predict:
            preds.append(hooks.predict[0].predict(model, xb, tb))
        else:
            preds.append(forward(model, xb, tb).argmax(1))
    model.train(was_training)
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long, device=x.device)


def eval_batch_size(input_shape: Sequence[int]) -> int:
    """A default evaluation batch: about 2**18 input values (64 to 1024 samples), so that
    activations of convolutional models stay cache-sized on a CPU (a batch of 1024 CIFAR
    images evaluated a reduced ResNet-18 2.4x slower than batches of 64)."""
    values = 1
    for d in input_shape:
        values *= int(d)
    return max(64, min(1024, 2**18 // max(values, 1)))


class Evaluator:
    """Accuracy on every experience's test set in one pass over their concatenation."""

    def __init__(self, stream: Stream, batch_size: int | None = None) -> None:
        tests = [e.test for e in stream.experiences]
        self.test = TensorSet.concat(tests)
        self.owner = torch.cat(
            [torch.full((len(s),), i, dtype=torch.long) for i, s in enumerate(tests)]
        ).to(self.test.y.device)
        self.sizes = torch.tensor([len(s) for s in tests], dtype=torch.float64)
        self.batch_size = batch_size or eval_batch_size(stream.input_shape)

    def row(self, model: nn.Module, strategies: Sequence[Strategy]) -> list[float]:
        """One row of the accuracy matrix: accuracy on each experience's test set."""
        pred = predict(model, strategies, self.test.x, self.test.t, self.batch_size)
        correct = torch.zeros(len(self.sizes), dtype=torch.float64, device=pred.device)
        correct.index_add_(0, self.owner, (pred == self.test.y).double())
        return (correct.cpu() / self.sizes).tolist()
