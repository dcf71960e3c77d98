"""Errors of deployments: `ValueError`s, so the command line reports them plainly."""

from __future__ import annotations


class DeployError(ValueError):
    """A refused deployment operation (bad data, unknown version, nothing to do)."""


class UpdateRunning(DeployError):
    """Another update of the same deployment holds the update lock."""
