"""Production streams for the simulator: rows arriving in order, with the positions
where the data drifts known in advance.

| name | data | drift |
|---|---|---|
| `mnist-stable` | MNIST-5k (5,000 real digits, shuffled) | none |
| `mnist-abrupt` | MNIST-5k | every digit rotated by `angle` degrees from `position` on |
| `mnist-rotating` | MNIST-5k | rotation growing from 0 at `position` to `angle` degrees at the end |
| `sea-stable` | river's SEA (3 features, 2 classes) | none |
| `sea-abrupt` | SEA, through river's `ConceptDriftStream` | the concept changes at `position` |
| `agrawal-abrupt` | river's Agrawal (9 features, 2 classes), `ConceptDriftStream` | the classification function changes at `position` |

Your own data: `from_file(path, target, text_column=..., time_column=...)` (`lifelong
simulate --data FILE --target COL`) replays a CSV/TSV/Parquet table in its row order (or
by a time column); where it drifts is not known unless `drift_at` says so.

SEA and Agrawal drift in the labels (P(y | x)); their inputs do not move, so only the
accuracy trigger can see it. The MNIST rotations move the inputs. Agrawal's features are
standardized with the statistics of the rows before the first drift (a fixed
preprocessing step, as a deployment would have).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ProductionStream:
    name: str
    x: np.ndarray  # float32 rows, in arrival order
    y: np.ndarray  # int64 labels
    drifts: tuple[int, ...] = ()  # row positions where the data starts to drift
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)


def _mnist(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from lifelong.data.benchmarks import _mnist5k

    tr, te = _mnist5k()
    x = np.concatenate([tr.x.numpy(), te.x.numpy()])
    y = np.concatenate([tr.y.numpy(), te.y.numpy()])
    order = np.random.default_rng(seed).permutation(len(y))[:n]
    return x[order], y[order].astype(np.int64)


def _standardize(x: np.ndarray) -> np.ndarray:
    from lifelong.data.benchmarks import MNIST_MEAN, MNIST_STD

    return ((x - MNIST_MEAN) / MNIST_STD).astype(np.float32)


def _rotate(x: np.ndarray, angles: np.ndarray, chunk: int = 50) -> np.ndarray:
    """Rotate rows of flat 28x28 images, `chunk` rows at a time by their mean angle."""
    import torch

    from lifelong.data.scenarios import rotate_images

    out = x.copy()
    for i in range(0, len(x), chunk):
        a = float(angles[i : i + chunk].mean())
        if a:
            part = torch.from_numpy(x[i : i + chunk])
            out[i : i + chunk] = rotate_images(part, a, (28, 28)).numpy()
    return out


def mnist(
    drift: str = "abrupt", n: int = 5000, position: int = 2500, angle: float = 90.0, seed: int = 0
) -> ProductionStream:
    """MNIST-5k as a stream; `drift`: "none", "abrupt" or "rotating" (see the table)."""
    x, y = _mnist(n, seed)
    pos = np.arange(len(y))
    if drift == "none":
        return ProductionStream("mnist-stable", _standardize(x), y, (), {"n": len(y), "seed": seed})
    if drift == "abrupt":
        angles = np.where(pos >= position, angle, 0.0)
    elif drift == "rotating":
        angles = np.clip((pos - position) / max(1, len(y) - position), 0, 1) * angle
    else:
        raise ValueError(f"drift={drift!r}: choose none, abrupt or rotating")
    info = {"n": len(y), "seed": seed, "angle": angle, "position": position}
    return ProductionStream(
        f"mnist-{drift}", _standardize(_rotate(x, angles)), y, (position,), info
    )


def _river(stream: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    rows = list(itertools.islice(stream, n))
    x = np.array([list(r.values()) for r, _ in rows], dtype=np.float64)
    y = np.array([int(label) for _, label in rows], dtype=np.int64)
    return x, y


def _drifting(before: Any, after: Any, n: int, position: int, seed: int) -> Any:
    from river.datasets import synth

    # river's sigmoid overflows when the stream is long next to the drift's width
    width = max(10, position // 150 + 1, (n - position) // 150 + 1)
    return synth.ConceptDriftStream(before, after, position=position, width=width, seed=seed)


def sea(
    drift: str = "abrupt", n: int = 6000, position: int = 3000, seed: int = 0
) -> ProductionStream:
    """River's SEA concepts (variant 2, then variant 3 after `position`), noise 10%."""
    from river.datasets import synth

    first = synth.SEA(variant=2, noise=0.1, seed=seed)
    if drift == "none":
        x, y = _river(first, n)
        return ProductionStream(
            "sea-stable", ((x - 5.0) / 2.9).astype(np.float32), y, (), {"n": n, "seed": seed}
        )
    if drift != "abrupt":
        raise ValueError(f"drift={drift!r}: SEA streams are 'none' or 'abrupt'")
    second = synth.SEA(variant=3, noise=0.1, seed=seed + 1)
    x, y = _river(_drifting(first, second, n, position, seed), n)
    info = {"n": n, "seed": seed, "position": position, "variants": [2, 3]}
    return ProductionStream(
        "sea-abrupt", ((x - 5.0) / 2.9).astype(np.float32), y, (position,), info
    )


