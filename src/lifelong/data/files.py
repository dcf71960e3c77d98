"""The user's own data as a stream: CSV and Parquet tables, numpy `.npz`, image folders.

`stream_from_files(path, scenario, ...)` reads the data, splits every experience into
train/test (stratified by class, fixed seed) and builds the class-, domain- or
task-incremental stream with the builders of `lifelong.data.scenarios`. Data larger than
`memory_limit_mb` (as float32) is converted once into a memory-mapped `.npy` cache next to
the data and trained from disk (`lifelong.data.disk.DiskSet`); test sets stay in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lifelong.data.disk import DiskSet, write_npy
from lifelong.data.experience import Experience, Stream, TensorSet
from lifelong.data.readers import Source, encode_groups, encode_labels, open_source
from lifelong.data.scenarios import by_domain, split_by_class

#: Data (as float32) above this many MB trains from a disk cache unless `in_memory=True`.
MEMORY_LIMIT_MB = 1024.0
#: Test samples kept per experience when training from disk (a random subset).
DISK_TEST_CAP = 10_000


def stream_from_files(
    path: str | os.PathLike[str],
    scenario: str = "class",
    target: str | None = None,
    features: Sequence[str] | str | None = None,
    task_column: str | None = None,
    domain_column: str | None = None,
    classes_per_experience: int | Sequence[int] | None = None,
    class_order: Sequence[int | str] | None = None,
    n_experiences: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    domain_order: Literal["appearance", "sorted"] = "appearance",
    in_memory: bool | None = None,
    memory_limit_mb: float = MEMORY_LIMIT_MB,
    max_test_per_experience: int | None = None,
    num_workers: int = 2,
    cache_dir: str | None = None,
    image_size: Sequence[int] | None = None,
    name: str | None = None,
    text_column: str | None = None,
) -> Stream:
    """Build a stream from the file or folder at `path`.

    * CSV / Parquet: `target` names the label column; features are the other columns (or
      the `features` listed). `task_column` (task scenario) or `domain_column` (domain
      scenario) gives one experience per value, in order of first appearance
      (`domain_order="sorted"`: sorted). Feature columns must be numeric.
    * `.npz`: arrays `x` (features, any shape), `y` (labels) and optional `t` (the task or
      domain of each sample, used in the task/domain scenario); `x` becomes float32 as is.
    * A folder with one subfolder of PNG/JPEG images per class (the subfolder names are
      the classes). Images take the mode (grey/RGB) and size of the first image (or
      `image_size=(width, height)`); others are converted and resized (bilinear).
      Pixels become float32 in [0, 1], shape `[C, H, W]`.
    * `text_column` (tables): that column's texts are the features, as float32 code points
      (`lifelong.data.text.encode_texts`, `MAX_CHARS` per text) for a text model
      (`--model text:minilm`); `stream.info["text_column"]` names it.

    Class and task streams group classes with `classes_per_experience`, `n_experiences`
    and `class_order` (ids or names) as `split_by_class` does. Each experience's data is
    split into train/test with a stratified `test_fraction` (seeded by `seed`). String
    labels become ids in sorted order; `stream.info["class_names"]` keeps the names.
    `in_memory=None` loads the data when it is under `memory_limit_mb` as float32 and
    otherwise trains from a memory-mapped cache (`cache_dir`, default `.lifelong-cache`
    next to the data) read by `num_workers` loader processes, keeping at most
    `max_test_per_experience` (default 10,000 on disk) test samples per experience.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"data path {str(path)!r} does not exist")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if domain_order not in ("appearance", "sorted"):
        raise ValueError(f"domain_order must be 'appearance' or 'sorted', got {domain_order!r}")
    if isinstance(features, str):
        features = [f.strip() for f in features.split(",") if f.strip()]
    group_column = _group_column(scenario, task_column, domain_column)
    limit = None if in_memory is True else 0.0 if in_memory is False else memory_limit_mb * 2**20
    src = open_source(
        path, scenario, target, features, group_column, limit, image_size, text_column
    )
    x = None if src.on_disk else torch.from_numpy(np.concatenate(list(src.chunks())))
    y, class_names = encode_labels(src.labels, src.label_name)
    if src.class_names is not None:
        class_names = src.class_names
    groups, group_values = None, None
    if src.groups is not None:
        groups, group_values = encode_groups(src.groups, src.group_name, domain_order)
    index = _index_stream(
        src, scenario, y, groups, group_values, class_names, classes_per_experience,
        class_order, n_experiences, test_fraction, seed, name or path.name,
    )  # fmt: skip
    info: dict[str, Any] = {
        "source": str(path),
        "class_names": class_names,
        "in_memory": x is not None,
        "test_fraction": test_fraction,
    }
    if group_values is not None:
        info["domains" if scenario == "domain" else "tasks"] = [str(v) for v in group_values]
    if text_column is not None:
        info["text_column"] = text_column
    info.update(_reading(src, group_column))
    if x is not None:
        exps = [_in_memory(e, x) for e in index.experiences]
    else:
        cap = DISK_TEST_CAP if max_test_per_experience is None else max_test_per_experience
        options: list[Any] = [target, features, group_column, scenario, classes_per_experience]
        options += [class_order, n_experiences, test_fraction, seed, domain_order, cap]
        options += [text_column] if text_column else []
        key = _cache_key(src.identity, options)
        exps = _on_disk(index, src, cap, seed, num_workers, _cache_file(path, cache_dir, key))
        info["fingerprint"] = key
    return Stream(
        index.name, index.scenario, tuple(exps), index.n_classes, index.n_tasks, info=info
    )


