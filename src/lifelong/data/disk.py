"""Training sets that are not held as float tensors in memory: `DiskSet` and `Transform`.

A `DiskSet` is a contiguous range of rows of a numpy array -- a memory-mapped `.npy`
file (data larger than RAM) or a compact in-memory array (uint8 images) -- with its
labels and task ids in memory. It has the interface the training loop uses on a
`TensorSet` (`len()`, `batches(order, batch_size)`, `to(device)`), plus `__getitem__`
(returns an in-memory `TensorSet`) and `x`, `y`, `t`. Each batch is read, moved to the
set's device and passed through its `Transform` (uint8 -> float, standardize, permute,
rotate), so images stay compact and a permuted or rotated domain costs no extra memory.

Memory-mapped sets read their batches in `num_workers` `DataLoader` worker processes.
All sets over one file share one loader whose workers are started once (persistent) and
re-pointed at each new epoch's order, not restarted per epoch or experience.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from lifelong.data.experience import TensorSet


@lru_cache(maxsize=64)
def _permutation(d: int, seed: int) -> Tensor:
    return torch.randperm(d, generator=torch.Generator().manual_seed(seed))


@dataclass(frozen=True)
class Transform:
    """Per-batch input preprocessing: `x.float() * scale`, then rotate, permute, standardize.

    `mean`/`std` hold one value or one per channel (dimension 1 of the input).
    `permutation_seed=k` permutes the flattened features with `randperm` seeded by `k`,
    exactly as `lifelong.data.permuted` does for experience k. `rotation` rotates images
    by that many degrees (as `lifelong.data.rotate_images`).
    """

    scale: float = 1.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    permutation_seed: int | None = None
    rotation: float = 0.0

    def __call__(self, x: Tensor) -> Tensor:
        x = x.float()
        if self.scale != 1.0:
            x = x * self.scale
        if self.rotation:
            from lifelong.data.scenarios import rotate_images

            x = rotate_images(x, self.rotation)
        if self.permutation_seed is not None:
            flat = x.reshape(len(x), -1)
            perm = _permutation(flat.shape[1], self.permutation_seed).to(x.device)
            x = flat[:, perm].reshape(x.shape)
        if self.mean:
            shape = (1, -1) + (1,) * (x.ndim - 2) if len(self.mean) > 1 else (1,)
            mean, std = _stats(self.mean, self.std, shape, str(x.device))
            x = (x - mean) / std
        return x


@lru_cache(maxsize=64)
def _stats(
    mean: tuple[float, ...], std: tuple[float, ...], shape: tuple[int, ...], device: str
) -> tuple[Tensor, Tensor]:
    return (
        torch.tensor(mean, device=device).view(shape),
        torch.tensor(std, device=device).view(shape),
    )


class _Rows(Dataset[Tensor]):
    """Worker-side reader: `dataset[rows]` is the rows of a `.npy` file (opened lazily)."""

    def __init__(self, path: str, n: int) -> None:
        self.path, self.n = path, n
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, rows: Any) -> Tensor:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(np.ascontiguousarray(self._array[rows]))

    def __getstate__(self) -> dict[str, Any]:  # spawn start method: never pickle the memmap
        return {"path": self.path, "n": self.n, "_array": None}


class _Order(Sampler[np.ndarray]):
    """Yields the batches (arrays of rows) of the current epoch; re-pointed every epoch."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)


class _Pool:
    """One persistent `DataLoader` per memory-mapped file, shared by all its `DiskSet`s."""

    def __init__(self, path: str, n: int, num_workers: int) -> None:
        self.path, self.n, self.num_workers = path, n, num_workers
        self.order = _Order()
        self.loader: DataLoader[Tensor] | None = None
        self.lock = threading.Lock()

    def get(self, pin: bool) -> DataLoader[Tensor]:
        if self.loader is None:
            self.loader = DataLoader(
                _Rows(self.path, self.n),
                sampler=self.order,
                batch_size=None,
                num_workers=self.num_workers,
                persistent_workers=True,
                pin_memory=pin,
                prefetch_factor=4,
            )
        return self.loader


