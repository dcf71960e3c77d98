"""Log runs to Neptune (the `neptune` client, 1.x): one Neptune run per results row.

`project` and `api_token` default to `NEPTUNE_PROJECT` / `NEPTUNE_API_TOKEN`; `mode` to
`NEPTUNE_MODE` (else Neptune's `async`). In `mode="offline"` nothing leaves the machine:
the operations are written under `NEPTUNE_DATA_DIRECTORY` (default `.neptune/`) and can be
sent later with `neptune sync`. Layout of a run: `parameters/<name>`, the per-experience
series `accuracy/...` (step = experience index), the final figures at the top level under
the row's names, `status`/`error`, and `accuracy_matrix/json` and `accuracy_matrix/csv`.
A row already logged from this machine to the same project is skipped
(`lifelong.track.base.Ledger`, a file in `NEPTUNE_DATA_DIRECTORY`, default `.neptune`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lifelong.track.base import (
    Ledger,
    Tracker,
    experience_metrics,
    final_metrics,
    matrix_csv,
    matrix_json,
    row_digest,
    run_name,
    run_params,
)


class NeptuneTracker(Tracker):
    """One Neptune run per results row. `tags` are added to every run (plus the strategy)."""

    name = "neptune"

    def __init__(
        self,
        project: str | None = None,
        api_token: str | None = None,
        mode: str | None = None,
        tags: list[str] | None = None,
    ) -> None:
        import neptune  # noqa: F401 - fail now if the package is missing

        if mode is not None and mode not in ("async", "sync", "offline", "debug", "read-only"):
            raise ValueError(
                f"unknown Neptune mode {mode!r}; expected async, sync, offline, debug or read-only"
            )
        self.project = project
        self.api_token = api_token
        self.mode = mode
        self.tags = list(tags or [])
        where = os.environ.get("NEPTUNE_PROJECT") if project is None else project
        data_dir = Path(os.environ.get("NEPTUNE_DATA_DIRECTORY") or ".neptune")
        name = str(where or "default").replace("/", "_")
        self.ledger = Ledger(data_dir / f".lifelong-logged-{name}.json")

    def log_run(
        self, row: dict[str, Any], header: dict[str, Any], run_dir: str | None = None
    ) -> None:
        """Create a Neptune run for `row`, log everything, and stop it."""
        import neptune
        from neptune.types import File

        digest = row_digest(row)
        if digest in self.ledger:
            return
        options: dict[str, Any] = {"project": self.project, "api_token": self.api_token}
        if self.mode is not None:
            options["mode"] = self.mode
        status = str(row.get("status"))
        run = neptune.init_run(
            name=run_name(row),
            tags=[*self.tags, str(row.get("strategy")), status],
            capture_stdout=False,
            capture_stderr=False,
            capture_hardware_metrics=False,
            capture_traceback=False,
            git_ref=False,
            source_files=[],
            **options,
        )
        try:
            run["parameters"] = run_params(row, header)
            run["status"] = status
            if row.get("error"):
                run["error"] = str(row["error"])
            for step, m in enumerate(experience_metrics(row)):
                for k, v in m.items():
                    run[k].append(v, step=step)
            for k, v in final_metrics(row).items():
                run[k] = v
            if row.get("accuracy_matrix"):
                run["accuracy_matrix/json"].upload(
                    File.from_content(matrix_json(row), extension="json")
                )
                run["accuracy_matrix/csv"].upload(
                    File.from_content(matrix_csv(row), extension="csv")
                )
            if run_dir is not None:
                run["run_files"].upload_files(str(Path(run_dir).resolve()))
        finally:
            run.stop()
        self.ledger.add(digest)
