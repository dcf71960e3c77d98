"""New data for a trained model, read the way its training data was read.

`read_new_data(path, info, input_shape)` takes what `stream_from_files` reads (CSV/TSV and
Parquet tables, `.npz`, image folders) and `.npy`: with the same table readers and numeric
checks (`lifelong.data.readers`) and the same image conversion. `info` is the model's
stream info (`Learner.info`), which says how the training data was read: a table's feature
columns are matched by name (`lifelong.data.columns`); its label column, task/domain column
and unused columns may be present and are left out, so the training file itself can be
read. Images take the training images' mode and size.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.data.columns import match_columns
from lifelong.data.readers import IMAGE_SUFFIXES, TABLE_SUFFIXES, load_image, numeric
from lifelong.data.text import text_chunk


@dataclass
class NewData:
    """Features `(N, *input_shape)`, per-row task values (None: none given) and per-row
    names (image files; None for tables and arrays)."""

    x: np.ndarray
    tasks: Any = None
    rows: list[str] | None = None


def read_new_data(
    path: str | os.PathLike[str], info: dict[str, Any], input_shape: Sequence[int] | None
) -> NewData:
    """Read the inputs at `path` for a model whose stream info is `info`."""
    p = Path(path).expanduser()
    if p.is_dir():
        return _images(p, info, input_shape)
    if not p.is_file():
        raise ValueError(f"{p}: no such data file or folder")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if "x" not in z:
                raise ValueError(f"{p}: expected an array named 'x', found {sorted(z.files)}")
            data = NewData(z["x"], z["t"] if "t" in z else None)
    elif suffix == ".npy":
        data = NewData(np.load(p, allow_pickle=False))
    elif suffix in TABLE_SUFFIXES:
        data = _table(p, info)
    else:
        raise ValueError(
            f"{p}: unsupported data file {p.suffix!r}; expected a .csv, .tsv, .parquet, .npz "
            "or .npy file or a folder of PNG/JPEG images"
        )
    shape = tuple(input_shape or ())
    x = data.x
    if x.ndim == 2 and len(shape) > 1 and x.shape[1] == math.prod(shape):
        data.x = x.reshape(len(x), *shape)
    return data


def _headerless(p: Path, sep: str, expected: Sequence[str] | None) -> bool:
    """Whether a CSV's first row is data: all numbers, and neither the model's feature
    names nor pandas' default header `0,1,2,...`."""
    with open(p, newline="") as f:
        first = [c.strip() for c in next(csv.reader(f, delimiter=sep), [])]
    if not first or not all(_is_number(c) for c in first):
        return False
    return set(first) != set(expected or []) and first != [str(i) for i in range(len(first))]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _table(p: Path, info: dict[str, Any]) -> NewData:
    import pandas as pd

    spec = info.get("data") or {}
    expected = info.get("feature_names")
    group = spec.get("group_column")
    parquet = p.suffix.lower() in (".parquet", ".pq")
    sep = "\t" if p.suffix.lower() == ".tsv" else ","
    if parquet:
        df = pd.read_parquet(p)
    elif _headerless(p, sep, expected):  # numbers only: the columns go by position
        df = pd.read_csv(p, sep=sep, header=None)
        return NewData(numeric(df, list(df.columns)))
    else:
        df = pd.read_csv(p, sep=sep)
    df.columns = [str(c) for c in df.columns]
    if len(df) == 0:
        raise ValueError(f"{p}: no rows")
    plain_task = "task" in df.columns and "task" not in (expected or [])
    tasks, task_col = None, "task" if plain_task else None
    if group and group in df.columns:
        task_col = group
        if info.get("tasks"):  # the task scenario: values mapped as in training
            tasks = _task_ids(df[group], info, group, p)
    elif task_col:
        tasks = _int_tasks(df["task"], p)
    skip = [c for c in (spec.get("target"), task_col, *spec.get("other_columns", [])) if c]
    if not expected:  # a model trained on arrays: every other column, by position
        feats = [c for c in df.columns if c not in skip]
    else:
        where = f"{p.name} (columns {', '.join(df.columns)})" if len(df.columns) <= 12 else p.name
        feats = [df.columns[j] for j in match_columns(df.columns, expected, where, skip)]
    if info.get("text_column"):  # a text model: its one column's texts as code points
        return NewData(text_chunk(df, feats[0]), tasks)
    return NewData(numeric(df, feats), tasks)


def _int_tasks(values: Any, p: Path) -> np.ndarray:
    """A `task` column of integer task ids (written as 3 or 3.0)."""
    import pandas as pd

    v = np.asarray(values)
    if v.dtype.kind in "iu":
        return v.astype(np.int64)
    num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(num) | (num != np.round(num))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{p.name} row {i}: task id {v[i]!r} is not an integer")
    return num.astype(np.int64)


def _task_ids(values: Any, info: dict[str, Any], column: str, p: Path) -> np.ndarray:
    """Task ids from a task column: its values mapped as in training (`info["tasks"]`)."""
    known = [str(v) for v in info.get("tasks") or []]
    index = {v: i for i, v in enumerate(known)}
    out = []
    for i, v in enumerate(values.tolist()):
        key = str(v)
        if key not in index and isinstance(v, float) and v.is_integer():
            key = str(int(v))
        if key not in index:
            raise ValueError(
                f"{p.name} row {i}: {column} value {v!r} is not a task the model learned "
                f"(known: {', '.join(known)})"
            )
        out.append(index[key])
    return np.asarray(out, dtype=np.int64)


def _images(folder: Path, info: dict[str, Any], input_shape: Sequence[int] | None) -> NewData:
    image = (info.get("data") or {}).get("image")
    shape = tuple(input_shape or ())
    if image is None and len(shape) == 3 and shape[0] in (1, 3):
        image = {"mode": "L" if shape[0] == 1 else "RGB", "size": [shape[2], shape[1]]}
    if image is None:
        raise ValueError(
            f"{folder} is a folder, but this model takes inputs of shape {shape}, not "
            "images; give a data file (.csv, .parquet, .npz, .npy)"
        )
    files = sorted(
        f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
    )
    files = [f for f in files if not any(s.startswith(".") for s in f.relative_to(folder).parts)]
    if not files:
        raise ValueError(f"{folder} holds no PNG/JPEG images (in it or its subfolders)")
    size = (int(image["size"][0]), int(image["size"][1]))
    x = np.stack([load_image(f, str(image["mode"]), size) for f in files])
    return NewData(x, None, [str(f.relative_to(folder)) for f in files])


__all__ = ["NewData", "read_new_data"]
