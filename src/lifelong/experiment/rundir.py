"""The files of one run: a checkpoint after every experience, the trained learner at the end.

    RUN_DIR/checkpoint/   after every experience: the saved learner (model, optimizer,
                          strategies' state, random states) plus the run's config, run_id
                          and progress (accuracy rows, timings)
    RUN_DIR/model/        at the end: the saved learner (read by `lifelong.load`, which
                          returns a `Learner` that can go on learning)

Resume policy: `run(config, run_dir=D, resume=True)` continues from `D/checkpoint` when
there is one (a checkpoint of a different run -- another `run_id` -- is refused) and
starts afresh when there is none; `resume=False` starts afresh, deleting what an earlier
run left in `D/checkpoint` and `D/model`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from lifelong.checkpoint import read_learner
from lifelong.learner import Learner, Result
from lifelong.learner_state import restore_learner
from lifelong.serialize import META_FILE, CheckpointError, PathLike, find_state_dir, require


class RunDir:
    """The files of one run under `path` (see the module docstring)."""

    def __init__(self, path: PathLike, config: Any, run_id: str, device: torch.device) -> None:
        self.path = Path(path)
        self.config = json.loads(json.dumps(asdict(config), default=str))
        self.run_id, self.device = run_id, device
        self.checkpoint_dir, self.model_dir = self.path / "checkpoint", self.path / "model"

    def clear(self) -> None:
        """Delete what an earlier run left here (checkpoint and model only)."""
        for d in (self.checkpoint_dir, self.model_dir):
            for p in (d, d.with_name(f".{d.name}.old"), d.with_name(f".{d.name}.tmp")):
                shutil.rmtree(p, ignore_errors=True)

    def _extra(self, kind: str) -> dict[str, Any]:
        return {"kind": kind, "run_id": self.run_id}

    def save_checkpoint(self, learner: Learner, result: Result) -> None:
        """Write `checkpoint/`: everything needed to continue exactly where the run stands."""
        learner.extra_config = self.config
        learner.save(self.checkpoint_dir, **self._extra("checkpoint"), progress=asdict(result))

    def save_model(self, learner: Learner) -> Path:
        """Write `model/`: the trained learner (it predicts, and can go on learning)."""
        learner.extra_config = self.config
        return learner.save(self.model_dir, **self._extra("model"))

    def resume(self) -> tuple[Learner, Result] | None:
        """The learner and progress saved in `checkpoint/`, or None when there is none."""
        if find_state_dir(self.checkpoint_dir) is None:
            return None
        payload, where = read_learner(self.checkpoint_dir, self.device)
        require(payload, ("run_id", "optimizer", "rng", "progress"), where)
        if payload["run_id"] != self.run_id:
            raise CheckpointError(
                f"{where} belongs to another run (run_id {payload['run_id']}, this run is "
                f"{self.run_id}); use another run_dir or resume=False to start afresh"
            )
        try:
            result = Result(**payload["progress"])
        except TypeError as e:
            raise CheckpointError(f"{where / META_FILE}: bad progress entry: {e}") from None
        return restore_learner(Learner, payload, where, self.device), result
