"""GDumb: greedily keep a class-balanced memory, and train from scratch on it alone."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience, TensorSet
from lifelong.memory import ClassBalancedBuffer
from lifelong.models.lora import original_name
from lifelong.strategies.base import Strategy
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


@register("gdumb")
class GDumb(Strategy):
    """GDumb (Prabhu et al. 2020, "GDumb: A Simple Approach that Questions Our Progress in
    Continual Learning").

    A greedy, class-balanced sampler fills a memory of `mem_size` samples from the stream
    (a new class takes its share by evicting random samples of the largest classes); at
    every experience the model is re-initialised (each tensor to its value before it was
    first trained, adapters and heads added later included) and trained on the memory
    only, never on the stream itself. Within a class the memory is a uniform sample,
    which equals GDumb's greedy sampler on a shuffled stream.

    When: a sanity baseline for any scenario (class, domain, task); strong when the memory
    is large relative to the data, and its cost does not depend on the stream's size.

    Hyper-parameters:
    * `mem_size` (500): samples kept (GDumb trains on these only; 0 never trains).
    * `passes` (1): passes over the memory per training epoch (the paper trains the
      small memory for many epochs; this repeats it without changing the run's epochs).
    """

    stores_samples = True
    compile_safe = True
    _model: weakref.ref[nn.Module] | None = None  # the model of the latest `begin`

    ranges = {"mem_size": Range(ge=0), "passes": Range(ge=1)}

    def __init__(self, mem_size: int = 500, passes: int = 1) -> None:
        self.mem_size = mem_size
        self.passes = passes
        self.buffer_ = ClassBalancedBuffer(mem_size)
        self.init_: dict[str, Tensor] = {}

    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        """Restore each tensor to its value before it was first trained (by the name it has
        without adapters, so the same tensor is found whether an `adapter` wrapped the
        model before or after this `begin`). Tensors seen for the first time are recorded
        in `train_data`, once every strategy's `begin` has run."""
        self._model = weakref.ref(model)
        with torch.no_grad():
            for real, name, value in _resettable(model):
                init = self.init_.get(name, self.init_.get(real))  # real: an older state
                if init is None:
                    continue  # new since the last experience: still at its initial value
                if init.shape == value.shape:
                    value.copy_(init)
                else:  # a head that grew since: fresh weights for its module
                    _reset_owner(model, real)
        return model

    def train_data(self, experience: Experience, seen: Sequence[Experience]) -> TensorSet:
        model = self._model() if self._model is not None else None
        if model is not None:  # the untrained values of what is new (all at the first)
            for _, name, value in _resettable(model):
                if name not in self.init_:
                    self.init_[name] = value.detach().clone()
        data = experience.train
        self.buffer_.add(data.x, data.y, data.t)
        rows = self.buffer_.rows()
        if rows is None:
            return data[:0]
        mem = TensorSet(rows.x, rows.y, rows.t)
        if self.passes > 1:
            mem = mem[torch.arange(len(mem), device=mem.x.device).repeat(self.passes)]
        return mem

    def state_dict(self) -> dict[str, Any]:
        return {"buffer_": self.buffer_.state_dict(), "init_": dict(self.init_)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer_.load_state_dict(state["buffer_"])
        self.init_ = dict(state["init_"])


def _resettable(model: nn.Module) -> list[tuple[str, str, Tensor]]:
    """Parameters and floating-point buffers (not masks or counters): each with its name
    in `model` and its name without adapters (`lifelong.models.lora.original_name`)."""
    rename = original_name(model)
    tensors: list[tuple[str, Tensor]] = [*model.named_parameters()]
    tensors += [(k, b) for k, b in model.named_buffers() if b.is_floating_point()]
    return [(k, rename(k), v) for k, v in tensors]


def _reset_owner(model: nn.Module, name: str) -> None:
    """Call `reset_parameters` on the module that owns tensor `name`, when it has one."""
    owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    reset = getattr(owner, "reset_parameters", None)
    if callable(reset):
        reset()
