"""Log runs to TensorBoard event files (`torch.utils.tensorboard.SummaryWriter`).

Each results row gets its own folder under `log_dir` (`<strategy>-seed<N>-<run id>`), so
TensorBoard lists runs side by side. Scalars: the per-experience accuracies (step =
experience index) and the final metrics (at the last experience's step). The parameters
go to the HParams dashboard (with the final metrics) and to a `params` text summary; the
accuracy matrix is a `accuracy_matrix` text summary (a table) and, as TensorBoard has no
artifact store, `accuracy_matrix.json`/`.csv` files in the run's folder. A row already
logged under `log_dir` is skipped (`lifelong.track.base.Ledger`, `log_dir/.lifelong-logged.json`);
a new attempt of a run already there gets its own folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lifelong.track.base import (
    Ledger,
    Tracker,
    experience_metrics,
    final_metrics,
    row_digest,
    run_params,
    write_matrix_files,
)


def run_folder_name(row: dict[str, Any]) -> str:
    """A file-system-safe folder name for the run: `<strategy>-seed<N>-<run id>`."""
    name = f"{row.get('strategy')}-seed{row.get('seed')}-{str(row.get('run_id') or 'failed')[:8]}"
    return re.sub(r"[^\w.=+,-]+", "_", name)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A small markdown table (TensorBoard renders text summaries as markdown)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


class TensorBoardTracker(Tracker):
    """Write one TensorBoard run folder per results row under `log_dir`."""

    name = "tensorboard"

    def __init__(self, log_dir: str = "runs/tensorboard") -> None:
        import torch.utils.tensorboard  # noqa: F401 - fail now if tensorboard is missing

        self.log_dir = Path(log_dir)
        self.run_dirs: list[Path] = []
        self.ledger = Ledger(self.log_dir / ".lifelong-logged.json")

    def log_run(
        self, row: dict[str, Any], header: dict[str, Any], run_dir: str | None = None
    ) -> None:
        """Write `row`'s scalars, parameters and matrix into a new run folder.

        `run_dir` is not copied (TensorBoard has no artifact store); its path is recorded
        in the `params` text summary.
        """
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        digest = row_digest(row)
        if digest in self.ledger:
            return
        folder = self.log_dir / run_folder_name(row)
        if folder.exists():  # another attempt of this run: its own folder
            folder = folder.with_name(f"{folder.name}-{digest[:6]}")
        self.run_dirs.append(folder)
        params = run_params(row, header)
        if run_dir is not None:
            params["run_dir"] = str(run_dir)
        steps = experience_metrics(row)
        final = final_metrics(row)
        R = row.get("accuracy_matrix")
        with SummaryWriter(log_dir=str(folder)) as w:
            for step, m in enumerate(steps):
                for k, v in m.items():
                    w.add_scalar(k, v, step)
            for k, v in final.items():
                w.add_scalar(k, v, max(0, len(steps) - 1))
            exp, ssi, sei = hparams(params, final)
            for summary in (exp, ssi, sei):
                w._get_file_writer().add_summary(summary)
            w.add_text(
                "params",
                markdown_table(["parameter", "value"], [[k, v] for k, v in sorted(params.items())]),
            )
            if R:
                cells = [[i, *(f"{v:.4f}" for v in r)] for i, r in enumerate(R)]
                head = ["after \\ on"] + [f"exp {j}" for j in range(len(R))]
                w.add_text("accuracy_matrix", markdown_table(head, cells))
            if row.get("error"):
                w.add_text("error", f"```\n{row['error']}\n```")
        if R:
            write_matrix_files(row, folder)
        self.ledger.add(digest)
