"""Progressive Neural Networks (Rusu et al. 2016, "Progressive Neural Networks").

A new column (a copy of the MLP's architecture) per task; earlier columns are frozen, and
lateral connections feed their activations into the new column, so old tasks cannot be
forgotten while new ones reuse old features.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience
from lifelong.models.heads import MASKED_LOGIT, MultiHead, grow_linear
from lifelong.strategies.base import Strategy
from lifelong.strategies.registry import register


def linear_sizes(model: nn.Module) -> list[int]:
    """`[in, h1, ..., hL]`: the widths of the Linear layers of a MultiHead's MLP backbone."""
    if not isinstance(model, MultiHead):
        raise ValueError(
            f"pnn needs the task scenario's multi-head model, got {type(model).__name__}"
        )
    sizes: list[int] = []
    for m in model.backbone.modules():
        if isinstance(m, nn.Linear):
            if sizes and m.in_features != sizes[-1]:
                raise ValueError("pnn needs a backbone whose Linear layers form a chain (an MLP)")
            sizes = sizes or [m.in_features]
            sizes.append(m.out_features)
        elif not isinstance(m, (nn.Sequential, nn.Flatten, nn.ReLU, nn.Dropout)):
            raise ValueError(
                f"pnn builds columns of Linear layers (an MLP backbone); "
                f"the backbone has a {type(m).__name__}"
            )
    if len(sizes) < 2:
        raise ValueError("pnn needs a backbone with at least one Linear layer")
    return sizes


class Column(nn.Module):
    """One PNN column: Linear+ReLU layers, laterals from `k` earlier columns, a task head.

    `lateral[l - 1]` maps the concatenated layer-`l` activations of the earlier columns into
    this column's layer `l + 1` (one matrix for all earlier columns: the sum of one adapter
    per column); the head reads this column's last hidden layer plus, through `head_lateral`,
    the earlier columns' last hidden layers (laterals into every layer above the first, as
    in the paper, whose non-linear adapters are simplified here to linear maps).
    """

    def __init__(self, sizes: list[int], k: int, n_classes: int) -> None:
        super().__init__()
        pairs = list(zip(sizes[:-1], sizes[1:]))
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        # default init: bound 1/sqrt(k * a), so the sum over k columns has one layer's scale
        self.lateral = nn.ModuleList(nn.Linear(k * a, b, bias=False) for a, b in pairs[1:] if k)
        self.head = nn.Linear(sizes[-1], n_classes)
        self.head_lateral = nn.Linear(k * sizes[-1], n_classes, bias=False) if k else None

    def logits(self, hs: list[Tensor], previous: list[list[Tensor]]) -> Tensor:
        """Task logits from this column's activations `hs` and the earlier columns'."""
        out = self.head(hs[-1])
        if self.head_lateral is not None:
            out = out + self.head_lateral(torch.cat([p[-1] for p in previous], 1))
        return out

    def forward(self, x: Tensor, previous: list[list[Tensor]]) -> list[Tensor]:
        """Hidden activations of every layer; `previous[j][l]` is column j's layer-l output."""
        hs: list[Tensor] = []
        h = x
        for i, layer in enumerate(self.layers):
            z = layer(h)
            if i and previous:
                z = z + self.lateral[i - 1](torch.cat([p[i - 1] for p in previous], 1))
            h = torch.relu(z)
            hs.append(h)
        return hs


