"""Adapters: a frozen backbone plus small trainable low-rank adapters (LoRA) and the head."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience
from lifelong.models.lora import LoRAModel
from lifelong.strategies._align import align_after
from lifelong.strategies._current import masked_old_loss, old_classes
from lifelong.strategies.base import Batch, Strategy
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


@register("adapter")
class Adapter(Strategy):
    """Freeze the backbone; train low-rank adapters on its Linear layers and the head.

    Implements parameter-efficient continual fine-tuning with LoRA (Hu et al. 2021, "LoRA:
    Low-Rank Adaptation of Large Language Models"): each backbone `nn.Linear` computes
    `W x + alpha / rank * B A x` with `W` frozen, `A` (`rank x in`) and `B` (`out x rank`,
    zero at start) trained. The head (and any parameter outside `model.backbone`) stays
    trainable. On a pretrained backbone most class-incremental forgetting is in the shared
    head, and two head-side parts make it a continual method: L2P's logit masking (Wang et
    al., CVPR 2022, "Learning to Prompt for Continual Learning"; `mask`): the cross-entropy
    leaves out the old classes the experience does not bring, so new classes do not push
    their logits down (the head's recency bias); and SLCA's classifier alignment (Zhang et
    al., ICCV 2023, "SLCA: Slow Learner with Classifier Alignment for Continual Learning on
    a Pre-trained Model"; `align`): after each experience, per-class means and variances of
    the head's inputs are kept and the head is retrained on features drawn from every seen
    class's Gaussian, which calibrates classes learned in different experiences against
    each other (`strategies/_current.py`, `strategies/_align.py`). SLCA's slow learner
    (`slow`) scales the adapters' gradients down against the head's, so the backbone's
    features drift little (without it LoRA diverged at SGD lr 0.05; all measured in
    benchmarks/results/text.md). With `per_experience=true`, `orthogonal > 0` adds O-LoRA's penalty
    (Wang et al., EMNLP Findings 2023, "Orthogonal Subspace Learning for Language Model
    Continual Learning"): `orthogonal * sum ||A_old A_new^T||^2` over layers and earlier
    sets, which keeps each new adapter's input subspace away from the earlier ones'.
    Serves the class, domain and task scenarios.

    When to use: a large pretrained backbone that must not drift (it is kept bit for bit:
    `Adapter.remove(model)` returns the original model with its exact original layers), a
    small budget of trainable parameters, or -- with `per_experience=true` in the task
    scenario -- zero forgetting in the backbone at the cost of one adapter set per task.

    In a hybrid, `align` realigns the head in `end`, which therefore runs before the other
    strategies' `end` (`changes_model_at_end`): EWC's Fisher and anchor, SI and MAS read
    the aligned head whatever order the hybrid is written in.

    Hyper-parameters:
    * `rank` (8): rank of each adapter.
    * `alpha` (8.0): the LoRA scaling; adapters are multiplied by `alpha / rank`.
    * `per_experience` (false): false trains one shared adapter set throughout. True adds a
      fresh set at each experience and freezes the earlier ones. In the task scenario each
      set belongs to a task and a sample only goes through its task's set (an experience of
      a task seen before trains that task's set again); in the class and domain scenarios,
      with no task id at test time, the sets are stacked: every sample goes through all of
      them.
    * `mask` (true): the stream rows' cross-entropy leaves out the classes of earlier
      experiences that this one does not bring (rows other strategies append, e.g.
      replay's, score every class); false: every class.
    * `align` (20): epochs of classifier alignment after each experience (0: none; only for
      a model with a linear `head`, so not the task scenario's per-task heads).
    * `slow` (0.1): the adapters' gradients are multiplied by it, so with SGD (momentum
      included) they learn at `slow` times the head's learning rate: SLCA's slow learner,
      against a drifting backbone (Adam rescales gradients: there, lower `alpha`). The
      outputs are unchanged, so a saved model predicts the same whatever `slow` is.
    * `orthogonal` (0.0): weight of O-LoRA's orthogonality penalty between the set being
      trained and the earlier ones (0: none; only with `per_experience=true`).

    State: `keys_`, the key of each adapter set (a task id, or -1 for sets every sample
    uses), which `rebuild` needs to recreate the adapters before a checkpoint is loaded;
    `seen_classes_` (the classes trained so far, for `mask`) and `class_stats_` (`[counts,
    means, variances]` per class, for `align`; statistics, never samples).
    """

    changes_model_at_end = True  # classifier alignment (`align`)
    ranges = {"rank": Range(ge=1), "alpha": Range(gt=0), "orthogonal": Range(ge=0),
              "align": Range(ge=0), "slow": Range(gt=0, le=1)}  # fmt: skip

    def __init__(
        self, rank: int = 8, alpha: float = 8.0, per_experience: bool = False,
        mask: bool = True, orthogonal: float = 0.0, align: int = 20, slow: float = 0.1,
    ) -> None:  # fmt: skip
        self.rank = rank
        self.alpha = alpha
        self.per_experience = per_experience
        self.mask, self.orthogonal, self.align, self.slow = mask, orthogonal, align, slow
        self.keys_: list[int] = []
        self.class_stats_: list[Tensor] = []
        self.seen_classes_: list[int] = []
        self._old: list[int] | None = None
        self._current_set = 0

    def _current(self, model: LoRAModel, experience: Experience) -> int:
        """Index of the adapter set to train on `experience`, adding it when needed."""
        if not self.per_experience:
            if not self.keys_:
                model.add_set(-1)
                self.keys_.append(-1)
            return 0
        if getattr(model.model, "takes_task", False):  # task scenario: a set per task
            if experience.task not in self.keys_:
                model.add_set(experience.task)
                self.keys_.append(experience.task)
            return self.keys_.index(experience.task)
        model.add_set(-1)
        self.keys_.append(-1)
        return len(self.keys_) - 1

    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        if not isinstance(model, LoRAModel):
            model = LoRAModel(model, self.rank, self.alpha)
            for key in self.keys_:
                model.add_set(key)
        current = self._current(model, experience)
        for layer in model.lora_layers():
            for i, (a, b) in enumerate(zip(layer.A, layer.B)):
                a.requires_grad_(i == current)
                b.requires_grad_(i == current)
        old, self.seen_classes_ = old_classes(self.seen_classes_, experience)
        self._old = old if self.mask else None
        self._current_set = current
        model.set_grad_scale(self.slow)
        return model

    def loss(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        return masked_old_loss(out, batch, self._old)

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        """O-LoRA: `orthogonal * sum ||A_i A_current^T||^2` over layers and earlier sets
        stacked with the current one (those of other tasks never meet its samples)."""
        if self.orthogonal == 0 or self._current_set == 0 or not isinstance(model, LoRAModel):
            return out.new_zeros(())
        key, terms = self.keys_[self._current_set], []
        for layer in model.lora_layers():
            new = layer.A[self._current_set]
            old = [a for a, k in zip(layer.A[: self._current_set], layer.keys) if k in (-1, key)]
            if old:
                terms.append((torch.cat(list(old)).detach() @ new.t()).square().sum())
        return self.orthogonal * torch.stack(terms).sum() if terms else out.new_zeros(())

    def end(self, model: nn.Module, experience: Experience) -> None:
        self.class_stats_ = align_after(self.class_stats_, model, experience.train, self.align)

    def rebuild(self, model: nn.Module) -> nn.Module:
        if not self.keys_:
            return model
        wrapped = LoRAModel(model, self.rank, self.alpha)
        for key in self.keys_:
            wrapped.add_set(key)
        return wrapped

    @staticmethod
    def remove(model: nn.Module) -> nn.Module:
        """The original model with the adapters removed (see `LoRAModel.remove`)."""
        if not isinstance(model, LoRAModel):
            raise ValueError(f"expected a model adapted by `adapter`, got {type(model).__name__}")
        return model.remove()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.keys_ = [int(k) for k in state.get("keys_", [])]
        self.class_stats_ = list(state.get("class_stats_", []))
        self.seen_classes_ = [int(c) for c in state.get("seen_classes_", [])]
