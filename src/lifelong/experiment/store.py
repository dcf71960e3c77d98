"""The result store of a sweep's output folder.

Layout of `out/`:

* `results.json`: the contract of docs/architecture.md (provenance, then one row per run of the sweep);
* `results.csv`, `results.parquet`: the same rows as a flat table (`params.*` columns, the
  accuracy matrix as JSON text, plus `run_key` and `label`, the run's name in the printed
  table and the report, `lifelong.experiment.labels`), readable by
  `pandas.read_csv/read_parquet`; without pyarrow only the CSV is written (said once);
* `experiment.json`: the checked experiment config the sweep ran;
* `runs/<key>/`: one folder per run, `<key>` a hash of the run's config computed before it
  runs: `config.json`, `run.log` (progress and errors), `row.json` once it finished, and
  whatever the run saves there (checkpoints, the trained model).

Every file is written atomically (temporary file, then rename), so an interrupted sweep
never leaves half a file, and each finished run is saved the moment it finishes.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lifelong.experiment.labels import row_labels
from lifelong.experiment.run import RunConfig, config_hash
from lifelong.metrics import ROW_FIGURES

ROW_FILE, CONFIG_FILE, LOG_FILE = "row.json", "config.json", "run.log"
#: The scalar fields of a results row, in table order (`accuracy_matrix` and `params` follow).
ROW_FIELDS = (
    "run_id",
    "benchmark",
    "scenario",
    "strategy",
    "seed",
    "status",
    "error",
    "n_experiences",
    *ROW_FIGURES,
)


def run_key(config: RunConfig) -> str:
    """A stable hash of a run's config, known before it runs (device and threads excluded,
    as they do not change what is computed). Names the run's folder in the store."""
    return config_hash(config)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write `obj` as JSON to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON content of `path`, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_row(run_dir: str | os.PathLike[str], row: dict[str, Any]) -> Path:
    """Save a finished run's results row in its folder."""
    return write_json(Path(run_dir) / ROW_FILE, row)


def read_row(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The results row saved in a run's folder, if any."""
    row = read_json(Path(run_dir) / ROW_FILE)
    return row if isinstance(row, dict) else None


def append_log(run_dir: str | os.PathLike[str], text: str) -> None:
    """Append a time-stamped line to a run's log."""
    with open(Path(run_dir) / LOG_FILE, "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")


class ResultStore:
    """The output folder of a sweep: per-run folders, results.json and the tables."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def run_dir(self, key: str) -> Path:
        """The folder of run `key`."""
        return self.root / "runs" / key

    def row(self, key: str) -> dict[str, Any] | None:
        """The saved row of run `key` (finished or failed), if any."""
        return read_row(self.run_dir(key))

    def done(self, key: str) -> dict[str, Any] | None:
        """The saved row of run `key` when it finished successfully (a resumed sweep skips it)."""
        row = self.row(key)
        return row if row is not None and row.get("status") == "ok" else None

    def prepare(self, key: str, config: RunConfig) -> Path:
        """Create run `key`'s folder for a new attempt: save its config, drop a stale row."""
        d = self.run_dir(key)
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / CONFIG_FILE, asdict(config))
        (d / ROW_FILE).unlink(missing_ok=True)
        append_log(d, "queued")
        return d

    def save(self, key: str, row: dict[str, Any]) -> None:
        """Save run `key`'s row (atomically, right when it finished)."""
        write_row(self.run_dir(key), row)

    def write_results(self, rows: list[dict[str, Any]], header: dict[str, Any]) -> Path:
        """Write `results.json`: the provenance header and the rows."""
        return write_results(self.root, rows, header)

    def write_tables(self, rows: list[dict[str, Any]], keys: Sequence[str]) -> list[Path]:
        """Write `results.csv` and (when pyarrow is installed) `results.parquet`."""
        table = table_rows(rows, keys)
        paths = [write_csv(self.root / "results.csv", table)]
        try:
            paths.append(write_parquet(self.root / "results.parquet", table))
        except ImportError:
            _say_once(
                "note: results.parquet not written: pyarrow is not installed "
                "(pip install 'lifelong[data]'); results.csv holds the same table"
            )
        return paths


_said: set[str] = set()


def _say_once(text: str) -> None:
    """Print `text` to standard error the first time only (per process)."""
    if text not in _said:
        _said.add(text)
        print(text, file=sys.stderr)


def write_results(
    out_dir: str | os.PathLike[str], rows: list[dict[str, Any]], header: dict[str, Any]
) -> Path:
    """Write `out_dir/results.json` atomically (a crash never leaves half a file)."""
    return write_json(Path(out_dir) / "results.json", {**header, "runs": rows})


def table_rows(
    rows: Sequence[dict[str, Any]], keys: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Results rows as flat table rows with the same columns, types unified per column."""
    flat = []
    labels = row_labels(rows)
    for i, r in enumerate(rows):
        t: dict[str, Any] = {"run_key": keys[i] if keys else None, "label": labels[i]}
        t.update({k: r.get(k) for k in ROW_FIELDS})
        m = r.get("accuracy_matrix")
        t["accuracy_matrix"] = None if m is None else json.dumps(m)
        t.update({f"params.{k}": v for k, v in sorted((r.get("params") or {}).items())})
        flat.append(t)
    columns = list(dict.fromkeys(k for t in flat for k in t))
    for c in columns:
        values = _unify([t.get(c) for t in flat])
        for t, v in zip(flat, values):
            t[c] = v
    return [{c: t[c] for c in columns} for t in flat]


def _unify(values: list[Any]) -> list[Any]:
    """One type per column: ints and floats -> float; anything else mixed -> text."""
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {int} or kinds <= {bool} or kinds <= {str} or kinds <= {float}:
        return values
    if kinds <= {int, float}:
        return [None if v is None else float(v) for v in values]
    return [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values]


def write_csv(path: Path, table: list[dict[str, Any]]) -> Path:
    """Write flat table rows as CSV (empty cell for null, floats in full precision)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        if table:
            w.writerow(list(table[0]))
            for t in table:
                w.writerow([_cell(v) for v in t.values()])
    os.replace(tmp, path)
    return path


def _cell(v: Any) -> Any:
    return "" if v is None else repr(v) if isinstance(v, float) else v


def write_parquet(path: Path, table: list[dict[str, Any]]) -> Path:
    """Write flat table rows as Parquet (needs pyarrow: `pip install lifelong[data]`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(pa.Table.from_pylist(table), tmp)
    os.replace(tmp, path)
    return path
