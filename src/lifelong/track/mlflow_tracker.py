"""Log runs to MLflow: one MLflow run per results row, in one experiment.

Any tracking URI works (a local `sqlite:///mlflow.db`, a `file:` folder, an
`http://` tracking server); without one, `MLFLOW_TRACKING_URI` (or MLflow's own default)
is used. Parameters are stringified as MLflow stores them; per-experience metrics carry
the experience index as their step; the accuracy matrix goes to the run's artifacts.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from lifelong.track.base import (
    Tracker,
    experience_metrics,
    final_metrics,
    row_digest,
    run_name,
    run_params,
    write_matrix_files,
)

#: MLflow's per-request limits of `log_batch` and its longest parameter value.
MAX_PARAMS, MAX_METRICS, MAX_PARAM_CHARS = 100, 1000, 6000
#: The tag holding a logged row's digest (`lifelong.track.base.row_digest`).
ROW_TAG = "lifelong.row"


class MLflowTracker(Tracker):
    """One MLflow run per results row, in experiment `experiment` (created if missing).

    `artifact_location` is used only when the experiment is created; `tags` are added to
    every run.
    """

    name = "mlflow"

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str = "lifelong",
        artifact_location: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.tags = dict(tags or {})
        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id: str = (
            found.experiment_id
            if found is not None
            else self.client.create_experiment(experiment, artifact_location=artifact_location)
        )
        self.run_ids: list[str] = []

    def log_run(
        self, row: dict[str, Any], header: dict[str, Any], run_dir: str | None = None
    ) -> None:
        """Create an MLflow run for `row`, log everything, and end it (FAILED for a failed row).

        A row already logged to the experiment (the same `results.json` logged twice, or a
        sweep's runs logged again) is skipped: each run is tagged with its `run_id` and the
        row's digest, the digest only once everything was logged."""
        from mlflow.entities import Metric, Param

        digest = row_digest(row)
        if self.logged(digest):
            return
        tags = {
            **self.tags,
            "lifelong.status": str(row.get("status")),
            "lifelong.run_id": str(row.get("run_id")),
        }
        if row.get("error"):
            tags["lifelong.error"] = str(row["error"])[:5000]
        run = self.client.create_run(self.experiment_id, run_name=run_name(row), tags=tags)
        rid = run.info.run_id
        self.run_ids.append(rid)
        try:
            params = [
                Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in run_params(row, header).items()
            ]
            now = int(time.time() * 1000)
            metrics = [
                Metric(k, v, now, step)
                for step, m in enumerate(experience_metrics(row))
                for k, v in m.items()
            ]
            last = max(0, len(row.get("accuracy_matrix") or []) - 1)
            metrics += [Metric(k, v, now, last) for k, v in final_metrics(row).items()]
            for i in range(0, len(params), MAX_PARAMS):
                self.client.log_batch(rid, params=params[i : i + MAX_PARAMS])
            for i in range(0, len(metrics), MAX_METRICS):
                self.client.log_batch(rid, metrics=metrics[i : i + MAX_METRICS])
            if row.get("accuracy_matrix"):
                with tempfile.TemporaryDirectory() as tmp:
                    for path in write_matrix_files(row, tmp):
                        self.client.log_artifact(rid, str(path))
            if run_dir is not None:
                self.client.log_artifacts(rid, run_dir, "run_files")
            self.client.set_tag(rid, ROW_TAG, digest)
        except BaseException:
            self.client.set_terminated(rid, "FAILED")
            raise
        self.client.set_terminated(rid, "FINISHED" if row.get("status") == "ok" else "FAILED")

    def logged(self, digest: str) -> bool:
        """Whether a run of this experiment already holds the row with `digest` (deleted
        runs do not count)."""
        found = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{ROW_TAG}` = '{digest}'", max_results=1
        )
        return len(found) > 0
