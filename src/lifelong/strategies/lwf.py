"""Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017).

At the start of every experience after the first, LwF freezes a copy of the model as a
teacher. While training on the new data it adds a distillation term that keeps the
student's outputs for what was learned before close to the teacher's:

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

What "the outputs for what was learned before" are depends on the scenario:
* class and domain scenarios (one head): the logits of the classes seen in earlier
  experiences (in the domain scenario, every class);
* task scenario (a head per task): the logits of every earlier task's head, evaluated
  on the current inputs (the original LwF); the KL is summed over those heads.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data.experience import Experience
from lifelong.models.functional import forward
from lifelong.models.heads import MultiHead
from lifelong.strategies.base import Batch, Strategy
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


def distillation(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """`T^2 * sum_rows KL(softmax(teacher/T) || softmax(student/T))` (not averaged)."""
    t = temperature
    log_p = F.log_softmax(teacher / t, dim=1)
    log_q = F.log_softmax(student / t, dim=1)
    return t * t * F.kl_div(log_q, log_p, log_target=True, reduction="sum")


def old_task_logits(model: nn.Module, x: Tensor, tasks: Tensor) -> Tensor:
    """Logits of every task in `tasks` on every input: rows `[k * len(x) + n]`.

    A `MultiHead` computes its backbone's features once and only repeats the heads.
    """
    t = tasks.repeat_interleave(len(x))
    if isinstance(model, MultiHead):
        return model.heads(model.backbone(x).repeat(len(tasks), 1), t)
    return forward(model, x.repeat(len(tasks), *([1] * (x.dim() - 1))), t)


@register("lwf")
class LwF(Strategy):
    """Learning without Forgetting: distil the previous model's outputs on the new data
    (Li & Hoiem 2016, "Learning without Forgetting").

    When to use it: no data may be stored and the new inputs say something about the old
    task (task-incremental streams above all; weak in class-incremental ones).

    Hyper-parameters:
    * `alpha` (default 0.3): weight of the distillation term (lambda_o in the paper, which
      uses 1; with one shared head, as in the domain scenario, 1 costs the new experience
      more than it saves the old ones).
    * `temperature` (default 2.0): softmax temperature of the distillation.

    Learned state: `teacher_` (the teacher's tensors, by name: the teacher is rebuilt from
    a copy of the model plus these after `load_state_dict`), `seen_classes_` and
    `seen_tasks_` (of finished experiences). The teacher is never part of the model's
    parameters.
    """

    compile_safe = True

    ranges = {"alpha": Range(ge=0), "temperature": Range(gt=0)}

    def __init__(self, alpha: float = 0.3, temperature: float = 2.0) -> None:
        self.alpha = alpha
        self.temperature = temperature
        self.teacher_: dict[str, Tensor] | None = None
        self.seen_classes_: list[int] = []
        self.seen_tasks_: list[int] = []
        self._teacher: nn.Module | None = None

    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        if self.seen_classes_:
            self._teacher = self._freeze(copy.deepcopy(model))
            self.teacher_ = dict(self._teacher.state_dict())
        return model

    def penalty(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        if self.teacher_ is None or self.alpha == 0:
            return out.new_zeros(())
        if self._teacher is None:
            self._teacher = copy.deepcopy(model)
            self._teacher.load_state_dict(self.teacher_)
            self._freeze(self._teacher)
        if getattr(model, "takes_task", False):
            tasks = torch.tensor(self.seen_tasks_, device=out.device)
            student = old_task_logits(model, batch.x, tasks)
            with torch.no_grad():
                teacher = old_task_logits(self._teacher, batch.x, tasks)
        else:
            cols = torch.tensor(self.seen_classes_, device=out.device)
            student = out[:, cols]
            with torch.no_grad():
                teacher = forward(self._teacher, batch.x, batch.t)[:, cols]
        kl = distillation(student, teacher, self.temperature) / len(batch.x)
        return self.alpha * kl

    def end(self, model: nn.Module, experience: Experience) -> None:
        self.seen_classes_ = sorted(set(self.seen_classes_) | set(experience.classes))
        self.seen_tasks_ = sorted(set(self.seen_tasks_) | {experience.task})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._teacher = None

    @staticmethod
    def _freeze(teacher: nn.Module) -> nn.Module:
        for p in teacher.parameters():
            p.grad = None
            p.requires_grad_(False)
        return teacher.eval()
