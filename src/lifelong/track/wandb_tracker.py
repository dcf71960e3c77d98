"""Log runs to Weights & Biases: one W&B run per results row.

`mode` defaults to `WANDB_MODE` (else W&B's `online`); `mode="offline"` writes the run
under `dir` (or `WANDB_DIR`) as `wandb/offline-run-*/`, to be sent later with
`wandb sync`. A run's config holds the parameters; its history the per-experience
accuracies (W&B step = experience index); its summary the final figures under the row's
names; its files `accuracy_matrix.json`/`.csv` (and `run_files/...` from `run_dir`).
Runs are grouped by `group` (default `<benchmark>-<scenario>`). A row already logged from
this machine to the same project is skipped (`lifelong.track.base.Ledger`, a file in
`<dir>/wandb/`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from lifelong.track.base import (
    Ledger,
    Tracker,
    experience_metrics,
    final_metrics,
    row_digest,
    run_name,
    run_params,
    write_matrix_files,
)

MODES = ("online", "offline", "disabled", "shared")


class WandbTracker(Tracker):
    """One W&B run per results row, in `project` (and `entity` where given)."""

    name = "wandb"

    def __init__(
        self,
        project: str = "lifelong",
        entity: str | None = None,
        mode: str | None = None,
        dir: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
    ) -> None:
        import wandb  # noqa: F401 - fail now if the package is missing

        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown W&B mode {mode!r}; expected one of {', '.join(MODES)}")
        self.project = project
        self.entity = entity
        self.mode = mode
        self.dir = dir
        self.group = group
        self.tags = list(tags or [])
        self.run_dirs: list[Path] = []
        base = Path(dir or os.environ.get("WANDB_DIR") or ".") / "wandb"
        self.ledger = Ledger(base / f".lifelong-logged-{entity or ''}-{project}.json")

    def log_run(
        self, row: dict[str, Any], header: dict[str, Any], run_dir: str | None = None
    ) -> None:
        """Create a W&B run for `row`, log everything, and finish it (exit code 1 if failed)."""
        import wandb

        digest = row_digest(row)
        if digest in self.ledger:
            return
        if self.dir is not None:
            Path(self.dir).mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(
            silent=True, console="off", disable_git=True, save_code=False, x_disable_stats=True
        )
        run = wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,  # type: ignore[arg-type]
            dir=self.dir,
            name=run_name(row),
            group=self.group or f"{row.get('benchmark')}-{row.get('scenario')}",
            tags=[*self.tags, str(row.get("status"))],
            config=run_params(row, header),
            settings=settings,
            reinit="create_new",
        )
        ok = row.get("status") == "ok"
        try:
            files = Path(run.dir)
            self.run_dirs.append(files.parent)
            for step, m in enumerate(experience_metrics(row)):
                run.log(m, step=step)
            run.summary.update(final_metrics(row))
            if row.get("error"):
                run.summary["error"] = str(row["error"])
            if row.get("accuracy_matrix"):
                for path in write_matrix_files(row, files):
                    run.save(str(path), base_path=str(files), policy="now")
            if run_dir is not None:
                shutil.copytree(run_dir, files / "run_files", dirs_exist_ok=True)
                run.save(str(files / "run_files" / "*"), base_path=str(files), policy="now")
        except BaseException:
            ok = False
            raise
        finally:
            run.finish(exit_code=0 if ok else 1)
        self.ledger.add(digest)

    def close(self) -> None:
        """Shut W&B's background service down (so offline files are complete on disk),
        unless another W&B run of this process is still active."""
        import wandb

        if wandb.run is None:
            wandb.teardown()
