"""Saving and loading personal heads as state directories (tensors + JSON, no pickle).

`save(model, path)` writes the whole model (stacked heads in three tensors, each user's
rule, memory and EWC state) in one `serialize.write_state_dir`; `load(path)` reads it back
so that predictions and later updates continue bit for bit. `user_payload` /
`restore_user` move one user alone: `save_user` / `load_user` as a folder (`UserFolder`),
`user_to_bytes` / `user_from_bytes` as one byte string (a deployment keeps one row per
user in its store, so that forgetting a user deletes exactly their row).

The bytes of a user are `MAGIC`, the length of a JSON header (8 bytes, little-endian), the
header (the model's settings, the user id, their nested state with `serialize` tensor
markers, and each tensor's dtype, shape and place in the data), the tensors' raw bytes in
C order, and a SHA-256 of everything before it: no pickle, and a damaged string raises
`CheckpointError`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifelong.memory.buffers import ReservoirBuffer
from lifelong.personal.train import HeadRule, HeadTraining
from lifelong.personal.users import SHARED, PersonalHeads, UserState
from lifelong.serialize import (
    CheckpointError,
    PathLike,
    decode,
    encode,
    read_state_dir,
    require,
    write_state_dir,
)

KIND, VERSION = "lifelong-personal", 1
MAGIC = b"LLPU1\n"  # a user's bytes (`user_to_bytes`), format 1


def _state(s: UserState) -> dict[str, Any]:
    return {
        "rule": s.rule.spec,
        "memory": None if s.memory is None else s.memory.state_dict(),
        "fisher": None if s.fisher is None else list(s.fisher),
        "anchor": None if s.anchor is None else list(s.anchor),
        "updates": s.updates,
        "samples": s.samples,
    }


@functools.lru_cache(maxsize=256)
def _rule(spec: str) -> HeadRule:
    """`HeadRule.parse`, once per spec (rules are frozen: users may share one)."""
    return HeadRule.parse(spec)


def _restore_state(d: dict[str, Any]) -> UserState:
    rule = _rule(d["rule"])
    mem = None
    if d["memory"] is not None:
        mem = ReservoirBuffer(rule.mem_size)
        mem.load_state_dict(d["memory"])
    pair = lambda v: None if v is None else (v[0], v[1])  # noqa: E731
    return UserState(rule, mem, pair(d["fisher"]), pair(d["anchor"]), d["updates"], d["samples"])


def user_payload(model: PersonalHeads, uid: str) -> dict[str, Any]:
    """One user's head and state, as nested tensors and numbers."""
    if uid not in model.states:
        raise KeyError(f"unknown user {uid!r}")
    w, b, seen = model.bank.get(model.bank.index([uid]))
    return {"weight": w[0], "bias": b[0], "seen": seen[0], "state": _state(model.states[uid])}


def restore_user(model: PersonalHeads, uid: str, payload: dict[str, Any]) -> None:
    """Put back a user from `user_payload` (replacing the user if present)."""
    w, seen = payload["weight"], payload["seen"]
    if tuple(w.shape) != (model.n_classes, model.dim) or seen.dtype != torch.bool:
        raise ValueError(
            f"user {uid!r}: saved head is {tuple(w.shape)}, this model's heads are "
            f"{(model.n_classes, model.dim)}"
        )
    state = _restore_state(payload["state"])
    if uid in model.states:
        model.bank.remove(uid)
        del model.states[uid]
    model.bank.add(uid, w, payload["bias"], seen)
    model.states[uid] = state


def _header(model: PersonalHeads) -> dict[str, Any]:
    return {
        "kind": KIND,
        "version": VERSION,
        "dim": model.dim,
        "n_classes": model.n_classes,
        "shared": model.shared,
        "strategy": model.default_rule.spec,
        "train": asdict(model.train),
        "seed": model.seed,
    }


def save(model: PersonalHeads, path: PathLike) -> None:
    """Write `model` to folder `path` atomically."""
    ids = list(model.states)
    w, b, seen = model.bank.get(model.bank.index(ids))
    payload = {
        **_header(model),
        "users": ids,
        "weight": w,
        "bias": b,
        "seen": seen,
        "states": [_state(model.states[u]) for u in ids],
    }
    write_state_dir(path, payload)


