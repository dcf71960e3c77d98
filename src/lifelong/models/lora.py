"""Low-rank adapters (LoRA, Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
Models") for the Linear layers of a frozen backbone, and their exact removal.

`add_lora(model)` wraps every `nn.Linear` of `model.backbone` in a `LoRALinear` (the
original layer object kept as `.base`, frozen) and returns a `LoRAModel` that passes each
sample's task id to the adapters. `remove_lora(model)` puts the original layer objects back,
so the backbone is exactly what it was (same objects, same weights, same outputs).
`original_name(model)` names a parameter as the unadapted model named it, so state keyed
by name (regularizers, GDumb) means the same parameter whether taken before or after
the adapters were added.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor, nn

from lifelong.models.heads import grow_outputs


class LoRALinear(nn.Module):
    """`base(x) + alpha / rank * B A x` summed over adapter sets, `base` frozen.

    Each set has a `key`: `-1` applies it to every sample, a task id `k >= 0` only to the
    samples whose task id (`route`, set by `LoRAModel` before each forward) is `k`. `B`
    starts at zero, so a new set leaves the layer's output unchanged until trained.
    `grad_scale` multiplies the gradients that reach `A` and `B` (never the outputs, which
    stay bit for bit those of the unscaled layer): with SGD a learning rate `grad_scale`
    times the rest of the model's (SLCA's slow learner).
    """

    base: nn.Linear
    route: Tensor | None
    grad_scale: float = 1.0

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.rank, self.scale = rank, alpha / rank
        self.A = nn.ParameterList()
        self.B = nn.ParameterList()
        self.keys: list[int] = []
        self.route = None

    def add_set(self, key: int = -1) -> None:
        """Append an adapter set (A random, B zero) for task `key` (-1: every sample)."""
        w = self.base.weight
        a = torch.empty(self.rank, self.base.in_features, device=w.device, dtype=w.dtype)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.A.append(nn.Parameter(a))
        self.B.append(nn.Parameter(w.new_zeros(self.base.out_features, self.rank)))
        self.keys.append(key)

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)
        for a, b, key in zip(self.A, self.B, self.keys):
            if self.grad_scale != 1.0 and (a.requires_grad or b.requires_grad):
                a, b = _scaled_grad(a, self.grad_scale), _scaled_grad(b, self.grad_scale)
            if key < 0:
                out = out + self.scale * (x @ a.t()) @ b.t()
            elif self.route is not None:  # a mask, not indexing: shapes stay static (vmap)
                rows = (self.route == key).view(-1, *[1] * (out.dim() - 1))
                delta = self.scale * (x @ a.t()) @ b.t()
                out = torch.where(rows, out + delta.to(out.dtype), out)
        return out


def _scaled_grad(p: Tensor, scale: float) -> Tensor:
    """`p`'s exact value, with its gradient multiplied by `scale` (`p - p.detach()` is
    exactly zero, so the forward pass is unchanged bit for bit)."""
    return p.detach() + scale * (p - p.detach())


class LoRAModel(nn.Module):
    """`model` with LoRA layers in place of its backbone's Linear layers (see `add_lora`).

    It takes task ids and hands them to the adapters (`LoRALinear.route`) before calling
    `model`; it remembers the backbone's `requires_grad` flags so `remove` restores them.
    """

    takes_task = True

    def __init__(self, model: nn.Module, rank: int = 8, alpha: float = 8.0) -> None:
        super().__init__()
        backbone = getattr(model, "backbone", None)
        if not isinstance(backbone, nn.Module):
            raise ValueError(
                f"LoRA adapters need a model with a `backbone` module; "
                f"{type(model).__name__} has none"
            )
        inside = {id(m) for m in backbone.modules()}
        targets = [
            (parent, name, child)
            for parent in model.modules()
            for name, child in parent.named_children()
            if isinstance(child, nn.Linear) and id(child) in inside
        ]
        if not targets:
            raise ValueError(
                f"the backbone ({type(backbone).__name__}) has no nn.Linear layer to adapt"
            )
        self.model = model
        self.flags = [(n, p.requires_grad) for n, p in backbone.named_parameters()]
        backbone.requires_grad_(False)
        for parent, name, child in targets:
            setattr(parent, name, LoRALinear(child, rank, alpha))

    def lora_layers(self) -> list[LoRALinear]:
        """Every adapted layer, in module order."""
        return [m for m in self.model.modules() if isinstance(m, LoRALinear)]

    def add_set(self, key: int = -1) -> None:
        """Add an adapter set (see `LoRALinear.add_set`) to every adapted layer."""
        for layer in self.lora_layers():
            layer.add_set(key)

    def set_grad_scale(self, scale: float) -> None:
        """Scale the adapters' gradients by `scale` (see `LoRALinear.grad_scale`)."""
        for layer in self.lora_layers():
            layer.grad_scale = float(scale)

    def remove(self) -> nn.Module:
        """The original model: its original Linear objects back in place, flags restored."""
        for parent in list(self.model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, LoRALinear):
                    setattr(parent, name, child.base)
        params = dict(cast(nn.Module, self.model.backbone).named_parameters())
        for name, flag in self.flags:
            params[name].requires_grad_(flag)
        return self.model

    def grow_outputs(self, n_classes: int, n_tasks: int) -> bool:
        """Grow the wrapped model's head (its backbone keeps its adapters)."""
        return grow_outputs(self.model, n_classes, n_tasks)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        layers = self.lora_layers()
        for layer in layers:
            layer.route = t
        try:
            if getattr(self.model, "takes_task", False):
                return self.model(x, t)
            return self.model(x)
        finally:
            for layer in layers:
                layer.route = None


def add_lora(model: nn.Module, rank: int = 8, alpha: float = 8.0) -> LoRAModel:
    """Freeze `model.backbone` and wrap its Linear layers in `LoRALinear`s (no set yet)."""
    return LoRAModel(model, rank, alpha)


def remove_lora(model: LoRAModel) -> nn.Module:
    """Undo `add_lora`: the original model, bit for bit (see `LoRAModel.remove`)."""
    return model.remove()


def original_name(model: nn.Module) -> Callable[[str], str]:
    """A function from a name in `model` (`named_parameters`, `named_buffers`) to the name
    the tensor has in the model without adapters: `LoRAModel`'s `model.` prefix and each
    `LoRALinear`'s `.base` are dropped (adapters read `<layer>.A.<i>`, `<layer>.B.<i>`).
    For a model without adapters it is the identity."""
    wrapped = isinstance(model, LoRAModel)
    bases = [f"{n}.base." for n, m in model.named_modules() if isinstance(m, LoRALinear) and n]

    def rename(name: str) -> str:
        for b in bases:
            if name.startswith(b):
                name = b[: -len("base.")] + name[len(b) :]
                break
        return name.removeprefix("model.") if wrapped else name

    return rename
