"""`SimulationSettings`: how a simulation drives every policy's deployment, one object.

`simulate(...)` takes these as keyword options (its public API), builds the settings once,
checks them against the stream, records them in `simulation.json` (`to_dict`, the
`settings` entry) and hands them to `engine.run_policy` for each policy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class SimulationSettings:
    """The model and strategy each deployment starts with, the stream's pace (`warmup`
    labelled rows for v1.0, `batch_size` rows per batch, labels `label_delay` batches late,
    `seconds_per_batch` of simulated time per batch), how each update trains (`train`:
    `TrainConfig` fields), and `create`'s `retention` options and `gate` thresholds."""

    model: str = "mlp"
    strategy: str = "naive"
    warmup: int = 1000
    batch_size: int = 100
    label_delay: int = 1
    seconds_per_batch: float = 3600.0
    train: dict[str, Any] | None = None
    retention: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None

    def check(self, rows: int) -> None:
        """Refuse settings that a stream of `rows` rows cannot be replayed with."""
        if not 0 < self.warmup < rows:
            raise ValueError(
                f"warmup={self.warmup}: must be between 1 and the stream's {rows - 1} rows"
            )
        if self.batch_size < 1 or self.label_delay < 0:
            raise ValueError(
                f"batch_size={self.batch_size} must be >= 1, label_delay={self.label_delay} >= 0"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as `simulation.json` records them (field order, values as given)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
