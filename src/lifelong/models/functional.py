"""How the rest of the library calls a model: with or without task ids, which parameters
train, and how heads adapt to a new experience. Strategies and the training loop use
these instead of knowing the model's class."""

from __future__ import annotations

from torch import Tensor, nn

from lifelong.data.experience import Experience


def forward(model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
    """Call `model` with task ids when it takes them (multi-head), without otherwise."""
    return model(x, t) if getattr(model, "takes_task", False) else model(x)


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer updates."""
    return [p for p in model.parameters() if p.requires_grad]


def adapt_model(model: nn.Module, experience: Experience) -> None:
    """Let heads that depend on the experience (multi-head, growing head) adapt to it."""
    for m in model.modules():
        adapt = getattr(m, "adapt_to", None)
        if callable(adapt):
            adapt(experience)