def _index_stream(
    src: Source,
    scenario: str,
    y: np.ndarray,
    groups: np.ndarray | None,
    group_values: list[Any] | None,
    class_names: list[str] | None,
    classes_per_experience: int | Sequence[int] | None,
    class_order: Sequence[int | str] | None,
    n_experiences: int | None,
    test_fraction: float,
    seed: int,
    name: str,
) -> Stream:
    """The stream with row numbers as features: split, grouped and validated by the
    scenario builders before any feature is read (or copied)."""
    order = _class_order(class_order, class_names)
    tr, te = _split(y, groups, test_fraction, seed, class_names, group_values)
    ids = torch.arange(len(y))
    g = torch.zeros(len(y), dtype=torch.long) if groups is None else torch.from_numpy(groups)
    yt = torch.from_numpy(y)
    train = TensorSet(ids[tr], yt[tr], g[tr])
    test = TensorSet(ids[te], yt[te], g[te])
    if groups is None:
        if scenario == "domain":
            raise ValueError(
                "the domain scenario needs domain_column (one experience per domain value)"
                + {"images": "", "npz": "; for a .npz, an array t of domain ids"}.get(
                    src.kind, f"; columns are {', '.join(src.columns)}"
                )
            )
        index = split_by_class(
            train, test, scenario=scenario, classes_per_experience=classes_per_experience,
            n_experiences=n_experiences, class_order=order, name=name,
        )  # fmt: skip
    else:
        if classes_per_experience is not None or class_order is not None:
            raise ValueError(
                f"classes_per_experience and class_order group classes; with "
                f"{src.group_name!r} there is one experience per value instead"
            )
        n = len(group_values or [])
        if n_experiences is not None and n_experiences != n:
            raise ValueError(
                f"n_experiences={n_experiences}, but {src.group_name!r} has {n} values"
            )
        pairs = [(train[train.t == k], test[test.t == k]) for k in range(n)]
        index = by_domain(pairs, scenario=scenario, name=name)
    return index


def _reading(src: Source, group_column: str | None) -> dict[str, Any]:
    """What new data must look like to be read as this data was (`lifelong.data.newdata`):
    the feature column names (tables), the label/group columns and the table's other
    columns (present in the training file, not features), or the images' mode and size."""
    out: dict[str, Any] = {"data": {"kind": src.kind}}
    if src.features is not None:
        out["feature_names"] = list(src.features)
        used = {*src.features, src.label_name, group_column}
        out["data"].update(
            target=src.label_name,
            group_column=group_column,
            other_columns=[c for c in src.columns if c not in used],
        )
    if src.image is not None:
        out["data"]["image"] = dict(src.image)
    return out


def _group_column(scenario: str, task_column: str | None, domain_column: str | None) -> str | None:
    if scenario not in ("class", "domain", "task"):
        raise ValueError(f"unknown scenario {scenario!r}; expected one of class, domain, task")
    if domain_column is not None and scenario != "domain":
        raise ValueError(f"domain_column is for the domain scenario, not {scenario!r}")
    if task_column is not None and scenario != "task":
        raise ValueError(f"task_column is for the task scenario, not {scenario!r}")
    return domain_column if scenario == "domain" else task_column if scenario == "task" else None


