"""Adapters: a frozen backbone plus small trainable low-rank adapters (LoRA) and the head."""

from __future__ import annotations

from typing import Any

from torch import nn

from lifelong.data.experience import Experience
from lifelong.models.lora import LoRAModel
from lifelong.strategies.base import Strategy
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


@register("adapter")
class Adapter(Strategy):
    """Freeze the backbone; train low-rank adapters on its Linear layers and the head.

    Implements parameter-efficient continual fine-tuning with LoRA (Hu et al. 2021, "LoRA:
    Low-Rank Adaptation of Large Language Models"): each backbone `nn.Linear` computes
    `W x + alpha / rank * B A x` with `W` frozen, `A` (`rank x in`) and `B` (`out x rank`,
    zero at start) trained. The head (and any parameter outside `model.backbone`) stays
    trainable. Serves the class, domain and task scenarios.

    When to use: a large pretrained backbone that must not drift (it is kept bit for bit:
    `Adapter.remove(model)` returns the original model with its exact original layers), a
    small budget of trainable parameters, or -- with `per_experience=true` in the task
    scenario -- zero forgetting in the backbone at the cost of one adapter set per task.

    Hyper-parameters:
    * `rank` (8): rank of each adapter.
    * `alpha` (8.0): the LoRA scaling; adapters are multiplied by `alpha / rank`.
    * `per_experience` (false): false trains one shared adapter set throughout. True adds a
      fresh set at each experience and freezes the earlier ones. In the task scenario each
      set belongs to a task and a sample only goes through its task's set (an experience of
      a task seen before trains that task's set again); in the class and domain scenarios,
      with no task id at test time, the sets are stacked: every sample goes through all of
      them.

    State: `keys_`, the key of each adapter set (a task id, or -1 for sets every sample
    uses), which `rebuild` needs to recreate the adapters before a checkpoint is loaded.
    """

    ranges = {"rank": Range(ge=1), "alpha": Range(gt=0)}

    def __init__(self, rank: int = 8, alpha: float = 8.0, per_experience: bool = False) -> None:
        self.rank = rank
        self.alpha = alpha
        self.per_experience = per_experience
        self.keys_: list[int] = []

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
        return model

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
