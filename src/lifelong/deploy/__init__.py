"""Deployments: keep a deployed model learning. A deployment is a folder (its model
versions, each a saved `Learner`) plus a database (samples, versions, aliases, audit log).

    from lifelong import deploy
    deploy.create("dep", from_run="runs/first/<run>")   # the run's model: v1.0, production
    deploy.ingest("dep", x, y, subject="patient-17")     # checked whole, stored in one go
    deploy.predict("dep", x_new)                         # (classes, "v1.0")
    deploy.update("dep")                                 # stateful update + gate -> v1.1
    deploy.rollback("dep"); deploy.status("dep"); deploy.forget("dep", "patient-17")

Heavy parts (SQLAlchemy, torch) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lifelong.deploy.errors import DeployError, UpdateRunning
    from lifelong.deploy.ops import (
        Prediction,
        create,
        expire,
        forget,
        ingest,
        predict,
        promote,
        rollback,
        status,
    )
    from lifelong.deploy.stateful import update

_LAZY = {
    "DeployError": "lifelong.deploy.errors",
    "UpdateRunning": "lifelong.deploy.errors",
    "Prediction": "lifelong.deploy.ops",
    "create": "lifelong.deploy.ops",
    "expire": "lifelong.deploy.ops",
    "forget": "lifelong.deploy.ops",
    "ingest": "lifelong.deploy.ops",
    "predict": "lifelong.deploy.ops",
    "promote": "lifelong.deploy.ops",
    "rollback": "lifelong.deploy.ops",
    "status": "lifelong.deploy.ops",
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
    "predict",
    "promote",
    "rollback",
    "status",
    "update",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lifelong.deploy' has no attribute {name!r}")
