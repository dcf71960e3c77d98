"""A `Learner` as a saved payload and back (the folder's layout: `lifelong.checkpoint`).

`learner_payload(learner)` gathers the model, strategies' state, optimizer, random states,
class map and config as nested tensors and JSON; `restore_learner(Learner, payload, ...)`
builds a learner from it that continues exactly where the saved one stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lifelong.checkpoint import (
    manifest,
    model_payload,
    past_data,
    prediction_payload,
    restore_model,
    skeleton_stream,
    stream_meta,
)
from lifelong.config import TRAIN_FIELDS, TrainConfig
from lifelong.data.experience import TensorSet
from lifelong.inputs import LabelMap
from lifelong.models.heads import grow_outputs
from lifelong.serialize import CheckpointError
from lifelong.train import make_optimizer


def learner_payload(learner: Any, for_prediction: bool = False) -> dict[str, Any]:
    """Everything `Learner.load` needs of `learner`, as nested tensors and JSON-able values,
    with its `manifest`; `for_prediction` (or a learner loaded from such an export): only
    what prediction needs (`checkpoint.prediction_payload`), no training samples."""
    cuda = [learner._cuda_rng] if learner._cuda_rng is not None else []
    payload = {
        "kind": "learner",
        "config": {
            **learner.extra_config,
            "model": learner.model_spec,
            "head": learner.head,
            "strategy": learner.spec,
            "scenario": learner.scenario,
            "seed": learner.seed,
            "train": learner.config.to_dict(),
        },
        "stream": stream_meta(learner),
        "built_for": learner.built_for,
        **model_payload(learner._model(), learner.strategies),
        "optimizer": None if learner.optimizer is None else learner.optimizer.state_dict(),
        "rng": {
            "torch": learner._rng if learner._rng is not None else torch.Tensor(),
            "cuda": cuda,
            "batch_order": learner.generator.get_state(),
        },
        "labels": {"kind": learner.labels.kind, "names": list(learner.labels.names)},
        "past_data": past_data(learner.seen),
    }
    if for_prediction or learner.for_prediction:
        payload = prediction_payload(payload, learner.strategies)
    return {**payload, "manifest": manifest(payload, learner.strategies)}


def restore_learner(
    cls: Any,
    payload: dict[str, Any],
    where: Path,
    device: torch.device,
    model: nn.Module | Callable[..., nn.Module] | None = None,
) -> Any:
    """A learner of class `cls` restored from a saved payload (see `Learner.load`)."""

    config, meta = payload["config"], payload["stream"]
    spec = config.get("model")
    if spec is None and model is None:
        raise CheckpointError(
            f"{where} was saved from a model object, not a spec: pass model= (a fresh "
            "module of the same architecture, or its factory) to load it"
        )
    train = config.get("train") or {k: config[k] for k in TRAIN_FIELDS if k in config}
    learner = cls(
        model if model is not None else spec,
        config["strategy"],
        config=TrainConfig.from_dict(train),
        scenario=meta["scenario"],
        head=config.get("head", "fixed"),
        device=device,
        seed=int(config.get("seed", 0)),
    )
    learner.model_spec = spec
    learner.for_prediction = bool(payload.get("for_prediction"))
    learner.extra_config = {k: v for k, v in config.items() if k not in _LEARNER_KEYS}
    learner.name, learner.info = meta.get("name", "learner"), dict(meta.get("info", {}))
    learner.input_shape = tuple(int(d) for d in meta["input_shape"])
    learner.dtype = getattr(torch, str(meta["dtype"]))
    built = payload.get("built_for") or {"n_classes": meta["n_classes"], "n_tasks": meta["n_tasks"]}
    skeleton = skeleton_stream({**meta, **built})
    with torch.random.fork_rng(devices=[]):
        net = learner._build(skeleton) if not isinstance(model, nn.Module) else model
        grow_outputs(net, int(meta["n_classes"]), int(meta["n_tasks"]))
        seen = skeleton_stream(meta).experiences
        learner.model = restore_model(net, learner.strategies, seen, payload, device)
    learner.built_for = {k: int(v) for k, v in built.items()}
    learner.n_classes, learner.n_tasks = int(meta["n_classes"]), int(meta["n_tasks"])
    data = payload.get("past_data") or []
    learner.seen = [
        e if not data else replace(e, train=TensorSet(**data[i]).to(device))
        for i, e in enumerate(seen)
    ]
    labels = payload.get("labels") or {}
    learner.labels = LabelMap(labels.get("kind"), list(labels.get("names", [])))
    if learner.seen and learner.labels.kind is None:
        learner.labels.kind = "int"
    if payload.get("optimizer") is not None:
        learner.optimizer = make_optimizer(learner.model, learner.config, learner.strategies)
        try:
            learner.optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{where}: optimizer state does not fit: {e}") from None
    rng = payload.get("rng")
    if rng:
        if rng["torch"].numel():
            learner._rng = rng["torch"]
        if device.type == "cuda" and rng.get("cuda"):
            learner._cuda_rng = rng["cuda"][0]
        learner.generator.set_state(rng["batch_order"])
    return learner


#: config keys of the learner itself; a run adds the rest of its `RunConfig` (saved
#: before `train` was nested, its training settings sat at the top level: TRAIN_FIELDS)
_LEARNER_KEYS = {"model", "head", "strategy", "scenario", "seed", "train", *TRAIN_FIELDS}
