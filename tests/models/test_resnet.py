"""ResNet-18 models and user-supplied models (`module:factory`, callables)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lifelong.config import TrainConfig
from lifelong.data import TensorSet, split_by_class
from lifelong.experiment.run import RunConfig, run
from lifelong.models import (
    MODELS,
    MultiHead,
    ResNet18,
    build_model,
    parse_model_spec,
    resolve_factory,
)


def image_stream(scenario: str = "class", shape: tuple[int, ...] = (3, 16, 16)):
    """4 classes of images, class k lights up quadrant k (plus noise)."""
    g = torch.Generator().manual_seed(0)
    parts = []
    for n in (24, 8):
        y = torch.arange(4).repeat_interleave(n)
        x = 0.3 * torch.randn(len(y), *shape, generator=g)
        h, w = shape[-2] // 2, shape[-1] // 2
        for k in range(4):
            r, c = divmod(k, 2)
            x[y == k, ..., r * h : (r + 1) * h, c * w : (c + 1) * w] += 2.0
        parts.append(TensorSet(x, y, torch.zeros_like(y)))
    return split_by_class(parts[0], parts[1], scenario=scenario, classes_per_experience=2)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_reduced_and_standard_resnet18_sizes() -> None:
    reduced = ResNet18((3, 32, 32), 100, nf=20)
    standard = ResNet18((3, 32, 32), 100, nf=64)
    assert reduced.feature_size == 160 and standard.feature_size == 512
    # GEM's reduced ResNet-18 has ~1.1M parameters; the CIFAR ResNet-18 ~11.2M.
    assert 1.0e6 < n_params(reduced) < 1.2e6
    assert 11.0e6 < n_params(standard) < 11.4e6
    assert reduced(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert {"reduced-resnet18", "resnet18"} <= set(MODELS)


@pytest.mark.parametrize(
    "shape",
    [(1, 28, 28), (784,), (28, 28), (3 * 32 * 32,)],
    ids=["1x28x28", "784", "28x28", "3072"],
)
def test_resnet_accepts_images_and_square_flat_inputs(shape: tuple[int, ...]) -> None:
    m = ResNet18(shape, 10, nf=4)
    assert m(torch.randn(3, *shape)).shape == (3, 10)
    assert m.backbone(torch.randn(3, *shape)).shape == (3, 32)


def test_non_image_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="not square images"):
        ResNet18((10,), 3)


def test_task_scenario_gets_one_head_per_task_on_the_resnet_backbone() -> None:
    stream = image_stream("task")
    m = build_model("reduced-resnet18", stream, nf=4)
    assert isinstance(m, MultiHead) and m.weight.shape == (2, 4, 32)
    m.adapt_to(stream[1])
    out = m(torch.randn(2, 3, 16, 16), torch.tensor([1, 1]))
    assert out.shape == (2, 4) and bool((out[:, :2] < -1e3).all())


def test_grow_head_replaces_the_resnet_head() -> None:
    m = build_model("resnet18", image_stream(), head="grow", nf=4)
    assert m.head.in_features == 32  # type: ignore[union-attr]


def test_reduced_resnet_learns_an_image_stream() -> None:
    stream = image_stream()
    cfg = RunConfig(
        model="reduced-resnet18(nf=8)", train=TrainConfig(epochs=5, lr=0.01, batch_size=8)
    )
    row = run(cfg, stream=stream)
    matrix = row["accuracy_matrix"]
    assert matrix[0][0] > 0.9 and matrix[1][1] > 0.9


class Tiny(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], n_classes: int, width: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), width), nn.ReLU(), nn.Linear(width, n_classes))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_callable_factory_gets_input_shape_and_n_classes() -> None:
    seen = {}

    def factory(input_shape: tuple[int, ...], n_classes: int, width: int = 8) -> nn.Module:
        seen.update(input_shape=input_shape, n_classes=n_classes, width=width)
        return Tiny(input_shape, n_classes, width)

    stream = image_stream()
    m = build_model(factory, stream, width=5)
    assert seen == {"input_shape": (3, 16, 16), "n_classes": 4, "width": 5}
    assert m(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    task = build_model(factory, image_stream("task"))
    assert isinstance(task, MultiHead)  # task heads go on the user model's outputs


def test_module_factory_string(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_nets.py").write_text(
        "from torch import nn\n"
        "class Factories:\n"
        "    @staticmethod\n"
        "    def make(input_shape, n_classes, width=4):\n"
        "        return nn.Sequential(nn.Flatten(), nn.Linear(768, width), nn.Linear(width, n_classes))\n"
        "def not_a_model(input_shape, n_classes):\n"
        "    return 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_nets", raising=False)
    name, params = parse_model_spec("user_nets:Factories.make(width=6)")
    assert (name, params) == ("user_nets:Factories.make", {"width": 6})
    m = build_model(name, image_stream(), **params)
    assert m(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    assert parse_model_spec("mlp(hidden=(8,8))") == ("mlp", {"hidden": (8, 8)})
    with pytest.raises(ValueError, match="cannot import module 'no_such_mod'"):
        resolve_factory("no_such_mod:f")
    with pytest.raises(ValueError, match="has no 'missing'"):
        resolve_factory("user_nets:missing")
    with pytest.raises(ValueError, match="not an nn.Module"):
        build_model("user_nets:not_a_model", image_stream())
