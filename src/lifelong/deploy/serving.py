"""`predict` with the production version, and what it records: each predicted input is
stored as an unlabelled sample (so retention and `forget` cover it, drift monitoring sees
it, and its label may arrive later: `label(dir, ids, labels)`) plus a `predictions` row
(sample id, version, predicted class, time). A prediction's id is its sample's id.

`record_predictions` is the part a server with its own model in memory calls."""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy.engine import Connection

from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment
from lifelong.deploy.errors import DeployError
from lifelong.deploy.ops import PathArg, apply_retention, insert_samples, sample_rows
from lifelong.deploy.schema import check_batch, check_features


class Prediction(NamedTuple):
    classes: np.ndarray  # class ids, one per row
    version: str  # the production version that predicted them
    ids: list[int] = []  # the recorded samples' ids (empty when not recorded)


def record_predictions(
    dep: Deployment,
    conn: Connection,
    x: Any,
    classes: Any,
    version: str,
    subject: Any = None,
    task: Any = None,
    now: float | None = None,
) -> list[int]:
    """Store predicted inputs `x` (checked against the schema: `DeployError` for a bad
    batch) as unlabelled samples and their predictions, in the caller's transaction
    (`with store.transaction(dep.engine) as conn:`); the new ids (= prediction ids).
    Retention applies (rows deleted; bytes compacted at the next ingest/expire/forget)."""
    now = time.time() if now is None else now
    shape = store.get_setting(conn, "input_shape")
    batch = check_batch(x, None, subject, task, shape=shape)
    predicted = [int(c) for c in np.asarray(classes).reshape(-1).tolist()]
    if len(predicted) != len(batch.x):
        raise DeployError(f"{len(batch.x)} inputs but {len(predicted)} predicted classes")
    if shape is None:
        store.put_setting(conn, "input_shape", list(batch.x.shape[1:]))
    ids = insert_samples(conn, sample_rows(conn, batch, now, labelled=False))
    conn.execute(
        store.predictions.insert(),
        [
            {"sample_id": i, "version": version, "predicted": c, "at": now}
            for i, c in zip(ids, predicted)
        ],
    )
    apply_retention(dep, conn, now)
    return ids


def predict(
    path: PathArg,
    x: Any,
    *,
    subject: Any = None,
    task: Any = None,
    columns: list[str] | None = None,
    now: float | None = None,
    record: bool = True,
) -> Prediction:
    """Class ids for `x`, predicted by the production version; with `record` (default)
    the inputs and predictions are stored and their ids returned (`Prediction.ids`)."""
    with Deployment(path) as dep:
        with dep.engine.connect() as conn:
            version = dep.alias(conn, "production")
            if version is None:
                raise DeployError("no production version yet: ingest labelled data and update")
            learner = dep.load_learner(conn, version)
            names = learner.feature_names or store.get_setting(conn, "feature_names")
        xs = check_features(x, learner.input_shape, columns, names)
        classes = learner.predict(xs, task=task).numpy()
        ids: list[int] = []
        if record:
            with store.transaction(dep.engine) as conn:
                ids = record_predictions(dep, conn, xs, classes, version, subject, task, now)
    return Prediction(classes, version, ids)
