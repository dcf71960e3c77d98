"""Output heads: one head per task (task scenario) and a classifier that grows with new classes."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience

#: Logit given to classes outside a sample's task: exp() of it is 0 in float32/16/bf16,
#: yet it stays finite, so distillation and MSE on logits never meet inf - inf.
MASKED_LOGIT = -1e4


class MultiHead(nn.Module):
    """A backbone with one linear head per task, selected by each sample's task id.

    All heads live in one weight tensor `[n_tasks, n_classes, in_features]`, so a batch
    that mixes tasks (replay) costs one matrix product. Each head only scores its task's
    classes (registered by `adapt_to` when the task's experience arrives); the other
    logits are `MASKED_LOGIT`, so the usual cross-entropy on global labels trains exactly
    the task's head, and `argmax` predicts among the task's classes.
    """

    takes_task = True
    mask: Tensor

    def __init__(self, backbone: nn.Module, in_features: int, n_tasks: int, n_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.n_tasks, self.n_classes = n_tasks, n_classes
        self.weight = nn.Parameter(torch.empty(n_tasks, n_classes, in_features))
        self.bias = nn.Parameter(torch.empty(n_tasks, n_classes))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        self.register_buffer("mask", torch.zeros(n_tasks, n_classes, dtype=torch.bool))

    def adapt_to(self, experience: Experience) -> None:
        """Open the head of `experience.task` for the experience's classes."""
        if not 0 <= experience.task < self.n_tasks:
            raise ValueError(f"task id {experience.task} is outside 0..{self.n_tasks - 1}")
        self.mask[experience.task, list(experience.classes)] = True

    def grow(self, n_tasks: int, n_classes: int) -> bool:
        """Make room for task ids below `n_tasks` and class ids below `n_classes`: new
        heads and new class rows are freshly initialised, the old ones kept as they are.
        Returns whether anything grew (the parameters are then new tensors)."""
        t, c = max(n_tasks, self.n_tasks), max(n_classes, self.n_classes)
        if (t, c) == (self.n_tasks, self.n_classes):
            return False
        weight = torch.empty(t, c, self.weight.shape[2]).to(self.weight)
        bias = torch.empty(t, c).to(self.bias)
        bound = 1.0 / math.sqrt(self.weight.shape[2])
        nn.init.uniform_(weight, -bound, bound)
        nn.init.uniform_(bias, -bound, bound)
        mask = torch.zeros(t, c, dtype=torch.bool, device=self.mask.device)
        with torch.no_grad():
            weight[: self.n_tasks, : self.n_classes] = self.weight
            bias[: self.n_tasks, : self.n_classes] = self.bias
        mask[: self.n_tasks, : self.n_classes] = self.mask
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)
        self.mask = mask
        self.n_tasks, self.n_classes = t, c
        return True

    def heads(self, features: Tensor, t: Tensor) -> Tensor:
        """Logits `[B, n_classes]` of each sample's own task head."""
        w = self.weight.flatten(0, 1)  # [T*C, F]
        out = (features @ w.t() + self.bias.flatten()).view(-1, self.n_tasks, self.n_classes)
        out = out.gather(1, t.view(-1, 1, 1).expand(-1, 1, self.n_classes)).squeeze(1)
        return out.masked_fill(~self.mask[t], MASKED_LOGIT)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.heads(self.backbone(x), t)


class IncrementalClassifier(nn.Module):
    """A linear classifier whose output grows when an experience brings unseen classes.

    Old rows are kept as they are; new rows are freshly initialised. Use it when the
    number of classes is not known in advance.
    """

    def __init__(self, in_features: int, n_classes: int = 0) -> None:
        super().__init__()
        self.in_features = in_features
        self.linear = nn.Linear(in_features, max(n_classes, 1))
        self.n_classes = n_classes

    @staticmethod
    def from_linear(linear: nn.Linear) -> IncrementalClassifier:
        """A growing classifier that starts as `linear` (its rows kept as they are)."""
        head = IncrementalClassifier(linear.in_features)
        head.linear, head.n_classes = linear, linear.out_features
        return head

    def adapt_to(self, experience: Experience) -> None:
        """Grow to cover every class of `experience` (no-op when none is new)."""
        self.grow(max(experience.classes) + 1)

    def grow(self, need: int) -> None:
        """Grow to `need` outputs (no-op when it has as many)."""
        if need <= self.n_classes:
            return
        old = self.linear
        new = nn.Linear(self.in_features, need).to(old.weight.device, old.weight.dtype)
        with torch.no_grad():
            if self.n_classes:
                new.weight[: self.n_classes] = old.weight[: self.n_classes]
                new.bias[: self.n_classes] = old.bias[: self.n_classes]
        self.linear, self.n_classes = new, need

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


def grow_linear(old: nn.Linear, n: int) -> nn.Linear:
    """A copy of `old` with `n` output rows: old rows kept, new rows freshly initialised,
    the same `requires_grad` flags."""
    new = nn.Linear(old.in_features, n, bias=old.bias is not None)
    new = new.to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        new.weight[: old.out_features] = old.weight
        if old.bias is not None and new.bias is not None:
            new.bias[: old.out_features] = old.bias
    new.requires_grad_(old.weight.requires_grad)
    return new


def output_width(model: nn.Module) -> int | None:
    """How many class ids the model's head scores today, when it can tell (None for a
    head that grows by itself, or a model whose head is not known)."""
    if isinstance(model, MultiHead):
        return model.n_classes
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head.out_features
    return None


def grow_outputs(model: nn.Module, n_classes: int, n_tasks: int = 1) -> bool:
    """Make room in the model's head for class ids below `n_classes` (and task ids below
    `n_tasks` for a `MultiHead`). A fixed linear `head` too small becomes an
    `IncrementalClassifier` that keeps its rows (and from then on grows by itself); a model
    with a `grow_outputs(n_classes, n_tasks)` method grows itself. Returns whether the
    model changed."""
    grow = getattr(model, "grow_outputs", None)
    if callable(grow):  # a wrapper (adapters, PNN columns) grows what it holds
        return bool(grow(n_classes, n_tasks))
    if isinstance(model, MultiHead):
        return model.grow(n_tasks, n_classes)
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear) and head.out_features < n_classes:
        model.head = IncrementalClassifier.from_linear(head)
        model.head.grow(n_classes)
        return True
    return False  # an `IncrementalClassifier` grows by itself in `adapt_to`
