"""Readers of the user's data files: CSV/TSV and Parquet tables, numpy `.npz`, image folders.

Each reader returns a `Source`: labels (and task/domain values) in memory and the features
as an iterator of float32 chunks, so large files can be converted to a disk cache without
being loaded whole. Used by `lifelong.data.files.stream_from_files`.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.data.columns import did_you_mean
from lifelong.data.text import MAX_CHARS, text_chunk

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
CHUNK_ROWS = 65_536
#: column names that suggest a label, named when `target` is missing
LABEL_NAMES = ("label", "labels", "target", "class", "y")


@dataclass
class Source:
    """What a reader found: labels (and groups) in memory, features as float32 chunks."""

    kind: str
    columns: list[str]
    n_rows: int
    sample_shape: tuple[int, ...]
    labels: Any
    label_name: str
    groups: Any
    group_name: str | None
    chunks: Callable[[], Iterator[np.ndarray]]
    identity: str
    on_disk: bool
    class_names: list[str] | None = None
    #: how new data must be read to match: feature columns, or image mode and size
    features: list[str] | None = None
    image: dict[str, Any] | None = None


def open_source(
    path: Path,
    scenario: str,
    target: str | None,
    features: Sequence[str] | None,
    group_column: str | None,
    limit: float | None,
    image_size: Sequence[int] | None,
    text_column: str | None = None,
) -> Source:
    """Open `path` with the reader its suffix (or being a folder) calls for; a table's
    `text_column` is its one feature, as code points (`lifelong.data.text`)."""
    if text_column is not None and (path.is_dir() or path.suffix.lower() not in TABLE_SUFFIXES):
        raise ValueError(f"text_column={text_column!r} is for CSV/TSV/Parquet tables only")
    if text_column is not None and features is not None:
        raise ValueError("give text_column or features, not both: the text is the feature")
    if path.is_dir():
        if target is not None or features is not None or group_column is not None:
            raise ValueError(
                "an image folder takes its classes from its subfolder names; "
                "target=, features=, task_column= and domain_column= do not apply"
            )
        return _images(path, limit, image_size)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if features is not None or target not in (None, "y") or group_column is not None:
            raise ValueError(
                "a .npz file holds arrays x (features), y (labels) and optionally t (task "
                "or domain ids); target, features and the column options do not apply"
            )
        return _npz(path, scenario != "class", limit)
    if suffix in TABLE_SUFFIXES:
        return _table(path, target, features, group_column, limit, text_column)
    raise ValueError(
        f"unsupported data file {path.name!r}; expected a .csv, .tsv, .parquet or .npz file "
        "or a folder with one subfolder of PNG/JPEG images per class"
    )


def _identity(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _columns(
    path: Path, columns: list[str], target: str | None, features: Sequence[str] | None,
    group: str | None,
) -> list[str]:  # fmt: skip
    """Check the named columns exist; return the feature columns."""
    listing = ", ".join(columns)
    if target is None:
        hint = "".join(f" (is it {c!r}?)" for c in columns if c.lower() in LABEL_NAMES)[:80]
        raise ValueError(
            f"name the label column with target=...{hint}; {path.name} has columns {listing}"
        )
    for what, col in (("target", target), ("task/domain", group)):
        if col is not None and col not in columns:
            hint = did_you_mean(col, columns)
            raise ValueError(
                f"{what} column {col!r} is not in {path.name}{hint}; its columns are {listing}"
            )
    feats = (
        list(features) if features is not None else [c for c in columns if c not in (target, group)]
    )
    missing = [c for c in feats if c not in columns]
    if missing:
        hint = did_you_mean(missing[0], columns)
        raise ValueError(
            f"feature columns {missing} are not in {path.name}{hint}; its columns are {listing}"
        )
    if not feats:
        raise ValueError(f"{path.name} has no feature columns besides {target!r}")
    if target in feats or (group is not None and group in feats):
        raise ValueError(f"the target/group columns cannot also be features: {feats}")
    return feats


def _table(
    path: Path, target: str | None, features: Sequence[str] | None, group: str | None,
    limit: float | None, text: str | None = None,
) -> Source:  # fmt: skip
    import pandas as pd

    parquet = path.suffix.lower() in (".parquet", ".pq")
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    if parquet:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        columns, n_rows = list(pf.schema_arrow.names), int(pf.metadata.num_rows)
    else:
        columns = [str(c) for c in pd.read_csv(path, sep=sep, nrows=0).columns]
    feats = _columns(path, columns, target, [text] if text else features, group)
    width = MAX_CHARS if text else len(feats)
    convert: Callable[..., np.ndarray] = numeric
    if text:  # the text column as code points instead of numbers
        convert = lambda df, _, offset=0: text_chunk(df, text)  # noqa: E731
    keys: list[str] = [str(target)] + ([group] if group else [])
    if parquet:
        labels = pf.read(columns=keys).to_pandas()
        on_disk = limit is not None and n_rows * width * 4 > limit

        def chunks() -> Iterator[np.ndarray]:
            offset = 0
            for i in range(pf.num_row_groups):
                df = pf.read_row_group(i, columns=feats).to_pandas()
                yield convert(df, feats, offset)
                offset += len(df)
    else:
        on_disk = limit is not None and path.stat().st_size > limit
        frame = pd.read_csv(path, sep=sep, usecols=keys if on_disk else keys + feats)
        labels = frame[keys]

        def chunks() -> Iterator[np.ndarray]:
            if not on_disk:
                yield convert(frame, feats, 0)
                return
            offset = 0
            for df in pd.read_csv(path, sep=sep, usecols=feats, chunksize=CHUNK_ROWS):
                yield convert(df, feats, offset)
                offset += len(df)

    return Source(
        "table", columns, len(labels), (width,), labels[target], str(target),
        labels[group] if group else None, group, chunks, _identity(path), on_disk,
        features=feats,
    )  # fmt: skip


def numeric(df: Any, columns: Sequence[str], offset: int = 0) -> np.ndarray:
    """The feature columns of a pandas frame as float32 `[rows, columns]`, refusing text,
    mixed numbers and text, and missing values (naming the column, row and value)."""
    import pandas as pd

    out = np.empty((len(df), len(columns)), dtype=np.float32)
    for j, c in enumerate(columns):
        s = df[c]
        num = s if pd.api.types.is_numeric_dtype(s.dtype) else pd.to_numeric(s, errors="coerce")
        bad = (num.isna() & s.notna()).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "mixes numbers and text" if num.notna().any() else "is not numeric"
            raise ValueError(
                f"feature column {c!r} {what}: row {offset + i} (0-based, header excluded) "
                f"holds {s.iloc[i]!r}; encode it as numbers or leave the column out with "
                "features=[...]"
            )
        v = num.to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.isfinite(v).all():
            i = int(np.flatnonzero(~np.isfinite(v))[0])
            raise ValueError(
                f"feature column {c!r} has a missing or infinite value at row {offset + i} "
                "(0-based, header excluded)"
            )
        out[:, j] = v
    return out


def encode_labels(raw: Any, name: str) -> tuple[np.ndarray, list[str] | None]:
    """Class ids from a label column: non-negative integers stay as they are; anything
    else (strings, negative or fractional numbers) maps to ids in sorted order, whose
    names are returned."""
    import pandas as pd

    s = pd.Series(np.asarray(raw)) if not isinstance(raw, pd.Series) else raw
    if s.isna().any():
        i = int(np.flatnonzero(s.isna().to_numpy())[0])
        raise ValueError(
            f"the target column {name!r} has a missing value at row {i} (0-based, header excluded)"
        )
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        v = s.to_numpy()
        if np.all(v == np.round(v)) and v.min() >= 0:
            return v.astype(np.int64), None
        values = v
    else:
        values = s.astype(str).to_numpy()
    uniq = np.unique(values)
    return np.searchsorted(uniq, values).astype(np.int64), [str(u) for u in uniq]


def encode_groups(raw: Any, name: str | None, order: str) -> tuple[np.ndarray, list[Any]]:
    """Codes 0..K-1 of a task/domain column, in order of first appearance or sorted."""
    import pandas as pd

    s = pd.Series(np.asarray(raw)) if not isinstance(raw, pd.Series) else raw
    if s.isna().any():
        i = int(np.flatnonzero(s.isna().to_numpy())[0])
        raise ValueError(
            f"the column {name!r} has a missing value at row {i} (0-based, header excluded)"
        )
    codes, uniques = pd.factorize(s, sort=order == "sorted")
    return codes.astype(np.int64), [u.item() if hasattr(u, "item") else u for u in uniques]


def _npz(path: Path, use_t: bool, limit: float | None) -> Source:
    names = [n[:-4] for n in zipfile.ZipFile(path).namelist() if n.endswith(".npy")]
    if "x" not in names or "y" not in names:
        raise ValueError(f"{path.name} holds arrays {names}; expected x and y (and optionally t)")
    with np.load(path) as z:
        labels = z["y"]
        groups = z["t"] if use_t and "t" in names else None
    with zipfile.ZipFile(path).open("x.npy") as f:
        version = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_2_0
            if version >= (2, 0)
            else np.lib.format.read_array_header_1_0
        )
        shape, fortran, dtype = read(f)
    if dtype.hasobject or not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise ValueError(f"{path.name}: x has dtype {dtype}; expected numbers")
    if len(shape) < 1 or labels.shape != (shape[0],):
        raise ValueError(
            f"{path.name}: x has shape {shape} but y has {labels.shape}; need one label per row"
        )
    sample = tuple(int(d) for d in shape[1:]) or (1,)
    n, per_row = int(shape[0]), int(np.prod(sample))
    on_disk = limit is not None and n * per_row * 4 > limit

    def chunks() -> Iterator[np.ndarray]:
        if fortran:
            with np.load(path) as z:
                yield z["x"].reshape(n, *sample).astype(np.float32)
            return
        step = max(1, min(CHUNK_ROWS, 2**26 // max(1, per_row * dtype.itemsize)))
        with zipfile.ZipFile(path).open("x.npy") as f:
            np.lib.format.read_magic(f)
            read(f)
            for start in range(0, n, step):
                k = min(step, n - start)
                buf = f.read(k * per_row * dtype.itemsize)
                yield np.frombuffer(buf, dtype=dtype).reshape(k, *sample).astype(np.float32)

    return Source(
        "npz", names, n, sample, labels, "y", groups, "t" if groups is not None else None,
        chunks, _identity(path), on_disk,
    )  # fmt: skip


def _images(path: Path, limit: float | None, size: Sequence[int] | None) -> Source:
    from PIL import Image

    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels = [], []
    for k, c in enumerate(classes):
        found = sorted(
            f for f in (path / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
        )
        if not found:
            raise ValueError(f"class folder {c!r} in {path} holds no PNG/JPEG images")
        files += found
        labels += [k] * len(found)
    if not files:
        raise ValueError(f"{path} has no class subfolders of PNG/JPEG images")
    with Image.open(files[0]) as first:
        mode = "L" if first.mode in ("1", "L", "I", "I;16", "F") else "RGB"
        w, h = (int(size[0]), int(size[1])) if size else first.size
    shape = (1 if mode == "L" else 3, h, w)
    on_disk = limit is not None and len(files) * int(np.prod(shape)) * 4 > limit

    def chunks() -> Iterator[np.ndarray]:
        for s in range(0, len(files), 1024):
            yield np.stack([load_image(f, mode, (w, h)) for f in files[s : s + 1024]])

    stamp = hashlib.sha256("".join(f"{f}:{f.stat().st_mtime_ns}" for f in files).encode())
    return Source(
        "images", [], len(files), shape, np.array(labels), "folder", None, None, chunks,
        f"{path.resolve()}:{stamp.hexdigest()[:16]}", on_disk, classes,
        image={"mode": mode, "size": [w, h]},
    )  # fmt: skip


def load_image(f: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image as float32 `[C, H, W]` in [0, 1], converted to `mode` ("L" or "RGB") and
    resized (bilinear) to `size` = (width, height): the same for training and prediction."""
    from PIL import Image

    with Image.open(f) as im:
        im = im.convert(mode)
        if im.size != tuple(size):
            im = im.resize(tuple(size), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