def _class_order(
    order: Sequence[int | str] | None, class_names: list[str] | None
) -> list[int] | None:
    if order is None:
        return None
    ids = {n: i for i, n in enumerate(class_names or [])}
    out = []
    for item in order:
        if str(item) in ids:
            out.append(ids[str(item)])
        elif str(item).strip().lstrip("-").isdigit() and (
            class_names is None or 0 <= int(item) < len(class_names)
        ):
            out.append(int(item))
        else:
            known = ", ".join(class_names) if class_names else "integer class ids"
            raise ValueError(f"class_order item {item!r} is not a class; expected {known}")
    return out


def _split(
    y: np.ndarray,
    groups: np.ndarray | None,
    fraction: float,
    seed: int,
    class_names: list[str] | None,
    group_values: list[Any] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices: `fraction` of every (group, class) to test."""
    key = y.astype(np.int64) + (0 if groups is None else groups * (int(y.max()) + 1))
    order = np.argsort(key, kind="stable")
    _, starts, counts = np.unique(key[order], return_index=True, return_counts=True)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for s, c in zip(starts, counts):
        rows = order[s : s + c]
        if c < 2:
            label = int(y[rows[0]])
            name = class_names[label] if class_names else label
            where = "" if groups is None else f" in {group_values[int(groups[rows[0]])]!r}"  # type: ignore[index]
            raise ValueError(
                f"class {name!r} has only {c} sample{where}; every class needs at least 2 "
                f"to split off a test set with test_fraction={fraction}"
            )
        rows = rng.permutation(rows)
        k = min(int(c) - 1, max(1, round(fraction * int(c))))
        test.append(rows[:k])
        train.append(rows[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _in_memory(e: Experience, x: torch.Tensor) -> Experience:
    def fill(s: TensorSet) -> TensorSet:
        return TensorSet(x[s.x], s.y, s.t)

    return Experience(e.index, fill(e.train), fill(e.test), e.classes, e.task)


def _cache_key(identity: str, options: list[Any]) -> str:
    blob = json.dumps([identity, options], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cache_file(path: Path, cache_dir: str | None, key: str) -> Path:
    folder = Path(cache_dir) if cache_dir else path.parent / ".lifelong-cache"
    return folder.expanduser() / f"{path.name}-{key}.npy"


def _on_disk(
    index: Stream, src: Source, cap: int, seed: int, num_workers: int, cache: Path
) -> list[Experience]:
    """Write the rows, experience by experience (train rows first), into a `.npy` cache and
    return experiences whose train sets are `DiskSet` ranges of it."""
    rng = np.random.default_rng(seed)
    tests = []
    for e in index.experiences:
        keep = torch.arange(len(e.test))
        if len(keep) > cap:
            keep = torch.from_numpy(np.sort(rng.choice(len(keep), cap, replace=False)))
        tests.append(e.test[keep])
    parts = [e.train for e in index.experiences] + tests
    rows = torch.cat([p.x for p in parts]).numpy()
    dest = np.full(src.n_rows, -1, dtype=np.int64)
    dest[rows] = np.arange(len(rows))
    if cache.exists():
        array = np.load(cache, mmap_mode="c")
        if array.shape != (len(rows), *src.sample_shape):
            raise ValueError(f"the cache {cache} does not match the data; delete it")
    else:
        array = write_npy(cache, len(rows), src.sample_shape, src.chunks(), dest)
    y = torch.cat([p.y for p in parts])
    t = torch.cat([p.t for p in parts])
    bounds = np.cumsum([0] + [len(p) for p in parts]).tolist()
    trains = DiskSet.ranges(array, bounds[: len(index) + 1], y, t, num_workers=num_workers)
    out = []
    for i, e in enumerate(index.experiences):
        a, b = bounds[len(index) + i], bounds[len(index) + i + 1]
        test = TensorSet(torch.from_numpy(np.array(array[a:b])), y[a:b], t[a:b])
        out.append(Experience(e.index, trains[i], test, e.classes, e.task))  # type: ignore[arg-type]
    return out
