"""ResNet-18 models for image streams: the reduced ResNet-18 of continual learning and a
standard ResNet-18 for 32x32 inputs.

* `reduced-resnet18`: the "reduced ResNet-18" of Lopez-Paz & Ranzato, *Gradient Episodic
  Memory for Continual Learning* (NeurIPS 2017): ResNet-18's four stages of two basic
  blocks with `nf = 20` base filters (20, 40, 80, 160) instead of 64, global average
  pooling, 160 features. Used by GEM, A-GEM, ER and many later papers on Split CIFAR.
* `resnet18`: He et al., *Deep Residual Learning for Image Recognition* (CVPR 2016) in its
  CIFAR form: a 3x3 stem without max-pooling, 64..512 filters, 512 features.

Both take `[C, H, W]` images of any size (3x32x32, 1x28x28, ...); flat inputs whose length
is `s*s` or `3*s*s` are reshaped to square images. Like `MLP` they expose `backbone`
(input -> features), `feature_size` and `head`, so the task scenario's `MultiHead` works.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data.experience import Stream
from lifelong.models import register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv) shortcut (He et al. 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ToImage(nn.Module):
    """Reshape flat inputs `[N, D]` to `[N, *shape]` (images pass through unchanged)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), *self.shape) if x.ndim != 4 else x


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """`[C, H, W]` for an input shape: images as they are, flat `s*s` -> `(1, s, s)`,
    flat `3*s*s` -> `(3, s, s)`."""
    if len(input_shape) == 3:
        return (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
    if len(input_shape) == 2:
        return (1, int(input_shape[0]), int(input_shape[1]))
    d = math.prod(input_shape)
    for c in (1, 3):
        s = math.isqrt(d // c)
        if c * s * s == d:
            return (c, s, s)
    raise ValueError(
        f"a ResNet needs images [C, H, W]; got inputs of shape {input_shape}, which are not "
        "square images (s*s or 3*s*s values)"
    )


class ResNet18(nn.Module):
    """ResNet-18 for small images: 3x3 stem, four stages of two `BasicBlock`s with `nf`,
    2nf, 4nf, 8nf filters (strides 1, 2, 2, 2), global average pooling, linear head.

    `nf=20` is the reduced ResNet-18 of GEM (Lopez-Paz & Ranzato 2017); `nf=64` the
    standard one (He et al. 2016, CIFAR variant).
    """

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, nf: int = 64) -> None:
        super().__init__()
        if nf < 1:
            raise ValueError(f"nf (base filters) must be >= 1, got {nf}")
        shape = image_shape(input_shape)
        layers: list[nn.Module] = [
            ToImage(shape),
            nn.Conv2d(shape[0], nf, 3, 1, 1, bias=False),
            nn.BatchNorm2d(nf),
            nn.ReLU(),
        ]
        c = nf
        for i, stride in enumerate((1, 2, 2, 2)):
            out = nf * 2**i
            layers += [BasicBlock(c, out, stride), BasicBlock(out, out, 1)]
            c = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.backbone = nn.Sequential(*layers)
        self.feature_size = c
        self.head: nn.Module = nn.Linear(c, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


@register_model("reduced-resnet18")
def reduced_resnet18(stream: Stream, nf: int = 20) -> nn.Module:
    """The reduced ResNet-18 of GEM (Lopez-Paz & Ranzato 2017): nf=20, 160 features."""
    return ResNet18(stream.input_shape, stream.n_classes, nf)


@register_model("resnet18")
def resnet18(stream: Stream, nf: int = 64) -> nn.Module:
    """Standard ResNet-18 for 32x32 images (He et al. 2016, CIFAR variant), 512 features."""
    return ResNet18(stream.input_shape, stream.n_classes, nf)
