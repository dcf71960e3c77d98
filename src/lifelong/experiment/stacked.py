"""The arithmetic of many runs at once: S MLPs' Linear layers stacked (`[S, out, in]`), their
forward and hand-written backward passes as batched matrix products, SGD on the stacked
tensors, and the accuracy of every run in one pass over the test sets.

Everything here is written so that each run's slice gets exactly the numbers a separate run
would (on CPU, bit for bit): the products autograd uses for `nn.Linear`, torch's own
functional SGD, each run's own batch order. `lifelong.experiment.batched` drives it
through a stream; its docstring says what is supported and why the numbers match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data.experience import TensorSet
from lifelong.train import Evaluator


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