def agrawal(n: int = 6000, position: int = 3000, seed: int = 0) -> ProductionStream:
    """River's Agrawal generator, classification function 0, then 2 after `position`."""
    from river.datasets import synth

    first = synth.Agrawal(classification_function=0, seed=seed)
    second = synth.Agrawal(classification_function=2, seed=seed + 1)
    x, y = _river(_drifting(first, second, n, position, seed), n)
    mean, std = x[:position].mean(0), x[:position].std(0) + 1e-9
    info = {"n": n, "seed": seed, "position": position, "functions": [0, 2]}
    return ProductionStream(
        "agrawal-abrupt", ((x - mean) / std).astype(np.float32), y, (position,), info
    )


def from_file(
    path: str | Path,
    target: str,
    *,
    text_column: str | None = None,
    features: list[str] | None = None,
    time_column: str | None = None,
    n: int | None = None,
    drift_at: list[int] | None = None,
) -> ProductionStream:
    """A table's rows as a production stream, in file order or sorted by `time_column`
    (stable, so ties keep file order). Features: the numeric columns (or `features`), as
    they are (scale them as the deployment will), or `text_column`'s texts as code points
    (a `text:...` model). Labels: `target`, as class ids (integers kept, anything else in
    sorted order; `info["classes"]` names them). `n`: the first `n` rows after sorting."""
    from lifelong.data.readers import encode_labels, open_source

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--data {str(file)!r}: no such file")
    src = open_source(file, "class", target, features, time_column, None, None, text_column)
    x = np.concatenate(list(src.chunks())).astype(np.float32)
    y, names = encode_labels(src.labels, src.label_name)
    if time_column is not None:
        order = np.argsort(np.asarray(src.groups), kind="stable")
        x, y = x[order], y[order]
    if n is not None:
        x, y = x[:n], y[:n]
    drifts = tuple(sorted(int(d) for d in drift_at or ()))
    if any(not 0 < d < len(y) for d in drifts):
        raise ValueError(f"drift_at {list(drifts)}: positions must lie inside the {len(y)} rows")
    info: dict[str, Any] = {"path": str(file.resolve()), "target": target, "n": len(y)}
    info.update(
        {k: v for k, v in (("text_column", text_column), ("time_column", time_column)) if v}
    )
    if names:
        info["classes"] = list(names)
    return ProductionStream(file.stem, x, y.astype(np.int64), drifts, info)


STREAMS: dict[str, Callable[..., ProductionStream]] = {
    "mnist-stable": lambda n=5000, seed=0: mnist("none", n=n, seed=seed),
    "mnist-abrupt": lambda **kw: mnist("abrupt", **kw),
    "mnist-rotating": lambda **kw: mnist("rotating", **kw),
    "sea-stable": lambda n=6000, seed=0: sea("none", n=n, seed=seed),
    "sea-abrupt": lambda **kw: sea("abrupt", **kw),
    "agrawal-abrupt": agrawal,
}


def make_stream(name: str, **options: Any) -> ProductionStream:
    """The stream `name` (see the table), with its options (n, position, seed, ...)."""
    if name not in STREAMS:
        raise ValueError(f"unknown stream {name!r}: choose one of {', '.join(STREAMS)}")
    try:
        return STREAMS[name](**options)
    except TypeError as e:
        raise ValueError(f"stream {name!r}: {e}") from None
