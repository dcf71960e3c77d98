"""What a saved learner holds, and how a model is brought back to a saved state.

A saved learner (`Learner.save`) is a state directory (`lifelong.serialize`: tensors in
one file, everything else in JSON, never a pickle; checksummed, written atomically):

    config       model spec, head, strategy spec, scenario, seed, training settings
    stream       scenario, input shape and dtype, class/task counts, the classes and task
                 of each experience learned, the stream's info (class names, ...)
    built_for    the class/task counts the model was first built with (heads grow later)
    model        weights; `frozen`: parameters that do not train
    strategies   each strategy's learned state (buffers, Fisher, teachers, masks, ...)
    optimizer    its state dict (momentum), or None
    rng          the learner's torch generator state(s) and its batch-order generator
    labels       label kind ("int" / "str") and the names of string labels
    past_data    the data of past experiences, only for strategies that train on it
    manifest     what the folder holds, in words, and where it holds training samples
                 (`training_samples`); `for_prediction`: an export that holds none

An export for prediction (`Learner.save(path, for_prediction=True)`, `lifelong export`)
keeps config, stream, built_for, model, labels and only the strategy state prediction
needs (`Strategy.prediction_state`): no optimizer, random state, memory or past data.

A run's checkpoints and final model (`lifelong.experiment.rundir`) are saved learners
with the run's config and progress added. See docs/architecture.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from lifelong.data.experience import Experience, Stream, TensorSet
from lifelong.models.functional import adapt_model
from lifelong.serialize import (
    META_FILE,
    CheckpointError,
    PathLike,
    find_state_dir,
    read_state_dir,
    require,
    write_state_dir,
)
from lifelong.strategies.base import Strategy, canonical_spec

#: public names; the state-directory ones are re-exported from `lifelong.serialize`
__all__ = [
    "CheckpointError",
    "find_state_dir",
    "json_info",
    "manifest",
    "model_payload",
    "past_data",
    "prediction_payload",
    "read_learner",
    "read_state_dir",
    "require",
    "restore_model",
    "skeleton_stream",
    "stream_meta",
    "write_learner",
    "write_state_dir",
]


class Described(Protocol):
    """What `stream_meta` reads of a learner."""

    name: str
    scenario: str
    n_classes: int
    n_tasks: int
    input_shape: tuple[int, ...] | None
    dtype: torch.dtype
    seen: list[Experience]
    info: dict[str, Any]


# -- model and strategies ------------------------------------------------------------------
def stream_meta(learner: Described) -> dict[str, Any]:
    """What prediction and rebuilding need to know of what a learner has learned."""
    return {
        "name": learner.name,
        "scenario": learner.scenario,
        "n_classes": learner.n_classes,
        "n_tasks": learner.n_tasks,
        "input_shape": list(learner.input_shape or ()),
        "dtype": str(learner.dtype).removeprefix("torch."),
        "experiences": [{"classes": list(e.classes), "task": e.task} for e in learner.seen],
        "info": json_info(learner.info),
    }


def json_info(info: dict[str, Any]) -> dict[str, Any]:
    """The entries of a stream's info that JSON can hold (others are left out)."""
    return {k: v for k, v in info.items() if _jsonable(v)}


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def skeleton_stream(meta: dict[str, Any]) -> Stream:
    """A stream with the saved shape, classes and tasks but no data (to rebuild a model)."""
    dtype = getattr(torch, str(meta["dtype"]), None)
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(f"unknown feature dtype {meta['dtype']!r} in the saved model")
    x = torch.empty((0, *[int(d) for d in meta["input_shape"]]), dtype=dtype)
    empty = TensorSet(x, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))
    exps = tuple(
        Experience(i, empty, empty, tuple(int(c) for c in e["classes"]), int(e["task"]))
        for i, e in enumerate(meta["experiences"])
    )
    n_tasks = max(int(meta["n_tasks"]), 1)
    return Stream(
        meta["name"],
        meta["scenario"],
        exps,
        int(meta["n_classes"]),
        n_tasks,
        info=dict(meta.get("info", {})),
    )


def past_data(seen: Sequence[Experience]) -> list[dict[str, Any]] | None:
    """The training data of past experiences when the learner keeps it, else None."""
    if not seen or not any(len(e.train) for e in seen):
        return None
    return [{"x": e.train.x, "y": e.train.y, "t": e.train.t} for e in seen]


def write_learner(path: PathLike, payload: dict[str, Any]) -> Path:
    """Write a learner's payload (with the library versions) to folder `path`."""
    import lifelong

    payload = {
        "lifelong_version": lifelong.__version__,
        "torch_version": torch.__version__,
        **payload,
    }
    write_state_dir(path, payload)
    return Path(path)


