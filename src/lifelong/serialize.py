"""State directories: nested state saved as tensors in one file and JSON, never a pickle.

A *state directory* holds two files:

* `tensors.pt`: a `torch.save` of a flat `{key: tensor}` dict, read back with
  `torch.load(..., weights_only=True)`;
* `meta.json`: the rest, with `{"__tensor__": key}` where a tensor was (keys are the
  tensor's path in the state, e.g. `strategies/0/state/buffer_/x`), `{"__tuple__": [...]}`
  for tuples and `{"__items__": [[key, value], ...]}` for dicts whose keys are not plain
  strings; plus a SHA-256 of the tensor file and of the JSON itself.

Reading checks both checksums and decodes everything *before* any model or strategy is
touched, so a corrupted or truncated file raises `CheckpointError` (a `ValueError` naming
the file) and never leaves a half-loaded state. Writing goes to a temporary directory that
is fsynced and renamed into place, so a process killed mid-write leaves the previous
complete state (kept as `.NAME.old` for the instant between the two renames).

What goes into a run's state directories (checkpoints, saved models) is decided by
`lifelong.checkpoint`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

FORMAT, VERSION = "lifelong-state", 1
META_FILE, TENSOR_FILE = "meta.json", "tensors.pt"
_MARKERS = ("__tensor__", "__tuple__", "__items__")
PathLike = str | os.PathLike[str]


class CheckpointError(ValueError):
    """A checkpoint or saved model that cannot be read: missing, corrupted or mismatched."""


# -- nested state <-> JSON + flat tensors ------------------------------------------------
def _join(path: str, key: object) -> str:
    return f"{path}/{key}" if path else str(key)


def encode(obj: Any, path: str, tensors: dict[str, Tensor], devices: dict[str, str]) -> Any:
    """Return `obj` as JSON-able data, moving its tensors into `tensors` under path keys."""
    if isinstance(obj, Tensor):
        key = path if path not in tensors else f"{path}#{len(tensors)}"
        t = obj.detach().cpu()
        if not t.is_contiguous() or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()  # do not save the whole storage a view points into
        tensors[key] = t
        if obj.device.type != "cpu":
            devices[key] = str(obj.device)
        return {"__tensor__": key}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [encode(v, _join(path, i), tensors, devices) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        plain = all(isinstance(k, str) for k in obj) and not set(obj) & set(_MARKERS)
        if plain:
            return {k: encode(v, _join(path, k), tensors, devices) for k, v in obj.items()}
        for k in obj:
            if k is not None and not isinstance(k, (bool, int, float, str)):
                raise ValueError(f"state at {path!r} has a dict key {k!r}; keys must be scalars")
        return {
            "__items__": [[k, encode(v, _join(path, k), tensors, devices)] for k, v in obj.items()]
        }
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item) and type(obj).__module__ == "numpy" and getattr(obj, "ndim", 1) == 0:
        return encode(item(), path, tensors, devices)
    raise ValueError(
        f"state at {path!r} is a {type(obj).__name__}; checkpoints hold only tensors, numbers, "
        "str, bool, None and (nested) lists/tuples/dicts of these"
    )


def decode(obj: Any, tensors: dict[str, Tensor], devices: dict[str, str], device: Any) -> Any:
    """Inverse of `encode`; tensors saved from an accelerator go to `device`."""
    if isinstance(obj, list):
        return [decode(v, tensors, devices, device) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1 and next(iter(obj)) in _MARKERS:
        ((marker, value),) = obj.items()
        if marker == "__tensor__":
            if value not in tensors:
                raise KeyError(value)
            t = tensors[value]
            if not isinstance(t, Tensor):
                raise KeyError(value)
            return t.to(device) if value in devices and device is not None else t
        if marker == "__tuple__":
            return tuple(decode(v, tensors, devices, device) for v in value)
        return {k: decode(v, tensors, devices, device) for k, v in value}
    return {k: decode(v, tensors, devices, device) for k, v in obj.items()}


# -- atomic state directories --------------------------------------------------------------
def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_digest(body: Any) -> str:
    return _digest(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported on this platform (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_state_dir(path: PathLike, payload: dict[str, Any]) -> None:
    """Write `payload` (nested state with tensors) to directory `path`, atomically."""
    path = Path(path)
    tensors: dict[str, Tensor] = {}
    devices: dict[str, str] = {}
    encoded = encode(payload, "", tensors, devices)
    buf = io.BytesIO()
    torch.save(tensors, buf)
    blob = buf.getvalue()
    body = {
        "format": FORMAT,
        "version": VERSION,
        "tensors_file": TENSOR_FILE,
        "tensors_sha256": _digest(blob),
        "tensor_devices": devices,
        "payload": encoded,
    }
    meta = json.dumps({**body, "meta_sha256": _json_digest(body)}, indent=1).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = path.with_name(f".{path.name}.tmp"), path.with_name(f".{path.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _write_file(tmp / TENSOR_FILE, blob)
    _write_file(tmp / META_FILE, meta)
    _fsync_dir(tmp)
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def find_state_dir(path: PathLike) -> Path | None:
    """`path` if it holds a state, else the previous state a killed write left, else None."""
    path = Path(path)
    for p in (path, path.with_name(f".{path.name}.old")):
        if (p / META_FILE).is_file():
            return p
    return None


def read_state_dir(path: PathLike, device: Any = None) -> dict[str, Any]:
    """Read and verify a state directory; return its payload (tensors on CPU, or on
    `device` for those saved from an accelerator). Raises `CheckpointError` on any defect."""
    path = Path(path)
    meta_path, tensor_path = path / META_FILE, path / TENSOR_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{meta_path}: no such file (not a lifelong state)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_path}: not valid JSON (corrupted?): {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a lifelong state file")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{meta_path}: format version {meta.get('version')}, expected {VERSION}"
        )
    saved_digest = meta.pop("meta_sha256", None)
    if saved_digest != _json_digest(meta):
        raise CheckpointError(f"{meta_path}: checksum mismatch, the file is corrupted")
    try:
        blob = tensor_path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{tensor_path}: no such file") from None
    if _digest(blob) != meta.get("tensors_sha256"):
        raise CheckpointError(
            f"{tensor_path}: checksum mismatch, the file is corrupted or truncated "
            f"({len(blob)} bytes)"
        )
    try:
        tensors = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        payload = decode(meta.get("payload"), tensors, meta.get("tensor_devices", {}), device)
    except KeyError as e:
        raise CheckpointError(
            f"{tensor_path}: tensor {e} named in {META_FILE} is missing"
        ) from None
    except Exception as e:  # noqa: BLE001 - any unpickling error means a bad file
        raise CheckpointError(f"{tensor_path}: cannot be read: {e}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{meta_path}: payload is not a mapping")
    return payload


def require(payload: dict[str, Any], keys: tuple[str, ...], where: Path) -> None:
    """Raise `CheckpointError` unless `payload` has every key of `keys`."""
    missing = [k for k in keys if k not in payload]
    if missing:
        raise CheckpointError(f"{where / META_FILE}: missing entries {', '.join(missing)}")
