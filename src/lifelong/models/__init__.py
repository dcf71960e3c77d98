"""Models: MLP, multi-head and growing heads, and `build_model` used by the runner."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn

from lifelong.data.experience import Stream
from lifelong.models.heads import MASKED_LOGIT, IncrementalClassifier, MultiHead
from lifelong.models.mlp import MLP

#: name -> factory(stream, **params) -> nn.Module with `backbone`, `feature_size`, `head`.
MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model factory `fn(stream, **params)` under `name`."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = fn
        return fn

    return deco


@register_model("mlp")
def _mlp(stream: Stream, hidden: tuple[int, ...] = (400, 400), dropout: float = 0.0) -> nn.Module:
    """MLP with hidden sizes `hidden` (default 400, 400)."""
    if isinstance(hidden, int):
        hidden = (hidden,)
    return MLP(math.prod(stream.input_shape), stream.n_classes, hidden, dropout)


def build_model(name: str, stream: Stream, head: str = "fixed", **params: Any) -> nn.Module:
    """Build model `name` for `stream`, with the head its scenario needs.

    In the task scenario the head is a `MultiHead` (one head per task). Otherwise one head
    covers every class: `head="fixed"` sizes it for `stream.n_classes` up front,
    `head="grow"` uses an `IncrementalClassifier` that grows as classes appear.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}")
    if head not in ("fixed", "grow"):
        raise ValueError(f"unknown head {head!r}; expected 'fixed' or 'grow'")
    model = MODELS[name](stream, **params)
    return with_heads(model, stream, head)


def with_heads(model: nn.Module, stream: Stream, head: str = "fixed") -> nn.Module:
    """Give `model` the head the stream's scenario needs (see `build_model`)."""
    backbone = getattr(model, "backbone", None)
    size = getattr(model, "feature_size", None)
    if stream.scenario == "task":
        if backbone is None or size is None:  # a user model: put the task heads on its outputs
            backbone, size = model, int(stream.n_classes)
        return MultiHead(backbone, int(size), stream.n_tasks, stream.n_classes)
    if head == "grow":
        if backbone is None or size is None:
            raise ValueError("head='grow' needs a model with `backbone` and `feature_size`")
        model.head = IncrementalClassifier(int(size))
    return model


__all__ = [
    "MASKED_LOGIT",
    "MLP",
    "MODELS",
    "IncrementalClassifier",
    "MultiHead",
    "build_model",
    "register_model",
    "with_heads",
]
