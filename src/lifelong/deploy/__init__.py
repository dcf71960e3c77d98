"""Deployments: keep a deployed model learning. A deployment is a folder (its model
versions, each a saved `Learner`) plus a database (samples, versions, aliases, audit log).

    from lifelong import deploy
    deploy.create("dep", from_run="runs/first/<run>", policy="triggered")  # v1.0, production
    deploy.ingest("dep", x, y, subject="patient-17")     # checked whole, stored in one go
    p = deploy.predict("dep", x_new)                     # (classes, "v1.0", sample ids)
    deploy.label("dep", p.ids, true_labels)              # labels that arrive later
    deploy.update("dep")                                 # the policy decides; gate -> v1.1
    deploy.rollback("dep"); deploy.status("dep"); deploy.forget("dep", "patient-17")

Heavy parts (SQLAlchemy, torch) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lifelong.deploy.erase import forget
    from lifelong.deploy.errors import DeployError, UpdateRunning
    from lifelong.deploy.ops import create, expire, ingest, label, promote, rollback
    from lifelong.deploy.overview import status
    from lifelong.deploy.serving import Prediction, predict, record_predictions
    from lifelong.deploy.stateful import update

_LAZY = {
    "DeployError": "lifelong.deploy.errors",
    "UpdateRunning": "lifelong.deploy.errors",
    "Prediction": "lifelong.deploy.serving",
    "create": "lifelong.deploy.ops",
    "expire": "lifelong.deploy.ops",
    "forget": "lifelong.deploy.erase",
    "ingest": "lifelong.deploy.ops",
    "label": "lifelong.deploy.ops",
    "predict": "lifelong.deploy.serving",
    "promote": "lifelong.deploy.ops",
    "record_predictions": "lifelong.deploy.serving",
    "rollback": "lifelong.deploy.ops",
    "status": "lifelong.deploy.overview",
    "update": "lifelong.deploy.stateful",
}

__all__ = [
    "DeployError",
    "UpdateRunning",
    "Prediction",
    "create",
    "expire",
    "forget",
    "ingest",
    "label",
    "predict",
    "promote",
    "record_predictions",
    "rollback",
    "status",
    "update",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lifelong.deploy' has no attribute {name!r}")
