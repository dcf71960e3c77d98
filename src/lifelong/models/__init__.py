"""Models: MLP, multi-head and growing heads, and `build_model` used by the runner."""

from __future__ import annotations

import importlib
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from torch import nn

from lifelong.data.experience import Stream
from lifelong.models.heads import MASKED_LOGIT, IncrementalClassifier, MultiHead
from lifelong.models.mlp import MLP
from lifelong.spec import parse_one

#: Model spec prefixes of pretrained backbones: `text:minilm`, `image:resnet18` (see
#: `lifelong.models.pretrained`).
PRETRAINED_KINDS = ("text", "image")

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


def build_model(
    name: str | Callable[..., nn.Module], stream: Stream, head: str = "fixed", **params: Any
) -> nn.Module:
    """Build model `name` for `stream`, with the head its scenario needs.

    `name` is a registered model (`MODELS`), a pretrained backbone (`"text:minilm"`,
    `"text:PATH"`, `"image:resnet18"`: `lifelong.models.pretrained`), a `"module:factory"`
    string (e.g. `"mypkg.nets:make_net"`) or a Python callable. A user factory is called as
    `factory(input_shape=stream.input_shape, n_classes=stream.n_classes, **params)` and
    returns any `torch.nn.Module` mapping a batch of inputs to `n_classes` logits (give it
    `backbone`, `feature_size` and `head` attributes to allow `head="grow"`).

    In the task scenario the head is a `MultiHead` (one head per task). Otherwise one head
    covers every class: `head="fixed"` sizes it for `stream.n_classes` up front,
    `head="grow"` uses an `IncrementalClassifier` that grows as classes appear.
    """
    if head not in ("fixed", "grow"):
        raise ValueError(f"unknown head {head!r}; expected 'fixed' or 'grow'")
    if isinstance(name, str) and name.partition(":")[0].strip() in PRETRAINED_KINDS:
        from lifelong.models.pretrained import build_pretrained  # transformers: heavy, optional

        return with_heads(build_pretrained(name.strip(), stream, **params), stream, head)
    if callable(name) or ":" in name:
        factory = resolve_factory(name)
        model = factory(input_shape=tuple(stream.input_shape), n_classes=stream.n_classes, **params)
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"model factory {name!r} returned {type(model).__name__}, not an nn.Module"
            )
    elif name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}")
    else:
        model = MODELS[name](stream, **params)
    return with_heads(model, stream, head)


def resolve_factory(spec: str | Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """A model factory from a callable or a `"module:attr"` string (attr may be dotted)."""
    if callable(spec):
        return spec
    module, _, attr = spec.partition(":")
    try:
        obj: Any = import_user_module(module.strip())
    except ImportError as e:
        raise ValueError(
            f"cannot import module {module!r} of model {spec!r} (searched the installed "
            f"packages and the current folder {os.getcwd()}): {e}"
        ) from None
    for part in attr.strip().split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module!r} has no {attr!r} (model {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"model {spec!r} is not callable")
    return obj


def import_user_module(name: str) -> Any:
    """Import module `name` from the installed packages or else the current folder (a
    `mypkg/` beside the command is found in every worker process, which starts there,
    without PYTHONPATH). The folder goes last on `sys.path`, so it shadows nothing."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
        importlib.invalidate_caches()
    return importlib.import_module(name)


def parse_model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse `--model`: `mlp`, `mlp(hidden=(256,256))` or `pkg.mod:factory(width=64)`."""
    head, paren, rest = spec.strip().partition("(")
    if ":" not in head:
        return parse_one(spec)
    _, params = parse_one("factory" + paren + rest)
    return head.strip(), params


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


from lifelong.models import resnet as resnet  # noqa: E402 - registers the ResNet-18 models
from lifelong.models.resnet import ResNet18  # noqa: E402

__all__ = [
    "MASKED_LOGIT",
    "MLP",
    "MODELS",
    "IncrementalClassifier",
    "MultiHead",
    "ResNet18",
    "build_model",
    "parse_model_spec",
    "register_model",
    "resolve_factory",
    "with_heads",
]
