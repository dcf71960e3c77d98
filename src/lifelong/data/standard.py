"""The full standard benchmarks: Split/Permuted/Rotated MNIST, Split Fashion-MNIST,
Split CIFAR-10 and Split CIFAR-100, read from their usual files.

Files live in `data_dir` (the `--data-dir` option; default `$LIFELONG_DATA` or
`~/.cache/lifelong`): `mnist/` and `fashion-mnist/` hold the IDX files
(`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
`t10k-labels-idx1-ubyte`, each optionally `.gz`); `cifar-10-batches-py/` holds
`data_batch_1..5` and `test_batch`; `cifar-100-python/` holds `train` and `test`. Missing
files are downloaded from the standard URLs when the network allows, checked against their
published MD5 and written atomically; offline, the error names the files to put where.

The CIFAR files are Python pickles. They are read with an unpickler that only rebuilds
numpy arrays, lists, dicts, strings and numbers (it refuses every other global), so a
tampered file cannot run code; still, only point `data_dir` at files you trust.

Training images stay uint8 in memory (`DiskSet` over an in-memory array); each batch is
scaled to [0, 1] and standardized per channel (and permuted or rotated) as it is read.
Test sets are float32 tensors.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifelong.data.benchmarks import benchmark
from lifelong.data.disk import DiskSet, Transform
from lifelong.data.experience import Experience, Stream, TensorSet
from lifelong.data.scenarios import by_domain, split_by_class

MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
#: Where each dataset is downloaded from (base URLs for IDX files, archive URLs for CIFAR).
URLS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "cifar-10": ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"],
    "cifar-100": ["https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"],
}
ARCHIVES = {  # name -> (archive file, its MD5, the folder it unpacks to, the files needed)
    "cifar-10": (
        "cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
    ),
    "cifar-100": (
        "cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
        ["train", "test"],
    ),
}
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """`data_dir`, else `$LIFELONG_DATA`, else `~/.cache/lifelong`."""
    root = data_dir or os.environ.get("LIFELONG_DATA") or "~/.cache/lifelong"
    return Path(root).expanduser()


def md5sum(path: Path) -> str:
    """The MD5 hex digest of a file (read in 1 MB blocks)."""
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, md5: str, timeout: float = 30.0) -> Path:
    """Fetch `url` to `dest` atomically (temporary file, renamed once its MD5 matches)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, tmp.open("wb") as f:
            while block := r.read(2**20):
                f.write(block)
        got = md5sum(tmp)
        if got != md5:
            raise ValueError(f"checksum mismatch for {url}: MD5 {got}, expected {md5}")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def _fetch_any(urls: Sequence[str], dest: Path, md5: str, what: str) -> None:
    errors = []
    for url in urls:
        try:
            download(url, dest, md5)
            return
        except (OSError, ValueError) as e:  # URLError is an OSError
            errors.append(f"{url}: {e}")
    raise ValueError(
        f"{what} is missing and could not be downloaded ({'; '.join(errors)}). "
        f"Put the files there by hand: {dest.parent}/{dest.name}"
    )


def ensure_idx(folder: Path, files: dict[str, str], source: str, download_ok: bool) -> list[Path]:
    """The IDX files in `folder` (plain or .gz), downloading the missing .gz files."""
    out = []
    for gz, md5 in files.items():
        plain = folder / gz[:-3]
        path = folder / gz if (folder / gz).exists() else plain
        if not path.exists():
            if not download_ok:
                raise ValueError(
                    f"{source} file {gz} (or {plain.name}) is missing in {folder}; expected "
                    f"{', '.join(files)} there (downloads are off)"
                )
            names = ", ".join(files)
            _fetch_any([u + gz for u in URLS[source]], folder / gz, md5, f"{source} ({names})")
            path = folder / gz
        out.append(path)
    return out


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (`.gz` or plain) as a numpy array, as LeCun et al. describe the format."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} holds {data.size} values; its header says {dims}")
    return data.reshape(dims)


def load_idx_dataset(
    source: str, data_dir: str | None, download_ok: bool = True
) -> tuple[np.ndarray, ...]:
    """`(x_train, y_train, x_test, y_test)` of MNIST or Fashion-MNIST; images `[N, 1, 28, 28]`."""
    files = MNIST_FILES if source == "mnist" else FASHION_FILES
    paths = ensure_idx(data_root(data_dir) / source, files, source, download_ok)
    xtr, ytr, xte, yte = (read_idx(p) for p in paths)
    for x, y in ((xtr, ytr), (xte, yte)):
        if x.ndim != 3 or y.shape != (len(x),):
            raise ValueError(f"{source}: images {x.shape} and labels {y.shape} do not match")
    return xtr[:, None], ytr.astype(np.int64), xte[:, None], yte.astype(np.int64)


