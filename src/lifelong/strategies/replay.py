"""Experience replay: keep a small memory of past samples and mix it into every batch."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience
from lifelong.memory import Buffer, HerdingBuffer, Rows, make_buffer
from lifelong.models.functional import forward
from lifelong.strategies.base import Batch, Strategy
from lifelong.strategies.ranges import Range
from lifelong.strategies.registry import register


def append_rows(batch: Batch, rows: Rows, y: Tensor | None = None) -> Batch:
    """`batch` with `rows` appended after its rows (labels `y` instead of `rows.y` if given)."""
    dev = batch.x.device
    return Batch(
        torch.cat([batch.x, rows.x.to(dev, batch.x.dtype)]),
        torch.cat([batch.y, (rows.y if y is None else y).to(dev)]),
        torch.cat([batch.t, rows.t.to(dev)]),
        batch.n_stream,
        dict(batch.extras),
    )


@torch.no_grad()
def model_features(model: nn.Module, x: Tensor, t: Tensor, chunk: int = 1024) -> Tensor:
    """Features of `x` for herding: `model.backbone(x)` when the model has a backbone,
    else the model's outputs; computed in eval mode, `chunk` rows at a time."""
    backbone = getattr(model, "backbone", None)
    was_training = model.training
    model.eval()
    try:
        parts = [
            (
                backbone(x[i : i + chunk])
                if backbone is not None
                else forward(model, x[i : i + chunk], t[i : i + chunk])
            ).flatten(1)
            for i in range(0, int(x.shape[0]), chunk)
        ]
    finally:
        model.train(was_training)
    return torch.cat(parts)


class MemoryStrategy(Strategy):
    """Base of the replay family: a buffer in `buffer_`, filled from the stream rows.

    Its state is the buffer's `state_dict` plus every other attribute ending in `_`.
    """

    stores_samples = True
    mem_size: int
    buffer_: Buffer

    def _init_memory(self, mem_size: int, policy: str) -> None:
        self.buffer_ = make_buffer(policy, mem_size)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["buffer_"] = self.buffer_.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.buffer_.load_state_dict(state.pop("buffer_"))
        super().load_state_dict(state)


@register("replay")
class Replay(MemoryStrategy):
    """Experience replay (Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual
    Learning"; Rolnick et al. 2019): train on each stream batch plus a batch drawn from a
    small memory of past samples, with the usual cross-entropy over both.

    When: a cheap, strong default whenever storing a few past samples is allowed; serves
    class, domain and task scenarios (memory rows keep their task ids).

    Hyper-parameters:
    * `mem_size` (500): samples kept in memory; 0 means no memory (exactly naive).
    * `replay_batch_size` (32): memory rows appended to each stream batch.
    * `policy` ("reservoir"): which samples are kept. `reservoir` is uniform over the
      stream (each sample offered once, in the first epoch) and fills online, batch by
      batch; `class_balanced` (an equal share per class,
      within a class uniform) and `herding` (class-balanced, exemplars chosen by herding on
      the model's features, as iCaRL) fill at the end of each experience.
    """

    compile_safe = True
    ranges = {"mem_size": Range(ge=0), "replay_batch_size": Range(ge=1)}

    def __init__(
        self,
        mem_size: int = 500,
        replay_batch_size: int = 32,
        policy: Literal["reservoir", "class_balanced", "herding"] = "reservoir",
    ) -> None:
        self.mem_size = mem_size
        self.replay_batch_size = replay_batch_size
        self.policy = policy
        self._init_memory(mem_size, policy)
        self.to_add_ = 0

    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        self.to_add_ = len(experience.train)
        return model

    def _stream_part(self, batch: Batch) -> int:
        """How many of this batch's stream rows are still to be offered to the buffer: each
        sample once per experience (the first epoch), so epochs add no duplicates."""
        n = min(batch.n_stream, self.to_add_)
        self.to_add_ -= n
        return n

    def batch(self, batch: Batch) -> Batch:
        if self.mem_size == 0:
            return batch
        rows = self.buffer_.sample(self.replay_batch_size)
        if self.policy == "reservoir":
            n = self._stream_part(batch)
            if n:
                self.buffer_.add(batch.x[:n], batch.y[:n], batch.t[:n])
        return batch if rows is None else append_rows(batch, rows)

    def end(self, model: nn.Module, experience: Experience) -> None:
        if self.mem_size == 0 or self.policy == "reservoir":
            return
        data = experience.train
        if isinstance(self.buffer_, HerdingBuffer):
            self.buffer_.add(
                data.x, data.y, data.t, features=lambda x, t: model_features(model, x, t)
            )
        else:
            self.buffer_.add(data.x, data.y, data.t)
