"""Features of a frozen backbone, computed once per sample and reused.

A frozen pretrained backbone (`lifelong.models.pretrained`) maps a sample to the same
features every time, so they are computed once: `FeatureCache.lookup(x, compute)` hashes
each input row (BLAKE2b of its bytes, the data fingerprint), computes the rows it has not
seen in one call of `compute`, and returns every row's features from the cache. A cache is
named by its backbone's key (the weights file, its size and time, and every option that
changes the features), so every epoch, strategy, seed, run and process that uses the same
backbone on the same samples shares it.

Caches live in memory (one per backbone key per process) and, unless `folder=None`, on
disk under `feature_cache_dir()` (`$LIFELONG_FEATURE_CACHE`, else `features/` in the data
folder, `$LIFELONG_DATA` or `~/.cache/lifelong`): new rows are written as shard files
(`<key>/<pid>-<random>.pt`, tensors only, read with `weights_only=True`) every
`FLUSH_ROWS` rows and when the process ends, and a new process reads every shard at its
first lookup. Worker processes of `lifelong compare` thus reuse what earlier runs computed.
Deleting the folder is always safe. `lifelong.models.pretrained.encode_cached(backbone,
texts)` is the entry point for code that wants features without training (personalization
heads, analysis).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

#: Pending rows written to a new shard file once this many have been computed.
FLUSH_ROWS = 512

_CACHES: dict[tuple[str, str | None], FeatureCache] = {}


def feature_cache_dir() -> Path:
    """`$LIFELONG_FEATURE_CACHE`, else `<data folder>/features`."""
    env = os.environ.get("LIFELONG_FEATURE_CACHE")
    if env:
        return Path(env).expanduser()
    root = os.environ.get("LIFELONG_DATA") or "~/.cache/lifelong"
    return Path(root).expanduser() / "features"


def row_keys(x: Tensor) -> list[bytes]:
    """One 16-byte BLAKE2b digest per row of `x` (its dtype, shape and bytes)."""
    a = np.ascontiguousarray(x.detach().cpu().numpy())
    tag = f"{a.dtype}{a.shape[1:]}".encode()
    rows = a.reshape(len(a), -1)
    return [hashlib.blake2b(tag + r.tobytes(), digest_size=16).digest() for r in rows]


class FeatureCache:
    """Features by input-row digest for one backbone `key` (see the module docstring)."""

    def __init__(self, key: str, folder: Path | None) -> None:
        self.key = key
        self.folder = None if folder is None else folder / key
        self.rows: dict[bytes, Tensor] = {}
        self.pending: list[bytes] = []
        self.loaded = folder is None
        self.hits = 0
        self.misses = 0

    def lookup(self, x: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        """The features of every row of `x`: from the cache, or by `compute(rows)` (called
        once, on the rows not seen yet, without gradients), on `x`'s device."""
        self._load()
        keys = row_keys(x)
        todo: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in self.rows and k not in todo:
                todo[k] = i
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        if todo:
            with torch.no_grad():
                new = compute(x[list(todo.values())]).detach().to("cpu", torch.float32)
            for k, row in zip(todo, new):
                self.rows[k] = row.clone()
            self.pending += list(todo)
            if len(self.pending) >= FLUSH_ROWS:
                self.flush()
        out = torch.stack([self.rows[k] for k in keys])
        return out.to(x.device)

    def flush(self) -> None:
        """Write the rows computed since the last flush as one shard file (atomically)."""
        if self.folder is None or not self.pending:
            self.pending = []
            return
        keys, self.pending = self.pending, []
        self.folder.mkdir(parents=True, exist_ok=True)
        blob = {
            "keys": torch.frombuffer(bytearray(b"".join(keys)), dtype=torch.uint8).view(-1, 16),
            "values": torch.stack([self.rows[k] for k in keys]),
        }
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}.pt"
        tmp = self.folder / f".{name}.tmp"
        torch.save(blob, tmp)
        os.replace(tmp, self.folder / name)

    def _load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        assert self.folder is not None
        for shard in sorted(self.folder.glob("*.pt")) if self.folder.exists() else []:
            try:
                blob = torch.load(shard, weights_only=True)
                keys, values = blob["keys"], blob["values"]
            except Exception:  # a damaged shard is only a lost speed-up: recompute its rows
                continue
            for k, v in zip(keys.numpy(), values):
                self.rows.setdefault(k.tobytes(), v)

    def __len__(self) -> int:
        self._load()
        return len(self.rows)


def get_cache(key: str, folder: Path | str | None | bool = True) -> FeatureCache:
    """The process's cache for backbone `key`: on disk under `folder` (True: the default
    `feature_cache_dir()`), or memory only (`folder=None` or False)."""
    where = feature_cache_dir() if folder is True else None if folder is False else folder
    path = None if where is None else Path(where).expanduser()
    ident = (key, None if path is None else str(path))
    if ident not in _CACHES:
        _CACHES[ident] = FeatureCache(key, path)
    return _CACHES[ident]


def clear_caches() -> None:
    """Flush every cache to disk and drop them from memory (tests, benchmarks)."""
    _flush_all()
    _CACHES.clear()


@atexit.register
def _flush_all() -> None:
    for cache in list(_CACHES.values()):
        try:
            cache.flush()
        except OSError:
            pass
