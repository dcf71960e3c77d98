"""A `Learner`'s model: sized by the first data, built from its spec or factory, and checked
against labels a head that cannot grow does not score.

`model_sizes(data, ...)` says what an experience or a stream asks of a model (input shape,
dtype, classes, tasks) and gives a stream without data of that shape, which `build_model`
sizes a network from. Growing a built model for new classes and tasks is
`models.heads.grow_outputs`; the learner decides when (docs/architecture.md, "The
learner's state and randomness").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from lifelong.checkpoint import skeleton_stream
from lifelong.data.experience import Experience, Stream, TensorSet
from lifelong.models import build_model, parse_model_spec
from lifelong.models.functional import forward


class ModelSizes(NamedTuple):
    """What some data asks of a model, and a stream without data that has that shape."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    n_classes: int
    n_tasks: int
    skeleton: Stream


def model_sizes(data: Experience | Stream, name: str, scenario: str) -> ModelSizes:
    """The sizes a model needs for `data`: a stream's own, or those of one experience (its
    largest class id and task id, plus one) in a one-experience skeleton named `name`."""
    if isinstance(data, Stream):
        dtype = data.experiences[0].train.x.dtype
        return ModelSizes(tuple(data.input_shape), dtype, data.n_classes, data.n_tasks, data)
    shape, dtype = tuple(data.train.x.shape[1:]), data.train.x.dtype
    n_cls, n_tasks = max(data.classes) + 1, data.task + 1
    skeleton = skeleton_stream(
        {
            "name": name,
            "scenario": scenario,
            "n_classes": n_cls,
            "n_tasks": n_tasks,
            "input_shape": list(shape),
            "dtype": str(dtype).removeprefix("torch."),
            "info": {},
            "experiences": [{"classes": list(data.classes), "task": data.task}],
        }
    )
    return ModelSizes(shape, dtype, n_cls, n_tasks, skeleton)


def build_for(
    factory: str | Callable[..., nn.Module] | None, skeleton: Stream, head: str
) -> nn.Module:
    """A fresh model for `skeleton`'s sizes from a model spec or a factory."""
    if isinstance(factory, str):
        name, params = parse_model_spec(factory)
        return build_model(name, skeleton, head=head, **params)
    assert factory is not None
    return build_model(factory, skeleton, head=head)


@torch.no_grad()
def check_width(
    model: nn.Module | None, data: TensorSet, classes: tuple[int, ...], device: torch.device
) -> None:
    """Refuse labels that a model whose head cannot grow does not score."""
    growable = ("head", "n_tasks", "grow_outputs")
    if model is None or any(getattr(model, a, None) is not None for a in growable):
        return  # built later, or a head that `grow_outputs` widens
    was = model.training
    model.eval()
    width = forward(model, data.x[:1].to(device), data.t[:1].to(device)).shape[1]
    model.train(was)
    if max(classes) >= width:
        raise ValueError(
            f"label {max(classes)} is outside the model's {width} outputs; give the model "
            "a `head` attribute (an nn.Linear) so that it can grow, or more outputs"
        )
