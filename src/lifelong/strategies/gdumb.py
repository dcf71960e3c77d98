"""GDumb: greedily keep a class-balanced memory, and train from scratch on it alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience, TensorSet
from lifelong.memory import ClassBalancedBuffer
from lifelong.strategies.base import Strategy
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


@register("gdumb")
class GDumb(Strategy):
    """GDumb (Prabhu et al. 2020, "GDumb: A Simple Approach that Questions Our Progress in
    Continual Learning").

    A greedy, class-balanced sampler fills a memory of `mem_size` samples from the stream
    (a new class takes its share by evicting random samples of the largest classes); at
    every experience the model is re-initialised (to the weights it had before the first
    experience) and trained on the memory only, never on the stream itself. Within a
    class the memory is a uniform sample, which equals GDumb's greedy sampler on a
    shuffled stream.

    When: a sanity baseline for any scenario (class, domain, task); strong when the memory
    is large relative to the data, and its cost does not depend on the stream's size.

    Hyper-parameters:
    * `mem_size` (500): samples kept (GDumb trains on these only; 0 never trains).
    * `passes` (1): passes over the memory per training epoch (the paper trains the
      small memory for many epochs; this repeats it without changing the run's epochs).
    """

    compile_safe = True

    ranges = {"mem_size": Range(ge=0), "passes": Range(ge=1)}

    def __init__(self, mem_size: int = 500, passes: int = 1) -> None:
        self.mem_size = mem_size
        self.passes = passes
        self.buffer_ = ClassBalancedBuffer(mem_size)
        self.init_: dict[str, Tensor] = {}

    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        """Snapshot the untrained model at the first experience; restore it at the others."""
        state = _resettable(model)
        if not self.init_:
            self.init_ = {k: v.detach().clone() for k, v in state.items()}
            return model
        with torch.no_grad():
            for name, value in state.items():
                init = self.init_.get(name)
                if init is not None and init.shape == value.shape:
                    value.copy_(init)
                else:  # a head that grew since: fresh weights for its module
                    _reset_owner(model, name)
        return model

    def train_data(self, experience: Experience, seen: Sequence[Experience]) -> TensorSet:
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


def _resettable(model: nn.Module) -> dict[str, Tensor]:
    """Parameters and floating-point buffers (not masks or counters) by name."""
    out: dict[str, Tensor] = dict(model.named_parameters())
    out.update({k: b for k, b in model.named_buffers() if b.is_floating_point()})
    return out


def _reset_owner(model: nn.Module, name: str) -> None:
    """Call `reset_parameters` on the module that owns tensor `name`, when it has one."""
    owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    reset = getattr(owner, "reset_parameters", None)
    if callable(reset):
        reset()