class _ArraysOnly(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and plain containers, and nothing else."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core") :]
        return super().find_class(module, name)


def load_pickle(path: Path) -> dict[Any, Any]:
    """One CIFAR batch file: a dict of arrays and lists (see `_ArraysOnly`)."""
    with path.open("rb") as f:
        out = _ArraysOnly(f, encoding="latin1").load()
    if not isinstance(out, dict):
        raise ValueError(f"{path} does not hold a CIFAR batch (a dict), got {type(out).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in out.items()}


def ensure_archive(name: str, data_dir: str | None, download_ok: bool = True) -> Path:
    """The unpacked CIFAR folder, downloading and unpacking the archive when missing."""
    archive, md5, folder, needed = ARCHIVES[name]
    root = data_root(data_dir)
    path = root / folder
    if all((path / f).exists() for f in needed):
        return path
    if not download_ok:
        raise ValueError(f"{name} files missing: expected {', '.join(needed)} in {path}")
    tar_path = root / archive
    if not tar_path.exists():
        what = f"{name} ({', '.join(needed)} in {path}, or {archive})"
        _fetch_any(URLS[name], tar_path, md5, what)
    _unpack(tar_path, root, folder)
    missing = [f for f in needed if not (path / f).exists()]
    if missing:
        raise ValueError(f"{tar_path} did not contain {missing} under {folder}/")
    return path


def _unpack(tar_path: Path, root: Path, folder: str) -> None:
    """Extract the regular files under `folder/` only (no links, no paths outside root)."""
    with tarfile.open(tar_path, "r:*") as tar:
        for m in tar.getmembers():
            parts = Path(m.name).parts
            if not m.isfile() or not parts or parts[0] != folder or ".." in parts:
                continue
            dest = root.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            if src is not None:
                tmp = dest.with_name(f".{dest.name}.part")
                tmp.write_bytes(src.read())
                os.replace(tmp, dest)


def _cifar_arrays(batch: dict[Any, Any], key: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in batch or key not in batch:
        raise ValueError(f"{path} lacks 'data' or {key!r}; keys are {sorted(map(str, batch))}")
    x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    y = np.asarray(batch[key], dtype=np.int64)
    if y.shape != (len(x),):
        raise ValueError(f"{path}: {len(x)} images but {y.shape} labels")
    return x, y


def load_cifar(name: str, data_dir: str | None, download_ok: bool = True) -> tuple[np.ndarray, ...]:
    """`(x_train, y_train, x_test, y_test)` of CIFAR-10 or CIFAR-100 (fine labels), uint8
    images `[N, 3, 32, 32]`."""
    folder = ensure_archive(name, data_dir, download_ok)
    if name == "cifar-10":
        parts = [_cifar_arrays(load_pickle(folder / f"data_batch_{i}"), "labels", folder) for i in range(1, 6)]  # fmt: skip
        xtr, ytr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        xte, yte = _cifar_arrays(load_pickle(folder / "test_batch"), "labels", folder)
    else:
        xtr, ytr = _cifar_arrays(load_pickle(folder / "train"), "fine_labels", folder)
        xte, yte = _cifar_arrays(load_pickle(folder / "test"), "fine_labels", folder)
    return xtr, ytr, xte, yte


def _ids(y: np.ndarray) -> TensorSet:
    """A label-only set whose 'features' are row numbers (splits without touching pixels)."""
    yt = torch.from_numpy(y)
    return TensorSet(torch.arange(len(y)), yt, torch.zeros_like(yt))


def class_split_stream(
    name: str,
    scenario: str,
    arrays: tuple[np.ndarray, ...],
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    classes_per_experience: int,
) -> Stream:
    """Split-X: experiences of `classes_per_experience` classes in ascending order. Train
    images are regrouped by experience into one compact uint8 array."""
    xtr, ytr, xte, yte = arrays
    index = split_by_class(
        _ids(ytr), _ids(yte), scenario=scenario,
        classes_per_experience=classes_per_experience, name=name,
    )  # fmt: skip
    tf = Transform(scale=1 / 255, mean=stats[0], std=stats[1])
    rows = torch.cat([e.train.x for e in index]).numpy()
    train = np.ascontiguousarray(xtr[rows])
    bounds = np.cumsum([0] + [len(e.train) for e in index]).tolist()
    y = torch.cat([e.train.y for e in index])
    t = torch.cat([e.train.t for e in index])
    trains = DiskSet.ranges(train, bounds, y, t, [tf] * len(index))
    return _assemble(index, trains, arrays, [tf] * len(index), name)


def domain_stream(
    name: str,
    scenario: str,
    arrays: tuple[np.ndarray, ...],
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    transforms: Sequence[dict[str, Any]],
) -> Stream:
    """Permuted/Rotated-X: one experience per transform, all over the same uint8 images."""
    xtr, ytr, xte, yte = arrays
    index = by_domain([(_ids(ytr), _ids(yte))] * len(transforms), scenario=scenario, name=name)
    tfs = [Transform(scale=1 / 255, mean=stats[0], std=stats[1], **kw) for kw in transforms]
    trains = [DiskSet(xtr, e.train.y, e.train.t, transform=tf) for e, tf in zip(index, tfs)]
    return _assemble(index, trains, arrays, tfs, name, {"transforms": list(transforms)})


def _assemble(
    index: Stream,
    trains: Sequence[DiskSet],
    arrays: tuple[np.ndarray, ...],
    tfs: Sequence[Transform],
    name: str,
    info: dict[str, Any] | None = None,
) -> Stream:
    """The stream with in-memory float test sets, and a fingerprint of the raw files'
    arrays and the transforms (cheap: hashing the float training sets would build them)."""
    exps = []
    h = hashlib.sha256(f"{name}:{index.scenario}:{list(tfs)}".encode())
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    for e, train, tf in zip(index, trains, tfs):
        x = tf(torch.from_numpy(arrays[2][e.test.x.numpy()]))
        test = TensorSet(x, e.test.y, e.test.t)
        exps.append(Experience(e.index, train, test, e.classes, e.task))  # type: ignore[arg-type]
    info = dict(info or {}, fingerprint=h.hexdigest()[:16])
    return Stream(name, index.scenario, tuple(exps), index.n_classes, index.n_tasks, info=info)


def _opts(options: dict[str, Any]) -> tuple[str | None, bool]:
    data_dir = options.get("data_dir")
    return (str(data_dir) if data_dir else None), bool(options.get("download", True))


@benchmark("split-mnist", ("class", "task"), "MNIST (60,000/10,000), 5 experiences of 2 classes")
def _split_mnist(scenario: str, **options: Any) -> Stream:
    arrays = load_idx_dataset("mnist", *_opts(options))
    return class_split_stream("split-mnist", scenario, arrays, MNIST_STATS, 2)


@benchmark(
    "split-fashion-mnist", ("class", "task"), "Fashion-MNIST (60,000/10,000), 5 experiences of 2 classes"
)  # fmt: skip
def _split_fashion(scenario: str, **options: Any) -> Stream:
    arrays = load_idx_dataset("fashion-mnist", *_opts(options))
    return class_split_stream("split-fashion-mnist", scenario, arrays, FASHION_STATS, 2)


@benchmark("permuted-mnist", ("domain", "task"), "MNIST under 10 fixed pixel permutations (the first the identity)")  # fmt: skip
def _permuted_mnist(scenario: str, **options: Any) -> Stream:
    arrays = load_idx_dataset("mnist", *_opts(options))
    perms = [{"permutation_seed": k if k else None} for k in range(10)]
    return domain_stream("permuted-mnist", scenario, arrays, MNIST_STATS, perms)


@benchmark("rotated-mnist", ("domain", "task"), "MNIST rotated by 0, 20, 40, 60 and 80 degrees")
def _rotated_mnist(scenario: str, **options: Any) -> Stream:
    arrays = load_idx_dataset("mnist", *_opts(options))
    angles = [{"rotation": float(a)} for a in (0, 20, 40, 60, 80)]
    return domain_stream("rotated-mnist", scenario, arrays, MNIST_STATS, angles)


@benchmark(
    "split-cifar10", ("class", "task"), "CIFAR-10 (50,000/10,000), 5 experiences of 2 classes"
)
def _split_cifar10(scenario: str, **options: Any) -> Stream:
    arrays = load_cifar("cifar-10", *_opts(options))
    return class_split_stream("split-cifar10", scenario, arrays, CIFAR10_STATS, 2)


@benchmark(
    "split-cifar100", ("class", "task"), "CIFAR-100 (50,000/10,000), 10 experiences of 10 classes"
)
def _split_cifar100(scenario: str, **options: Any) -> Stream:
    arrays = load_cifar("cifar-100", *_opts(options))
    return class_split_stream("split-cifar100", scenario, arrays, CIFAR100_STATS, 10)


@benchmark("split-cifar100-20", ("class", "task"), "CIFAR-100, 20 experiences of 5 classes")
def _split_cifar100_20(scenario: str, **options: Any) -> Stream:
    arrays = load_cifar("cifar-100", *_opts(options))
    return class_split_stream("split-cifar100-20", scenario, arrays, CIFAR100_STATS, 5)
