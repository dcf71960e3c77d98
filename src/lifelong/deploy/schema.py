"""Checking an arriving batch against the deployment's schema (input shape, numeric,
finite) and reading batches from files. A bad batch is refused whole, with a message
naming its row, column and value, before anything is stored."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.data.columns import align_columns, table_columns
from lifelong.data.text import encode_texts
from lifelong.deploy.errors import DeployError


@dataclass
class Batch:
    """Checked samples: float32 features `(N, *shape)`, labels (None: unlabelled),
    task ids and subject ids (None: none given)."""

    x: np.ndarray
    y: list[int | None]
    task: list[int]
    subject: list[str | None]


def _column(j: int, columns: Sequence[str] | None) -> str:
    return f"column {columns[j]!r}" if columns and j < len(columns) else f"column {j}"


def _first_non_number(flat: np.ndarray, columns: Sequence[str] | None) -> str:
    for i, row in enumerate(flat):
        for j, v in enumerate(row):
            try:
                float(v)
            except (TypeError, ValueError):
                return f"row {i}, {_column(j, columns)}: value {v!r} is not a number"
    return "the features are not numeric"


def check_features(
    x: Any,
    shape: Sequence[int] | None,
    columns: Sequence[str] | None = None,
    expected: Sequence[str] | None = None,
) -> np.ndarray:
    """`x` as float32 of shape `(N, *shape)` (rows may also come flattened), or a
    `DeployError` naming the first bad row/column/value. `shape` None: any row shape.
    `expected`: the model's feature column names (`Learner.feature_names`); named
    `columns` (or a DataFrame's) are then matched to them by name, in any order
    (`lifelong.data.columns.align_columns`); a missing or unknown column is refused."""
    names = list(columns) if columns is not None else table_columns(x)
    try:
        x = align_columns(x, expected, names, "the batch")
    except ValueError as e:
        raise DeployError(str(e)) from None
    columns = list(expected) if expected and names else names
    try:
        arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    except ValueError as e:  # ragged lists
        raise DeployError(f"features are not a rectangular array: {e}") from None
    if arr.ndim < 2:
        raise DeployError(f"expected features of shape (rows, ...), got shape {arr.shape}")
    if len(arr) == 0:
        raise DeployError("the batch is empty")
    flat = arr.reshape(len(arr), -1)
    if arr.dtype.kind not in "biuf":
        if arr.dtype.kind == "c":
            raise DeployError("complex features are not supported")
        raise DeployError(_first_non_number(flat, columns))
    if shape is not None:
        want = tuple(int(d) for d in shape)
        if tuple(arr.shape[1:]) != want:
            if flat.shape[1] != math.prod(want):
                raise DeployError(
                    f"expected {math.prod(want)} features per row (input shape {want}), "
                    f"got {flat.shape[1]} (batch shape {tuple(arr.shape)})"
                )
            arr = flat.reshape(len(arr), *want)
    with np.errstate(over="ignore"):
        x32 = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(x32.reshape(len(x32), -1))
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise DeployError(
            f"row {i}, {_column(j, columns)}: value {flat[i, j].item()!r} is not a finite float32"
        )
    return x32


def _per_row(values: Any, n: int, what: str) -> list[Any]:
    if values is None or isinstance(values, (str, int, np.integer)):
        return [values] * n
    out = list(values.tolist() if hasattr(values, "tolist") else values)
    if len(out) != n:
        raise DeployError(f"{n} rows of features but {len(out)} {what}")
    return out


def label_id(v: Any, i: int) -> int | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise DeployError(f"row {i}: label {v!r} is not a class id (an integer)") from None
    if not f.is_integer() or f < 0:
        raise DeployError(f"row {i}: label {v!r} is not a class id (an integer >= 0)")
    return int(f)


def check_batch(
    x: Any,
    y: Any = None,
    subject: Any = None,
    task: Any = None,
    *,
    shape: Sequence[int] | None,
    columns: Sequence[str] | None = None,
    expected: Sequence[str] | None = None,
) -> Batch:
    """Check a whole batch; a `DeployError` for the first problem found. `expected`: the
    model's feature column names, matched by name to `columns` (`check_features`)."""
    feats = check_features(x, shape, columns, expected)
    n = len(feats)
    labels = [label_id(v, i) for i, v in enumerate(_per_row(y, n, "labels"))]
    subjects = [None if s is None or s == "" else str(s) for s in _per_row(subject, n, "subjects")]
    for i, s in enumerate(subjects):
        if s is not None and len(s) > 256:
            raise DeployError(f"row {i}: subject id longer than 256 characters")
    tasks = []
    for i, t in enumerate(_per_row(0 if task is None else task, n, "task ids")):
        lab = label_id(t, i)
        if lab is None:
            raise DeployError(f"row {i}: task id {t!r} is not an integer >= 0")
        tasks.append(lab)
    return Batch(feats, labels, tasks, subjects)


def read_batch(
    path: str | Path,
    target: str | None = None,
    subject_column: str | None = None,
    text_column: str | None = None,
) -> tuple[np.ndarray, Any, Any, Any, list[str] | None]:
    """(features, labels, subjects, tasks, feature column names) from a `.csv` (a header
    naming `target`, `subject_column` and an optional `task` column; the other columns
    are features) or a `.npz` (arrays `x`, optional `y`, `subject`, `t`). With
    `text_column` (a text model, `text:...`) that column's texts are the one feature, as
    code points (`lifelong.data.text.encode_texts`); other columns are ignored."""
    p = Path(path)
    if not p.is_file():
        raise DeployError(f"{p}: no such data file")
    if p.suffix.lower() == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if "x" not in z:
                raise DeployError(f"{p}: expected an array named 'x', found {sorted(z.files)}")
            get: dict[str, Any] = {k: z[k] if k in z else None for k in ("x", "y", "subject", "t")}
        return get["x"], get["y"], get["subject"], get["t"], None
    if p.suffix.lower() != ".csv":
        raise DeployError(f"{p}: unknown data file type {p.suffix!r}; expected .csv or .npz")
    with open(p, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows:
        raise DeployError(f"{p}: no rows")
    header = [h.strip() for h in rows[0]]
    if text_column is not None and p.suffix.lower() != ".csv":
        raise DeployError(f"{p}: --text-column is for .csv files")
    for name in (target, subject_column, text_column):
        if name is not None and name not in header:
            raise DeployError(f"{p}: no column {name!r}; columns: {', '.join(header)}")
    special = {target, subject_column, "task"}
    feat_cols = [j for j, h in enumerate(header) if h not in special]
    body = rows[1:]
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise DeployError(f"{p} row {i}: {len(r)} cells, the header has {len(header)}")

    def col(name: str | None) -> list[str] | None:
        return None if name is None else [r[header.index(name)].strip() for r in body]

    def col_raw(name: str) -> list[str]:  # texts keep their spaces
        return [r[header.index(name)] for r in body]

    if text_column is not None:
        try:
            x = encode_texts(col_raw(text_column), column=text_column)
        except ValueError as e:
            raise DeployError(f"{p}: {e}") from None
        return x, col(target), col(subject_column), col("task" if "task" in header else None), None
    x = np.array([[r[j].strip() for j in feat_cols] for r in body], dtype=object)
    try:
        x = x.astype(np.float64)
    except ValueError:
        pass  # check_features names the bad cell
    return (
        x,
        col(target),
        col(subject_column),
        col("task" if "task" in header else None),
        [header[j] for j in feat_cols],
    )
