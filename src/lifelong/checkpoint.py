"""Checkpoints and saved models: tensors in one file, everything else in JSON, never a pickle.

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

A run with a `run_dir` (see `lifelong.experiment.run.run`) lays out:

    RUN_DIR/checkpoint/   after every experience: model, optimizer, strategies' state,
                          RNG states, progress (accuracy rows, timings) and the config
    RUN_DIR/model/        at the end: the trained model, strategies' state and what
                          prediction needs (read by `lifelong.load`)

Resume policy: `run(config, run_dir=D, resume=True)` continues from `D/checkpoint` when
there is one (a checkpoint of a different run -- another `run_id` -- is refused) and
starts afresh when there is none; `resume=False` starts afresh, deleting what an earlier
run left in `D/checkpoint` and `D/model`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lifelong.data.experience import Experience, Stream
from lifelong.strategies.base import Strategy
from lifelong.strategies.registry import canonical_spec

if TYPE_CHECKING:
    from lifelong.experiment.run import RunConfig
    from lifelong.train import TrainConfig

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


# -- model and strategies ------------------------------------------------------------------
def stream_meta(stream: Stream, n_seen: int) -> dict[str, Any]:
    """What prediction and rebuilding need to know of a stream (first `n_seen` experiences)."""
    info = {}
    for k, v in stream.info.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        info[k] = v
    x = stream.experiences[0].train.x
    return {
        "name": stream.name,
        "scenario": stream.scenario,
        "n_classes": stream.n_classes,
        "n_tasks": stream.n_tasks,
        "input_shape": list(x.shape[1:]),
        "dtype": str(x.dtype).removeprefix("torch."),
        "experiences": [
            {"classes": list(e.classes), "task": e.task} for e in stream.experiences[:n_seen]
        ],
        "info": info,
    }


def model_payload(model: nn.Module, strategies: list[Strategy]) -> dict[str, Any]:
    """Model weights, frozen parameter names and each strategy's state."""
    return {
        "model": model.state_dict(),
        "frozen": [n for n, p in model.named_parameters() if not p.requires_grad],
        "strategies": [
            {"name": s.name, "spec": canonical_spec([s]), "state": s.state_dict()}
            for s in strategies
        ],
    }


def restore_model(
    model: nn.Module,
    strategies: list[Strategy],
    experiences: list[Experience] | tuple[Experience, ...],
    payload: dict[str, Any],
    device: torch.device,
) -> nn.Module:
    """Bring a freshly built base `model` and fresh `strategies` to a saved state.

    Heads adapt to the experiences already seen (growing heads regain their size), the
    strategies load their state and `rebuild` the architecture it implies, then the weights
    are loaded (strictly).
    """
    saved = payload["strategies"]
    if [d["name"] for d in saved] != [s.name for s in strategies]:
        raise CheckpointError(
            f"saved strategies {[d['name'] for d in saved]} differ from "
            f"{[s.name for s in strategies]}"
        )
    from lifelong.train import adapt_model

    for exp in experiences:
        adapt_model(model, exp)
    for s, d in zip(strategies, saved):
        s.load_state_dict(d["state"])
    for s in strategies:
        model = s.rebuild(model)
    model.to(device)
    frozen = set(payload["frozen"])
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise CheckpointError(f"the saved weights do not fit the rebuilt model: {e}") from None
    return model


# -- one run's directory -------------------------------------------------------------------
@dataclass
class RunState:
    """Where a run stands: the next experience to train, the accuracy rows so far, the
    untrained model's row (`baseline`) and the time spent so far."""

    next_experience: int = 0
    matrix: list[list[float]] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    wall_seconds: float = 0.0


class RunDir:
    """The files of one run under `path`: `checkpoint/` after each experience, `model/` at
    the end (see the module docstring for the resume policy)."""

    def __init__(
        self, path: PathLike, config: RunConfig, run_id: str, stream: Stream, device: torch.device
    ) -> None:
        self.path = Path(path)
        self.config = json.loads(json.dumps(asdict(config), default=str))
        self.run_id, self.stream, self.device = run_id, stream, device
        self.checkpoint_dir, self.model_dir = self.path / "checkpoint", self.path / "model"

    def clear(self) -> None:
        """Delete what an earlier run left here (checkpoint and model only)."""
        for d in (self.checkpoint_dir, self.model_dir):
            for p in (d, d.with_name(f".{d.name}.old"), d.with_name(f".{d.name}.tmp")):
                shutil.rmtree(p, ignore_errors=True)

    def _header(self, kind: str, n_seen: int) -> dict[str, Any]:
        import lifelong

        return {
            "kind": kind,
            "run_id": self.run_id,
            "config": self.config,
            "lifelong_version": lifelong.__version__,
            "torch_version": torch.__version__,
            "stream": stream_meta(self.stream, n_seen),
        }

    def save_checkpoint(
        self,
        model: nn.Module,
        strategies: list[Strategy],
        optimizer: torch.optim.Optimizer | None,
        generator: torch.Generator,
        state: RunState,
    ) -> None:
        """Write `checkpoint/`: everything needed to continue exactly where the run stands."""
        cuda = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []
        write_state_dir(
            self.checkpoint_dir,
            {
                **self._header("checkpoint", state.next_experience),
                **model_payload(model, strategies),
                "optimizer": None if optimizer is None else optimizer.state_dict(),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": cuda,
                    "batch_order": generator.get_state(),
                },
                "progress": asdict(state),
            },
        )

    def save_model(self, model: nn.Module, strategies: list[Strategy]) -> Path:
        """Write `model/`: the trained model and what `lifelong.load` needs to predict."""
        write_state_dir(
            self.model_dir,
            {**self._header("model", len(self.stream)), **model_payload(model, strategies)},
        )
        return self.model_dir

    def resume(
        self,
        model: nn.Module,
        strategies: list[Strategy],
        tcfg: TrainConfig,
        generator: torch.Generator,
    ) -> tuple[nn.Module, torch.optim.Optimizer | None, RunState] | None:
        """Restore the run from `checkpoint/`, or return None when there is none.

        `model` and `strategies` must be freshly built from the run's config; the RNG
        states are set last, so the run continues bit for bit.
        """
        where = find_state_dir(self.checkpoint_dir)
        if where is None:
            return None
        payload = read_state_dir(where, self.device)
        keys = ("kind", "run_id", "model", "frozen", "strategies", "optimizer", "rng", "progress")
        require(payload, keys, where)
        if payload["run_id"] != self.run_id:
            raise CheckpointError(
                f"{where} belongs to another run (run_id {payload['run_id']}, this run is "
                f"{self.run_id}); use another run_dir or resume=False to start afresh"
            )
        try:
            state = RunState(**payload["progress"])
        except TypeError as e:
            raise CheckpointError(f"{where / META_FILE}: bad progress entry: {e}") from None
        seen = self.stream.experiences[: state.next_experience]
        model = restore_model(model, strategies, seen, payload, self.device)
        optimizer = None
        if payload["optimizer"] is not None:
            from lifelong.train import make_optimizer

            optimizer = make_optimizer(model, tcfg)
            try:
                optimizer.load_state_dict(payload["optimizer"])
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"{where}: optimizer state does not fit: {e}") from None
        rng = payload["rng"]
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])
        generator.set_state(rng["batch_order"])
        return model, optimizer, state
