"""Named columns: the one place where a table's columns are matched to a model's features.

A model trained on a table (a CSV/Parquet file or a pandas DataFrame) keeps its feature
column names (`Learner.feature_names`). New data with named columns is matched to them by
name, whatever the order; a missing or unknown column is refused by name. Only data without
names (a NumPy array, a headerless CSV) goes by position. `lifelong predict`,
`Learner.predict`/`learn` on a DataFrame and the deployment commands all call
`align_columns`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def listing(columns: Sequence[str]) -> str:
    """All the columns, comma-separated (nothing cut: the right one may be the last)."""
    return ", ".join(map(str, columns))


def did_you_mean(name: str, columns: Iterable[str]) -> str:
    """` (did you mean 'x'?)` with the closest column names, or '' when none is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in columns], n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def match_columns(
    given: Sequence[str],
    expected: Sequence[str],
    where: str = "the data",
    ignore: Iterable[str] = (),
) -> list[int]:
    """The position in `given` of each `expected` column. Columns in `ignore` (a label,
    a task column) may be present and are skipped; any other missing or unknown column
    raises a `ValueError` naming them."""
    given = [str(c) for c in given]
    dupes = sorted({c for c in given if given.count(c) > 1})
    if dupes:
        raise ValueError(f"{where} has duplicate columns {dupes}")
    skip = set(map(str, ignore))
    missing = [c for c in expected if c not in given]
    unknown = [c for c in given if c not in expected and c not in skip]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} of its {len(expected)}: {_some(missing)}")
        if unknown:
            parts.append(f"{len(unknown)} unknown: {_some(unknown)}")
        hint = did_you_mean(unknown[0], missing) if missing and unknown else ""
        raise ValueError(
            f"{where} does not have the model's feature columns: {'; '.join(parts)}{hint} "
            "(columns are matched by name, in any order; only data without a header goes "
            "by position)"
        )
    index = {c: j for j, c in enumerate(given)}
    return [index[c] for c in expected]


def _some(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(map(repr, names[:limit]))
    return f"{shown}, ..." if len(names) > limit else shown


def table_columns(x: Any) -> list[str] | None:
    """The column names of a pandas DataFrame (or any table with `columns`), else None."""
    cols = getattr(x, "columns", None)
    if cols is None or isinstance(x, np.ndarray) or not hasattr(x, "iloc"):
        return None
    return [str(c) for c in cols]


def align_columns(
    x: Any,
    expected: Sequence[str] | None,
    columns: Sequence[str] | None = None,
    where: str = "the data",
    ignore: Iterable[str] = (),
) -> Any:
    """`x` with its columns in the order of `expected`, matched by name. The names are
    `columns`, or those of `x` when it is a DataFrame. Without names on either side (a
    plain array, or a model trained on arrays), `x` comes back unchanged: by position.
    A DataFrame comes back as a NumPy array."""
    names = table_columns(x) if columns is None else [str(c) for c in columns]
    data = x.to_numpy(copy=True) if table_columns(x) is not None else x
    if names is None or not expected:
        return data
    order = match_columns(names, expected, where, ignore)
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"{where}: named columns need a 2-D table, got shape {arr.shape}")
    return arr if order == list(range(arr.shape[1])) else arr[:, order]


__all__ = [
    "align_columns",
    "did_you_mean",
    "listing",
    "match_columns",
    "table_columns",
]