def read_learner(path: PathLike, device: Any = None) -> tuple[dict[str, Any], Path]:
    """Read a saved learner: a folder written by `Learner.save`, a run's `RUN_DIR` (its
    `model/`, else its `checkpoint/`) or one of those folders."""
    root = Path(path)
    where = (
        find_state_dir(root / "model")
        or find_state_dir(root)
        or find_state_dir(root / "checkpoint")
    )
    if where is None:
        raise CheckpointError(
            _sweep_hint(root)
            or f"no saved model or learner in {root} (expected {root / META_FILE} or "
            f"{root / 'model' / META_FILE}); learners are saved by Learner.save and by "
            "runs given a run_dir"
        )
    payload = read_state_dir(where, device)
    require(payload, ("config", "stream", "model", "frozen", "strategies"), where)
    return payload, where


def _sweep_hint(root: Path) -> str:
    """For a sweep's output folder: use one of its runs, `runs/<key>`, and which exist."""
    if not (root / "runs").is_dir():
        return ""
    runs = sorted(d for d in (root / "runs").glob("*") if (d / "model").is_dir())
    lines = []
    for d in runs[:20]:
        try:
            cfg = json.loads((d / "config.json").read_text())
            what = f"  ({cfg.get('strategy')}, seed {cfg.get('seed')})"
        except (OSError, ValueError, AttributeError):
            what = ""
        lines.append(f"\n  {root / 'runs' / d.name}{what}")
    more = f"\n  ... and {len(runs) - 20} more" if len(runs) > 20 else ""
    found = f"its runs with a model:{''.join(lines)}{more}" if runs else "none has a model yet"
    return (
        f"{root} is the output folder of a sweep, not one run: give one of its runs, "
        f"{root / 'runs'}/<key>; {found}"
    )


def manifest(payload: dict[str, Any], strategies: Sequence[Strategy]) -> dict[str, Any]:
    """What a saved learner's folder holds, entry by entry, and where it holds training
    samples (`training_samples`, empty in an export for prediction)."""
    shape = tuple(int(d) for d in payload["stream"]["input_shape"])
    samples, states = [], []
    for i, (d, s) in enumerate(zip(payload["strategies"], strategies)):
        export = bool(payload.get("for_prediction"))  # prediction state holds no samples
        rows = _sample_rows(d["state"], shape) if s.stores_samples and not export else 0
        if rows:
            samples.append(
                f"strategies/{i} ({d['name']}): a memory of {rows} rows of training samples"
            )
        kept = "none (left out)" if d["state"] is None else ", ".join(sorted(d["state"])) or "-"
        states.append(f"{d['name']}: {kept}")
    past = payload.get("past_data") or []
    if past:
        n = sum(len(p["y"]) for p in past)
        samples.append(f"past_data: the training data of {len(past)} experiences ({n} samples)")
    return {
        "for_prediction": bool(payload.get("for_prediction")),
        "training_samples": samples,
        "contents": {
            "config": "model spec, head, strategy spec, scenario, seed, training settings",
            "stream": "input shape and dtype, classes and tasks learned, class and feature names",
            "model": f"weights: {len(payload['model'])} tensors",
            "strategies": states,
            "optimizer": "state" if payload.get("optimizer") is not None else "none",
            "rng": "random generator states" if payload.get("rng") else "none",
            "past_data": f"{len(past)} experiences" if past else "none",
        },
    }


def _sample_rows(state: Any, shape: tuple[int, ...]) -> int:
    """The most rows of input shape `shape` in any tensor of a strategy's state."""
    if isinstance(state, torch.Tensor):
        return int(state.shape[0]) if tuple(state.shape[1:]) == shape and state.dim() else 0
    if isinstance(state, dict):
        return max((_sample_rows(v, shape) for v in state.values()), default=0)
    if isinstance(state, (list, tuple)):
        return sum(_sample_rows(v, shape) for v in state)
    return 0


def prediction_payload(payload: dict[str, Any], strategies: Sequence[Strategy]) -> dict[str, Any]:
    """`payload` less what only training needs: optimizer, random states, past data and
    each strategy's state beyond `Strategy.prediction_state` (memories, exemplars)."""
    kept = [{**d, "state": s.prediction_state()} for d, s in zip(payload["strategies"], strategies)]
    out = {**payload, "strategies": kept, "optimizer": None, "rng": None, "past_data": None}
    return {**out, "for_prediction": True}


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
    for exp in experiences:
        adapt_model(model, exp)
    for s, d in zip(strategies, saved):
        if d["state"] is not None:  # None: left out of an export for prediction
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
