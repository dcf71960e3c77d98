"""A multi-layer perceptron: the reference model of the MNIST-style benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class MLP(nn.Module):
    """Flatten, then `Linear -> ReLU (-> Dropout)` per hidden size, then a linear head.

    `backbone` maps inputs to features of size `hidden[-1]`; `head` maps those to logits,
    so the task scenario can swap `head` for one head per task.
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        hidden: Sequence[int] = (400, 400),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"MLP hidden sizes must be positive integers, got {list(hidden)}")
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for h in hidden:
            layers += [nn.Linear(d, int(h)), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            d = int(h)
        self.backbone = nn.Sequential(*layers)
        self.feature_size = d
        self.head: nn.Module = nn.Linear(d, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))
