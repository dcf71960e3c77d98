"""Checkpoints and saved models of a run: what is saved, and how a run is restored.

The files are state directories (`lifelong.serialize`: tensors in one file, everything
else in JSON, never a pickle; checksummed and written atomically). A run with a `run_dir`
(see `lifelong.experiment.run.run`) lays out:

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

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lifelong.data.experience import Experience, Stream
from lifelong.serialize import (
    META_FILE,
    CheckpointError,
    PathLike,
    find_state_dir,
    read_state_dir,
    require,
    write_state_dir,
)
from lifelong.strategies.base import Strategy
from lifelong.strategies.registry import canonical_spec

if TYPE_CHECKING:
    from lifelong.experiment.run import RunConfig
    from lifelong.train import TrainConfig

#: public names; the state-directory ones are re-exported from `lifelong.serialize`
__all__ = [
    "CheckpointError",
    "RunDir",
    "RunState",
    "find_state_dir",
    "model_payload",
    "read_state_dir",
    "require",
    "restore_model",
    "stream_meta",
    "write_state_dir",
]


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
