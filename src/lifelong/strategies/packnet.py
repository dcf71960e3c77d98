"""PackNet (Mallya & Lazebnik 2018, "PackNet: Adding Multiple Tasks to a Single Network by
Iterative Pruning"): each task gets its own subset of the backbone's weights."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from lifelong.data.experience import Experience
from lifelong.models.heads import MultiHead
from lifelong.strategies.base import Strategy
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register

#: Owner value of a weight no task has claimed yet (it is zero outside training).
FREE = -1


@register("packnet")
class PackNet(Strategy):
    """PackNet (Mallya & Lazebnik 2018): train, prune, retrain, freeze -- task by task.

    Each weight matrix of the backbone (every parameter with 2+ dimensions) carries an owner
    per entry: the index of the task that claimed it, or free. While training a task, only
    free weights change. At the end of the task (`end`), the `prune_ratio` smallest free
    weights of each layer (by magnitude) are released (set to zero); the rest are claimed
    by the task, retrained alone for `post_prune_epochs` on the experience's training data
    with a plain SGD loop of its own (lr `post_prune_lr`, momentum 0.9, batch 32, the
    global RNG for the order), and frozen. To predict task `t`, only weights claimed by
    tasks up to `t` are used, so earlier tasks are never forgotten. Biases (and other
    1-D parameters, BatchNorm's affine ones included) are trained with the first task and
    then frozen, as in the paper; each task's head is only trained with its task. The
    backbone's buffers (BatchNorm's running statistics) are kept per task at its end and
    used to predict it, so statistics that later tasks move do not change it.

    When to use: task-incremental problems with a fixed-size network, when zero forgetting
    matters and capacity can be split; each task gets fewer free weights than the last.
    Task scenario only (prediction needs the task id).

    Hyper-parameters:
    * `prune_ratio` (0.75): fraction of a task's free weights released after it.
    * `post_prune_epochs` (1): epochs of retraining after pruning (0 to skip).
    * `post_prune_lr` (0.01): learning rate of that retraining.

    Freezing is done by restoring frozen values after each optimizer step (`after_step`),
    not by masking gradients in the exclusive `grads` hook: it composes with GEM-style
    strategies and stays exact under momentum and weight decay, at the cost of one copy of
    the parameters and one masked copy per step. `predict` is replaced (exclusive hook).

    State: `owners_` (one integer tensor per backbone weight matrix, by parameter name),
    `tasks_` (the task id of each claimed slot, in order), `buffers_` (per slot, the
    backbone's buffers by name).
    """

    scenarios = ("task",)

    ranges = {
        "prune_ratio": Range(gt=0, lt=1),
        "post_prune_epochs": Range(ge=0),
        "post_prune_lr": Range(gt=0),
    }

    def __init__(
        self, prune_ratio: float = 0.75, post_prune_epochs: int = 1, post_prune_lr: float = 0.01
    ) -> None:
        self.prune_ratio = prune_ratio
        self.post_prune_epochs = post_prune_epochs
        self.post_prune_lr = post_prune_lr
        self.owners_: dict[str, Tensor] = {}
        self.tasks_: list[int] = []
        self.buffers_: list[dict[str, Tensor]] = []
        self._keep: dict[str, tuple[Tensor, Tensor]] = {}  # name -> (trainable mask, values)

    @staticmethod
    def _check(model: nn.Module) -> MultiHead:
        if not isinstance(model, MultiHead):
            raise ValueError(
                f"packnet needs the task scenario's multi-head model, got {type(model).__name__}"
            )
        return model

    def _freeze_all_but(self, model: MultiHead, task: int, slot: int, first: bool) -> None:
        """Snapshot every parameter and mark what may change: the backbone entries `slot`
        owns, `task`'s head, and the other parameters (biases) only when `first`."""
        self._keep = {}
        for name, p in model.named_parameters():
            key = name.removeprefix("backbone.")
            if name.startswith("backbone.") and key in self.owners_:
                train = self.owners_[key].to(p.device) == slot
            elif name in ("weight", "bias"):  # the task heads: [n_tasks, ...]
                train = torch.zeros_like(p, dtype=torch.bool)
                train[task] = True
            else:
                train = torch.full_like(p, first, dtype=torch.bool)
            self._keep[name] = (train, p.detach().clone())

    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        mh = self._check(model)
        if not self.owners_:
            self.owners_ = {
                n: torch.full_like(p, FREE, dtype=torch.long)
                for n, p in mh.backbone.named_parameters()
                if p.dim() >= 2
            }
        if experience.task in self.tasks_:  # a task seen again: only its head may change
            self._freeze_all_but(mh, experience.task, slot=-2, first=False)
        else:
            self._freeze_all_but(mh, experience.task, slot=FREE, first=not self.tasks_)
        return model

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            if name in self._keep:  # parameters added later (by another strategy) are free
                train, values = self._keep[name]
                p.copy_(torch.where(train, p, values))

    def end(self, model: nn.Module, experience: Experience) -> None:
        mh = self._check(model)
        if experience.task in self.tasks_:
            return
        slot = len(self.tasks_)
        params = dict(mh.backbone.named_parameters())
        with torch.no_grad():
            for name, owner in self.owners_.items():
                owner = self.owners_[name] = owner.to(params[name].device)
                free = owner == FREE
                n_keep = int(round(int(free.sum()) * (1.0 - self.prune_ratio)))
                scores = params[name].abs().masked_fill(~free, -1.0).flatten()
                keep = scores.topk(n_keep).indices if n_keep else scores.new_empty(0).long()
                owner.view(-1)[keep] = slot
                params[name].masked_fill_(owner == FREE, 0.0)
        self._freeze_all_but(mh, experience.task, slot=slot, first=slot == 0)
        self._retrain(mh, experience)
        self.tasks_.append(experience.task)
        self.buffers_.append({n: b.detach().clone() for n, b in mh.backbone.named_buffers()})
        self._keep = {}

    def _retrain(self, model: MultiHead, experience: Experience) -> None:
        """The post-pruning retraining: plain SGD on the experience's training data."""
        data = experience.train
        opt = torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad], lr=self.post_prune_lr, momentum=0.9
        )
        for _ in range(self.post_prune_epochs):
            order = torch.randperm(len(data)).to(data.x.device)
            for part in data.batches(order, 32):
                loss = F.cross_entropy(model(part.x, part.t), part.y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.after_step(model)

    def _weights_for(self, model: MultiHead, task: int) -> dict[str, Tensor]:
        """Backbone weights restricted to the slots of tasks up to `task`, and the buffers
        (BatchNorm statistics) kept at the end of `task`."""
        last = self.tasks_.index(task) if task in self.tasks_ else len(self.tasks_) - 1
        params = dict(model.backbone.named_parameters())
        out = {
            "backbone." + n: params[n] * ((owner != FREE) & (owner <= last)).to(params[n].device)
            for n, owner in self.owners_.items()
        }
        if 0 <= last < len(self.buffers_):
            device = next(model.parameters()).device
            out.update({"backbone." + n: b.to(device) for n, b in self.buffers_[last].items()})
        return out

    def predict(self, model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
        mh = self._check(model)
        pred = torch.zeros(len(x), dtype=torch.long, device=x.device)
        for task in t.unique().tolist():
            rows = (t == task).nonzero().squeeze(1)
            out = functional_call(mh, self._weights_for(mh, task), (x[rows], t[rows]))
            pred[rows] = out.argmax(1)
        return pred

    def state_dict(self) -> dict[str, Any]:
        return {
            "owners_": {n: o.clone() for n, o in self.owners_.items()},
            "tasks_": list(self.tasks_),
            "buffers_": [{n: b.clone() for n, b in d.items()} for d in self.buffers_],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.owners_ = {n: o.long() for n, o in state.get("owners_", {}).items()}
        self.tasks_ = [int(t) for t in state.get("tasks_", [])]
        self.buffers_ = [dict(d) for d in state.get("buffers_", [])]
