"""Saving and loading personal heads as state directories (tensors + JSON, no pickle).

`save(model, path)` writes the whole model (stacked heads in three tensors, each user's
rule, memory and EWC state) in one `serialize.write_state_dir`; `load(path)` reads it back
so that predictions and later updates continue bit for bit. `user_payload` /
`restore_user` move one user alone (a deployment keeps one folder per user with
`save_user` / `load_user`, so that forgetting a user deletes exactly their files).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from lifelong.memory.buffers import ReservoirBuffer
from lifelong.personal.train import HeadRule, HeadTraining
from lifelong.personal.users import SHARED, PersonalHeads, UserState
from lifelong.serialize import CheckpointError, PathLike, read_state_dir, require, write_state_dir

KIND, VERSION = "lifelong-personal", 1


def _state(s: UserState) -> dict[str, Any]:
    return {
        "rule": s.rule.spec,
        "memory": None if s.memory is None else s.memory.state_dict(),
        "fisher": None if s.fisher is None else list(s.fisher),
        "anchor": None if s.anchor is None else list(s.anchor),
        "updates": s.updates,
        "samples": s.samples,
    }


def _restore_state(d: dict[str, Any]) -> UserState:
    rule = HeadRule.parse(d["rule"])
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
