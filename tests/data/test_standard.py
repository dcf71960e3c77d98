"""The full standard benchmarks, built from tiny files in their real formats (no network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lifelong.data import DiskSet, get_benchmark, permuted, rotate_images
from lifelong.data import standard as std
from lifelong.data.experience import TensorSet

MEAN, STD = std.MNIST_STATS[0][0], std.MNIST_STATS[1][0]


def idx_bytes(a: np.ndarray) -> bytes:
    head = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return head + a.astype(np.uint8).tobytes()


def tiny_mnist(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ytr, yte = np.repeat(np.arange(10), 6), np.repeat(np.arange(10), 2)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": ytr.astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": yte.astype(np.uint8),
    }


def write_mnist(folder: Path, gz: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = tiny_mnist(seed)
    for name, a in arrays.items():
        raw = idx_bytes(a)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


def write_cifar(root: Path, n_classes: int, per_class: int = 3) -> None:
    rng = np.random.default_rng(1)
    key = "labels" if n_classes == 10 else "fine_labels"

    def batch(n: int) -> dict[bytes, object]:
        y = list(np.tile(np.arange(n_classes), n))
        data = rng.integers(0, 256, (len(y), 3072), dtype=np.uint8)
        return {b"data": data, key.encode(): y, b"batch_label": b"tiny"}

    if n_classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for i in range(1, 6):
            (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_class), protocol=2))
        (folder / "test_batch").write_bytes(pickle.dumps(batch(1), protocol=2))
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        (folder / "train").write_bytes(pickle.dumps(batch(per_class)))
        (folder / "test").write_bytes(pickle.dumps(batch(1)))


def test_read_idx_plain_gzip_and_bad_magic(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(a))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(a)))
    assert np.array_equal(std.read_idx(tmp_path / "a"), a)
    assert np.array_equal(std.read_idx(tmp_path / "a.gz"), a)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + bytes(8))
    with pytest.raises(ValueError, match="not an IDX file"):
        std.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(idx_bytes(a)[:-3])
    with pytest.raises(ValueError, match="header says"):
        std.read_idx(tmp_path / "short")


def test_split_mnist_keeps_uint8_and_standardizes_batches(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path / "mnist")
    s = get_benchmark("split-mnist", "class", data_dir=str(tmp_path))
    assert len(s) == 5 and s.n_classes == 10 and s.input_shape == (1, 28, 28)
    assert [e.classes for e in s] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    e = s[1]
    assert isinstance(e.train, DiskSet) and e.train.array.dtype == np.uint8
    assert len(e.train) == 12 and len(e.test) == 4
    xtr = arrays["train-images-idx3-ubyte"]
    (batch,) = list(e.train.batches(torch.arange(12), 32))
    want = (torch.from_numpy(xtr[12:24]).float()[:, None] / 255 - MEAN) / STD
    assert torch.allclose(batch.x, want, atol=1e-5)
    assert batch.y.tolist() == [2] * 6 + [3] * 6
    xte = torch.from_numpy(arrays["t10k-images-idx3-ubyte"][4:8]).float()[:, None]
    assert torch.allclose(e.test.x, (xte / 255 - MEAN) / STD, atol=1e-5)
    assert e.test.x.dtype == torch.float32


def test_split_fashion_plain_files_task_scenario(tmp_path: Path) -> None:
    write_mnist(tmp_path / "fashion-mnist", gz=False, seed=3)
    s = get_benchmark("split-fashion-mnist", "task", data_dir=str(tmp_path))
    assert [e.task for e in s] == [0, 1, 2, 3, 4] and s.n_tasks == 5
    part = s[3].train[torch.tensor([0, 5])]
    assert isinstance(part, TensorSet) and part.t.tolist() == [3, 3]


def test_permuted_and_rotated_match_the_in_memory_builders(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path / "mnist")
    flat = {k: torch.from_numpy(v.astype(np.float32) / 255) for k, v in arrays.items()}
    y = torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64))
    yt = torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64))
    tr = TensorSet(flat["train-images-idx3-ubyte"][:, None], y, torch.zeros_like(y))
    te = TensorSet(flat["t10k-images-idx3-ubyte"][:, None], yt, torch.zeros_like(yt))

    s = get_benchmark("permuted-mnist", "domain", data_dir=str(tmp_path))
    ref = permuted(tr, te, 10)
    assert len(s) == 10 and s.info["transforms"][0] == {"permutation_seed": None}
    for k in (0, 3):
        assert torch.allclose(s[k].test.x, (ref[k].test.x - MEAN) / STD, atol=1e-5)
        got = s[k].train[torch.arange(60)].x
        assert torch.allclose(got, (ref[k].train.x - MEAN) / STD, atol=1e-5)
    assert s[0].train.array is s[9].train.array  # domains share one compact array

    r = get_benchmark("rotated-mnist", "domain", data_dir=str(tmp_path))
    want = (rotate_images(te.x, 40) - MEAN) / STD
    assert len(r) == 5 and torch.allclose(r[2].test.x, want, atol=1e-4)


def test_split_cifar10_and_cifar100_from_pickles(tmp_path: Path) -> None:
    write_cifar(tmp_path, 10)
    write_cifar(tmp_path, 100, per_class=2)
    s = get_benchmark("split-cifar10", "class", data_dir=str(tmp_path))
    assert len(s) == 5 and s.input_shape == (3, 32, 32) and len(s[0].train) == 2 * 15
    x = next(iter(s[0].train.batches(torch.arange(4), 4))).x
    assert x.dtype == torch.float32 and x.shape == (4, 3, 32, 32)
    assert float(x.mean().abs()) < 3.0
    c100 = get_benchmark("split-cifar100", "class", data_dir=str(tmp_path))
    c20 = get_benchmark("split-cifar100-20", "task", data_dir=str(tmp_path))
    assert len(c100) == 10 and c100[0].classes == tuple(range(10)) and c100.n_classes == 100
    assert len(c20) == 20 and c20[19].classes == (95, 96, 97, 98, 99)


def test_pickle_loader_refuses_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        std.load_pickle(tmp_path / "evil")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_download_from_url_checks_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    write_mnist(mirror)
    files = {f"{n}.gz": md5((mirror / f"{n}.gz").read_bytes()) for n in tiny_mnist()}
    monkeypatch.setattr(std, "MNIST_FILES", files)
    monkeypatch.setitem(std.URLS, "mnist", [mirror.as_uri() + "/"])
    data = tmp_path / "data"
    s = get_benchmark("split-mnist", "class", data_dir=str(data))
    assert len(s) == 5 and sorted(os.listdir(data / "mnist")) == sorted(files)

    bad = dict(files, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    monkeypatch.setattr(std, "MNIST_FILES", bad)
    (data / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="checksum mismatch") as err:
        get_benchmark("split-mnist", "class", data_dir=str(data))
    assert "t10k-labels-idx1-ubyte.gz" in str(err.value)
    assert not (data / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()  # nothing half-written
    assert [p.name for p in (data / "mnist").iterdir() if p.name.startswith(".")] == []


def test_offline_error_names_the_expected_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, dest: Path, md5: str, timeout: float = 30.0) -> Path:
        raise OSError("network is unreachable")

    monkeypatch.setattr(std, "download", offline)
    monkeypatch.setenv("LIFELONG_DATA", str(tmp_path / "env"))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz") as err:
        get_benchmark("split-mnist", "class")
    assert str(tmp_path / "env" / "mnist") in str(err.value)
    with pytest.raises(ValueError, match="data_batch_1") as err:
        get_benchmark("split-cifar10", "class", data_dir=str(tmp_path))
    assert "cifar-10-python.tar.gz" in str(err.value)


def test_cifar_archive_is_downloaded_and_unpacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    write_cifar(src, 10, per_class=1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        tar.add(src / "cifar-10-batches-py" / "test_batch", arcname="../escape")
    archive = tmp_path / "cifar.tar.gz"
    archive.write_bytes(buf.getvalue())
    _, _, folder, needed = std.ARCHIVES["cifar-10"]
    entry = ("cifar-10-python.tar.gz", md5(buf.getvalue()), folder, needed)
    monkeypatch.setitem(std.ARCHIVES, "cifar-10", entry)
    monkeypatch.setitem(std.URLS, "cifar-10", [archive.as_uri()])
    s = get_benchmark("split-cifar10", "class", data_dir=str(tmp_path / "data"))
    assert len(s) == 5 and len(s[0].test) == 2
    assert not (tmp_path / "escape").exists()
