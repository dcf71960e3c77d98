"""iCaRL: incremental Classifier and Representation Learning (Rebuffi et al. 2017).

Class-incremental only. Three parts, as in the paper:
* exemplars: `mem_size` stored samples in total, `mem_size // classes seen` per class,
  chosen by herding on L2-normalised features; old sets shrink by keeping a prefix;
* representation learning: exemplars are mixed into every training batch and the loss is
  binary cross-entropy on sigmoid outputs, with the labels as targets for the experience's
  classes and the previous model's sigmoid outputs (distillation) for the old classes;
  it is summed over the classes seen and over the rows, divided by the number of stream
  rows (so exemplar rows add to the stream's loss, as replay's "loss on the batch plus
  loss on the memory", rather than dilute it);
* nearest-mean-of-exemplars classification on normalised features (class means
  recomputed after each experience).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from lifelong.data.experience import Experience
from lifelong.memory.herding import herding_select
from lifelong.strategies.base import Batch, Strategy
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


def features(model: nn.Module, x: Tensor) -> Tensor:
    """The representation iCaRL works on: `model.backbone(x)` when the model has a backbone,
    else the model's output, flattened to `[N, D]`."""
    backbone = getattr(model, "backbone", None)
    out = backbone(x) if isinstance(backbone, nn.Module) else model(x)
    return out.flatten(1)


def nearest_mean(feats: Tensor, means: Tensor) -> Tensor:
    """Index of the nearest row of `means` (unit vectors) for each L2-normalised row of `feats`."""
    return torch.cdist(F.normalize(feats, dim=1), means).argmin(1)


@register("icarl")
class ICaRL(Strategy):
    """iCaRL (Rebuffi et al. 2017) for the class scenario.

    * `mem_size`: exemplars stored in total, split equally over the classes seen.
    * `replay_ratio`: exemplar rows added to each batch, per stream row.

    State: the exemplars (grouped by class, each group in herding order), the seen classes,
    their means of exemplar features, and the previous model's weights for distillation.
    """

    stores_samples = True
    scenarios = ("class",)

    ranges = {"mem_size": Range(ge=1), "replay_ratio": Range(ge=0)}

    def __init__(self, mem_size: int = 500, replay_ratio: float = 1.0) -> None:
        self.mem_size = mem_size
        self.replay_ratio = replay_ratio
        self.classes_: list[int] = []
        self.ex_x_: Tensor | None = None
        self.ex_y_: Tensor | None = None
        self.ex_t_: Tensor | None = None
        self.class_means_: Tensor | None = None  # [len(classes_), D], rows of unit norm
        self.prev_model_: dict[str, Tensor] | None = None
        self._current: list[int] = []  # the classes of the experience being trained

    # -- training ------------------------------------------------------------------------
    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        self._current = list(experience.classes)
        return model

    def _stored(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """The exemplars `(x, y, t)`, or `None` before the first experience ends."""
        if self.ex_x_ is None or self.ex_y_ is None or self.ex_t_ is None:
            return None
        return self.ex_x_, self.ex_y_, self.ex_t_

    def batch(self, batch: Batch) -> Batch:
        stored = self._stored()
        k = round(self.replay_ratio * batch.n_stream)
        if stored is None or k < 1:
            return batch
        x, y, t = stored
        idx = torch.randint(len(y), (k,)).to(y.device)
        return Batch(
            torch.cat([batch.x, x[idx]]),
            torch.cat([batch.y, y[idx]]),
            torch.cat([batch.t, t[idx]]),
            batch.n_stream,
            dict(batch.extras),
        )

    def loss(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        old = [c for c in self.classes_ if c not in self._current]
        cols = torch.tensor(old + self._current, dtype=torch.long, device=out.device)
        target = (batch.y[:, None] == cols[None, :]).to(out.dtype)
        if old and self.prev_model_ is not None:
            prev = self._previous_outputs(model, batch.x)
            target[:, : len(old)] = torch.sigmoid(prev[:, cols[: len(old)]]).to(out.dtype)
        bce = F.binary_cross_entropy_with_logits(out[:, cols], target, reduction="none")
        return bce.sum() / max(batch.n_stream, 1)

    @torch.no_grad()
    def _previous_outputs(self, model: nn.Module, x: Tensor) -> Tensor:
        """Outputs of the model as it was at the end of the previous experience (its weights
        are `prev_model_`), in inference mode."""
        assert self.prev_model_ is not None
        was_training = model.training
        model.eval()
        try:
            return functional_call(model, self.prev_model_, (x,))
        finally:
            model.train(was_training)

    def end(self, model: nn.Module, experience: Experience) -> None:
        new = [c for c in experience.classes if c not in self.classes_]
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.classes_ = self.classes_ + new
            per = self.mem_size // max(len(self.classes_), 1)
            self._reduce(per)
            self._add(model, experience, new, per)
            self._update_means(model)
            self.prev_model_ = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.train(was_training)

    def _reduce(self, per: int) -> None:
        """Keep the first `per` exemplars of each class (herding order makes that a herding
        selection of size `per`)."""
        stored = self._stored()
        if stored is None:
            return
        x, y, t = stored
        rank = torch.zeros_like(y)
        for c in y.unique():
            rows = y == c
            rank[rows] = torch.arange(int(rows.sum()), device=y.device)
        keep = torch.nonzero(rank < per).flatten()
        self.ex_x_, self.ex_y_, self.ex_t_ = x[keep], y[keep], t[keep]

    def _add(self, model: nn.Module, experience: Experience, new: Sequence[int], per: int) -> None:
        """Herd `per` exemplars of each new class from the experience's training data."""
        data = experience.train
        stored = self._stored()
        parts = [] if stored is None else [stored]
        for c in new:
            rows = torch.nonzero(data.y == c).flatten()
            if per < 1 or not len(rows):
                continue
            feats = _batched_features(model, data.x[rows])
            pick = rows[herding_select(feats, min(per, len(rows)))]
            parts.append((data.x[pick], data.y[pick], data.t[pick]))
        if parts:
            self.ex_x_, self.ex_y_, self.ex_t_ = (torch.cat(list(col)) for col in zip(*parts))

    def _update_means(self, model: nn.Module) -> None:
        """Mean of the normalised exemplar features of each seen class, normalised again."""
        if self.ex_x_ is None or self.ex_y_ is None or not self.classes_:
            return
        feats = F.normalize(_batched_features(model, self.ex_x_), dim=1)
        means = feats.new_zeros(len(self.classes_), feats.shape[1])
        for i, c in enumerate(self.classes_):
            rows = self.ex_y_ == c
            if bool(rows.any()):
                means[i] = feats[rows].mean(0)
        self.class_means_ = F.normalize(means, dim=1)

    # -- inference -----------------------------------------------------------------------
    def predict(self, model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
        if self.class_means_ is None:
            return super().predict(model, x, t)
        classes = torch.tensor(self.classes_, dtype=torch.long, device=x.device)
        return classes[nearest_mean(features(model, x), self.class_means_.to(x.device))]

    def prediction_state(self) -> dict[str, Any]:
        """The class means and their classes: prediction needs no exemplar."""
        return {"classes_": list(self.classes_), "class_means_": self.class_means_}


def _batched_features(model: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:
    return torch.cat([features(model, x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