def _model(p: dict[str, Any], capacity: int) -> PersonalHeads:
    return PersonalHeads(
        p["dim"],
        p["n_classes"],
        strategy=p["strategy"],
        shared=False,  # the shared head, if any, comes back with the users
        train=HeadTraining(**p["train"]),
        seed=p["seed"],
        capacity=max(16, capacity),
    )


def load(path: PathLike) -> PersonalHeads:
    """Read a model written by `save`; a defective folder raises `CheckpointError`."""
    p = read_state_dir(path)
    require(p, ("kind", "dim", "n_classes", "users", "weight", "states"), Path(path))
    if p["kind"] != KIND or p.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a {KIND} v{VERSION} folder (got {p['kind']!r})")
    ids = p["users"]
    model = _model(p, len(ids))
    for i, uid in enumerate(ids):
        model.bank.add(uid, p["weight"][i], p["bias"][i], p["seen"][i])
        model.states[uid] = _restore_state(p["states"][i])
    model.shared = bool(p["shared"]) and SHARED in model.states
    return model


def save_user(model: PersonalHeads, uid: str, path: PathLike) -> None:
    """Write one user's head and state to folder `path` atomically."""
    write_state_dir(path, {**_header(model), "user": uid, **user_payload(model, uid)})


def load_user(model: PersonalHeads, path: PathLike) -> str:
    """Read a folder written by `save_user` into `model`; return the user's id."""
    p = read_state_dir(path)
    require(p, ("kind", "user", "weight", "bias", "seen", "state"), Path(path))
    if p["kind"] != KIND:
        raise CheckpointError(f"{path}: not a {KIND} user folder")
    restore_user(model, p["user"], p)
    return str(p["user"])


def user_to_bytes(model: PersonalHeads, uid: str) -> bytes:
    """One user's head and state as bytes (the format in the module docstring)."""
    tensors: dict[str, torch.Tensor] = {}
    nested = encode({**_header(model), "user": uid, **user_payload(model, uid)}, "", tensors, {})
    index, parts, offset = [], [], 0
    for key, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        parts.append(a.tobytes())
        index.append([key, a.dtype.str, list(a.shape), offset, a.nbytes])
        offset += a.nbytes
    head = json.dumps({"payload": nested, "tensors": index}, separators=(",", ":")).encode()
    body = MAGIC + struct.pack("<Q", len(head)) + head + b"".join(parts)
    return body + hashlib.sha256(body).digest()


def read_user_bytes(blob: bytes) -> dict[str, Any]:
    """The payload of `user_to_bytes` (tensors rebuilt, copies); `CheckpointError` if
    the bytes are not such a string or were damaged."""
    blob = bytes(blob)
    body, digest = blob[:-32], blob[-32:]
    if not body.startswith(MAGIC) or hashlib.sha256(body).digest() != digest:
        raise CheckpointError("not the bytes of a personal head (bad magic or checksum)")
    start = len(MAGIC) + 8
    (n,) = struct.unpack("<Q", body[len(MAGIC) : start])
    try:
        meta = json.loads(body[start : start + n])
        data = memoryview(body)[start + n :]
        tensors = {}
        for key, dtype, shape, offset, nbytes in meta["tensors"]:
            a = np.frombuffer(data[offset : offset + nbytes], dtype=np.dtype(dtype))
            tensors[key] = torch.from_numpy(a.reshape(shape).copy())
        payload = decode(meta["payload"], tensors, {}, None)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"the bytes of a personal head cannot be read: {e}") from None
    if not isinstance(payload, dict) or payload.get("kind") != KIND:
        raise CheckpointError(f"not the bytes of a {KIND} user")
    return payload


def user_from_bytes(model: PersonalHeads, blob: bytes) -> str:
    """Put the user of `user_to_bytes` bytes into `model` (replacing them if present);
    return their id."""
    p = read_user_bytes(blob)
    if not all(k in p for k in ("user", "weight", "bias", "seen", "state")):
        raise CheckpointError("the bytes of a personal head miss entries")
    restore_user(model, p["user"], p)
    return str(p["user"])
