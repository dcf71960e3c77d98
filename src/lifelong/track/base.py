"""The `Tracker` interface and what every tracker logs for one run of `results.json`.

A tracker receives one results row (see docs/architecture.md) and the file's top-level provenance,
and logs, for each run:

* parameters: benchmark, scenario, strategy, seed, run_id, status, every entry of
  `row["params"]`, and the provenance as `provenance.<key>`;
* per-experience metrics, with step = experience index i: `accuracy/seen_average` (mean
  accuracy on experiences 0..i, `lifelong.metrics.accuracy_curve`), `accuracy/current`
  (`R[i][i]`) and `accuracy/experience_<j>` (`R[i][j]` for every j, so each experience's
  curve shows its forgetting and, for j > i, zero-shot transfer);
* final metrics under the row's own names (`final_average_accuracy`,
  `average_forgetting`, `backward_transfer`, `forward_transfer`) and the cost figures
  (`train_seconds`, `eval_seconds`, `wall_seconds`, `peak_memory_mb`); `None` is skipped;
* the accuracy matrix as files `accuracy_matrix.json` and `accuracy_matrix.csv`.

A failed run logs its parameters, its status and its error text, and no metrics.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from lifelong.metrics import ROW_FIGURES, accuracy_curve

#: Final figures of a row, logged under these names when not None.
FINAL_METRICS = ROW_FIGURES
#: Identity fields of a row, logged as parameters.
IDENTITY = ("benchmark", "scenario", "strategy", "seed", "run_id", "status")
Scalar = bool | int | float | str


class Tracker:
    """Base class of the experiment trackers: log results rows, then `close()`.

    Use as a context manager to close it on exit. Subclasses implement `log_run`.
    """

    name: ClassVar[str] = "tracker"

    def log_run(
        self, row: dict[str, Any], header: dict[str, Any], run_dir: str | None = None
    ) -> None:
        """Log one run (`row` of `results.json`, `header` its provenance).

        `run_dir`, when given, is a folder of the run's own files (checkpoint, logs) that
        trackers with an artifact store attach to the run under `run_files/`.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release whatever the tracker holds."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Ledger:
    """The digests (`row_digest`) of the rows a tracker logged to one destination from this
    machine, in a small JSON file kept beside what the tracker writes (TensorBoard's
    `log_dir`, W&B's `dir`, Neptune's data directory). A tracker asks it before logging a
    row and records the row once everything was logged, so logging the same `results.json`
    twice (or after a sweep that logged as it ran) logs each run once. Rows logged from
    another machine to the same online project are not known here (MLflow, which can be
    searched, asks its own store instead)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _read(self) -> list[str]:
        try:
            found = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        return [str(d) for d in found] if isinstance(found, list) else []

    def __contains__(self, digest: object) -> bool:
        return digest in self._read()

    def add(self, digest: str) -> None:
        """Record `digest` (atomically: a crash leaves the old file or the new one)."""
        digests = self._read()
        if digest in digests:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps([*digests, digest]))
        tmp.replace(self.path)


def param_value(value: Any) -> Scalar:
    """A value every tracker accepts: numbers, strings and bools as they are, `None` as
    `"None"`, anything else (lists, dicts) as sorted JSON."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if value is None:
        return "None"
    return json.dumps(value, sort_keys=True, default=str)


def run_params(row: dict[str, Any], header: dict[str, Any]) -> dict[str, Scalar]:
    """Every parameter of a run, flat: identity fields, `row["params"]`, provenance."""
    out: dict[str, Scalar] = {}
    for key, value in (row.get("params") or {}).items():
        out[str(key)] = param_value(value)
    for key in IDENTITY:
        out[key] = param_value(row.get(key))
    for key, value in header.items():
        if key != "runs":
            out[f"provenance.{key}"] = param_value(value)
    return out


def row_digest(row: dict[str, Any]) -> str:
    """A short hash of the whole row: the same row logged again has the same digest (a
    tracker skips it), a new attempt of the same run (new timings) has another."""
    text = json.dumps(row, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def run_name(row: dict[str, Any]) -> str:
    """A readable name for the run: `strategy seed=N`."""
    return f"{row.get('strategy')} seed={row.get('seed')}"


def experience_metrics(row: dict[str, Any]) -> list[dict[str, float]]:
    """One dict of metrics per experience index (the step); empty for a failed run."""
    R = row.get("accuracy_matrix")
    if not R:
        return []
    curve = accuracy_curve(R)
    steps = []
    for i, acc_row in enumerate(R):
        m = {"accuracy/seen_average": float(curve[i]), "accuracy/current": float(R[i][i])}
        m.update({f"accuracy/experience_{j}": float(v) for j, v in enumerate(acc_row)})
        steps.append(m)
    return steps


def final_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The run's final figures and costs that were measured (None skipped)."""
    return {k: float(row[k]) for k in FINAL_METRICS if row.get(k) is not None}


def matrix_json(row: dict[str, Any]) -> str:
    """The accuracy matrix with the run it belongs to, as JSON text."""
    keep = ("run_id", "benchmark", "scenario", "strategy", "seed", "accuracy_matrix")
    return json.dumps({k: row.get(k) for k in keep}, indent=2)


def matrix_csv(row: dict[str, Any]) -> str:
    """The accuracy matrix as CSV: one line per `after_experience` i, columns `R[i][j]`."""
    R = row.get("accuracy_matrix") or []
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["after_experience"] + [f"experience_{j}" for j in range(len(R))])
    for i, acc_row in enumerate(R):
        w.writerow([i, *acc_row])
    return buf.getvalue()


def write_matrix_files(row: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write `accuracy_matrix.json` and `.csv` into `folder`; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "accuracy_matrix.json", folder / "accuracy_matrix.csv"]
    paths[0].write_text(matrix_json(row))
    paths[1].write_text(matrix_csv(row))
    return paths