class PNNModel(nn.Module):
    """Columns plus per-task routing: each sample goes through the column of its task."""

    takes_task = True
    mask: Tensor

    def __init__(self, sizes: list[int], mask: Tensor) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.n_classes = int(mask.shape[1])
        self.columns = nn.ModuleList()
        self.tasks: list[int] = []
        self.register_buffer("mask", mask.clone())

    def add_column(self, task: int) -> Column:
        """Append a column for `task` (laterals from every existing column)."""
        col = Column(self.sizes, len(self.columns), self.n_classes).to(self.mask.device)
        self.columns.append(col)
        self.tasks.append(task)
        return col

    def grow_outputs(self, n_classes: int, n_tasks: int) -> bool:
        """Make room for more classes (every column's head gains rows) and tasks."""
        t, c = max(n_tasks, len(self.mask)), max(n_classes, self.n_classes)
        if (t, c) == tuple(self.mask.shape):
            return False
        mask = torch.zeros(t, c, dtype=torch.bool, device=self.mask.device)
        mask[: len(self.mask), : self.n_classes] = self.mask
        self.mask = mask
        if c > self.n_classes:
            for col in cast(list[Column], list(self.columns)):
                col.head = grow_linear(col.head, c)
                if col.head_lateral is not None:
                    col.head_lateral = grow_linear(col.head_lateral, c)
            self.n_classes = c
        return True

    def adapt_to(self, experience: Experience) -> None:
        """Open the head of `experience.task` for the experience's classes."""
        if not 0 <= experience.task < len(self.mask):
            raise ValueError(f"task id {experience.task} is outside 0..{len(self.mask) - 1}")
        self.mask[experience.task, list(experience.classes)] = True

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        x = x.flatten(1)
        out = x.new_full((len(x), self.n_classes), MASKED_LOGIT)
        for task in t.unique().tolist():
            if task not in self.tasks:
                continue  # no column yet: every logit masked, as an unopened head
            rows = (t == task).nonzero().squeeze(1)
            k = self.tasks.index(task)
            cols = cast(list[Column], list(self.columns[: k + 1]))
            xs, acts = x[rows], cast(list[list[Tensor]], [])
            for col in cols:
                acts.append(col(xs, acts))
            logits = cols[-1].logits(acts[-1], acts[:-1])
            logits = logits.masked_fill(~self.mask[task], MASKED_LOGIT)
            out = out.index_copy(0, rows, logits.to(out.dtype))
        return out


@register("pnn")
class PNN(Strategy):
    """Progressive Neural Networks (Rusu et al. 2016): a new column per task.

    When to use: task-incremental problems where forgetting must be exactly zero and the
    model may grow linearly with the number of tasks (each column mirrors the base MLP's
    hidden sizes, plus lateral adapters). Each sample is routed through its task's column,
    so mixed-task batches (with replay) work. Task scenario only. No hyper-parameters.

    The first `begin` replaces the MultiHead by a `PNNModel` (its task masks carried over;
    the first column copies the backbone's initial weights). Earlier columns are frozen
    (`requires_grad=False`), so the loop's optimizer only sees the new column. A task seen
    again trains its column only if no later column depends on it, else only its head.
    Dropout layers of the base MLP are not reproduced in the columns.
    State: `tasks_`, the task id of each column (what `rebuild` needs).
    """

    scenarios = ("task",)

    def __init__(self) -> None:
        self.tasks_: list[int] = []

    @staticmethod
    def _build(model: nn.Module) -> PNNModel:
        sizes = linear_sizes(model)  # raises unless `model` is a MultiHead over an MLP
        assert isinstance(model, MultiHead)
        return PNNModel(sizes, model.mask).to(model.weight.device)

    def _first(self, base: nn.Module, task: int) -> PNNModel:
        """The PNN of a base MultiHead: one column starting from the base's own weights."""
        model = self._build(base)
        assert isinstance(base, MultiHead)
        col = model.add_column(task)
        linears = [m for m in base.backbone.modules() if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for mine, theirs in zip(col.layers, linears):
                mine.load_state_dict(theirs.state_dict())
            col.head.weight.copy_(base.weight[task])
            col.head.bias.copy_(base.bias[task])
        return model

    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        if not isinstance(model, PNNModel):
            model = self._first(model, experience.task)
        elif experience.task not in model.tasks:
            model.add_column(experience.task)
        k = model.tasks.index(experience.task)
        for i, col in enumerate(model.columns):
            col.requires_grad_(i == k and k == len(model.columns) - 1)
        own = cast(Column, model.columns[k])
        own.head.requires_grad_(True)  # its output layer is its own, whatever depends on it
        if own.head_lateral is not None:
            own.head_lateral.requires_grad_(True)
        self.tasks_ = list(model.tasks)
        return model

    def rebuild(self, model: nn.Module) -> nn.Module:
        if not self.tasks_:
            return model
        pnn = self._build(model)
        for task in self.tasks_:
            pnn.add_column(task)
        return pnn

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tasks_ = [int(t) for t in state.get("tasks_", [])]