class DiskSet:
    """Rows `[start, stop)` of `array` (a memmap or in-memory numpy array) as a training set.

    `y` and `t` (labels, task ids of those rows) live in memory; inputs are read per batch
    and passed through `transform` on the set's device. `x` is a zero-copy view of the
    file on the CPU without a transform (otherwise it builds the whole tensor: costly).
    `num_workers > 0` reads memory-mapped batches in persistent `DataLoader` workers.
    """

    def __init__(
        self,
        array: np.ndarray,
        y: Tensor,
        t: Tensor,
        start: int = 0,
        stop: int | None = None,
        transform: Transform | None = None,
        num_workers: int = 0,
        device: torch.device | str = "cpu",
        _pool: _Pool | None = None,
    ) -> None:
        stop = len(array) if stop is None else stop
        if not 0 <= start <= stop <= len(array):
            raise ValueError(f"DiskSet rows [{start}, {stop}) are outside 0..{len(array)}")
        if y.shape != (stop - start,) or t.shape != y.shape:
            raise ValueError(
                f"DiskSet needs one label and task id per row ({stop - start}); "
                f"got y {tuple(y.shape)}, t {tuple(t.shape)}"
            )
        self.array, self.start, self.stop = array, start, stop
        self.y, self.t, self.transform = y, t, transform
        self.num_workers, self.device = num_workers, torch.device(device)
        path = getattr(array, "filename", None)
        if _pool is None and num_workers > 0 and path is not None:
            _pool = _Pool(str(path), len(array), num_workers)
        self._pool = _pool

    def _like(self, **changes: Any) -> DiskSet:
        args: dict[str, Any] = dict(
            array=self.array, y=self.y, t=self.t, start=self.start, stop=self.stop,
            transform=self.transform, num_workers=self.num_workers, device=self.device,
            _pool=self._pool,
        )  # fmt: skip
        args.update(changes)
        return DiskSet(**args)

    def __len__(self) -> int:
        return self.stop - self.start

    def __repr__(self) -> str:
        where = getattr(self.array, "filename", None) or "memory"
        return f"DiskSet({len(self)} rows of {tuple(self.array.shape)} from {where})"

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one input (without the batch dimension)."""
        return tuple(int(s) for s in self.array.shape[1:])

    @property
    def x(self) -> Tensor:
        """All inputs, on the set's device. On the CPU without a transform this is a
        zero-copy view of the rows; otherwise the whole tensor is built (costly: prefer
        `batches` or `set[idx]`)."""
        view = torch.from_numpy(self._view(slice(self.start, self.stop)))
        return self._finish(view) if self.transform or self.device.type != "cpu" else view

    def _view(self, rows: slice | np.ndarray) -> np.ndarray:
        a = self.array[rows]
        return a if a.flags.writeable else np.array(a)  # torch wants writable arrays

    def _finish(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        return self.transform(x) if self.transform else x

    def __getitem__(self, idx: Tensor | slice | int) -> TensorSet:
        """The rows at `idx` (a slice, int, index or boolean-mask tensor, as for a
        `TensorSet`) as an in-memory `TensorSet`, transformed, on the set's device."""
        local = torch.arange(len(self))[idx.cpu() if isinstance(idx, Tensor) else idx]
        return self._read(local.reshape(-1).numpy())

    def _read(self, local: np.ndarray) -> TensorSet:
        x = torch.from_numpy(np.ascontiguousarray(self.array[local + self.start]))
        dev = torch.from_numpy(local).to(self.y.device)
        return TensorSet(self._finish(x), self.y[dev], self.t[dev])

    def batches(self, order: Tensor, batch_size: int) -> Iterator[TensorSet]:
        """Yield the rows in `order` (local indices), `batch_size` at a time, on the set's
        device. Rows are read in file order within a batch (the batch is a set)."""
        local = order.detach().cpu().numpy().astype(np.int64)
        chunks = [np.sort(local[i : i + batch_size]) for i in range(0, len(local), batch_size)]
        pool = self._pool
        if pool is None or not pool.lock.acquire(blocking=False):
            for chunk in chunks:
                yield self._read(chunk)
            return
        try:
            pool.order.chunks = [c + self.start for c in chunks]
            loader = pool.get(pin=self.device.type == "cuda")
            for chunk, x in zip(chunks, loader):
                idx = torch.from_numpy(chunk).to(self.y.device)
                yield TensorSet(self._finish(x), self.y[idx], self.t[idx])
        finally:
            pool.lock.release()

    def to(self, device: torch.device | str) -> DiskSet:
        """This set with batches, labels and task ids on `device` (the inputs stay on disk)."""
        device = torch.device(device)
        if device == self.device:
            return self
        return self._like(y=self.y.to(device), t=self.t.to(device), device=device)

    @staticmethod
    def ranges(
        array: np.ndarray,
        bounds: Sequence[int],
        y: Tensor,
        t: Tensor,
        transforms: Sequence[Transform | None] | None = None,
        num_workers: int = 0,
    ) -> list[DiskSet]:
        """Sets over the consecutive row ranges `[bounds[i], bounds[i + 1])` of `array`
        (`y`, `t` cover the rows from `bounds[0]`), sharing one persistent loader."""
        out: list[DiskSet] = []
        pool = None
        for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
            lo, hi = a - bounds[0], b - bounds[0]
            tf = transforms[i] if transforms is not None else None
            s = DiskSet(array, y[lo:hi], t[lo:hi], a, b, tf, num_workers, _pool=pool)
            pool = s._pool
            out.append(s)
        return out

    @staticmethod
    def concat(parts: Sequence[DiskSet]) -> DiskSet | TensorSet:
        """Adjacent ranges of one array (same transform) become one `DiskSet`; anything
        else is loaded and concatenated in memory."""
        first = parts[0]
        adjacent = all(
            p.array is first.array and p.transform == first.transform and p.start == q.stop
            for q, p in zip(parts, parts[1:])
        )
        if adjacent:
            y = torch.cat([p.y for p in parts])
            t = torch.cat([p.t for p in parts])
            return first._like(y=y, t=t, stop=parts[-1].stop)
        return TensorSet.concat([p[:] for p in parts])


def write_npy(
    path: Path,
    n_rows: int,
    sample_shape: tuple[int, ...],
    chunks: Iterable[np.ndarray],
    destination: np.ndarray,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Write `chunks` (consecutive source rows) into a new `.npy` at `path`, source row i
    going to row `destination[i]` (-1: dropped). Atomic: a temporary file is renamed at the
    end. Refuses NaN/inf features, naming the source row. Returns the file memory-mapped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n_rows, *sample_shape))
    try:
        seen = 0
        for chunk in chunks:
            dest = destination[seen : seen + len(chunk)]
            if np.issubdtype(chunk.dtype, np.floating) and not np.isfinite(chunk).all():
                finite = np.isfinite(chunk.reshape(len(chunk), -1)).all(1)
                raise ValueError(
                    f"row {seen + int(np.flatnonzero(~finite)[0])} has NaN or inf features"
                )
            keep = dest >= 0
            out[dest[keep]] = chunk[keep]
            seen += len(chunk)
        if seen != len(destination):
            raise ValueError(f"the source gave {seen} rows, expected {len(destination)}")
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return np.load(path, mmap_mode="c")  # copy-on-write: writable for torch, file untouched
