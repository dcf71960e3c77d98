"""What learning returns: `Result` (a pass over a stream) and `LearnSummary` (one batch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lifelong import metrics


@dataclass
class Result:
    """Where a pass over a stream stands: the next experience to train, the accuracy rows
    so far (`matrix[i][j]`: accuracy on experience j after training on i), the untrained
    model's row (`baseline`) and the seconds spent so far. Metrics are computed from them."""

    next_experience: int = 0
    matrix: list[list[float]] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    wall_seconds: float = 0.0

    def metrics(self) -> dict[str, float | None]:
        """Final average accuracy, average forgetting, backward and forward transfer."""
        m = self.matrix
        return {
            "final_average_accuracy": metrics.final_average_accuracy(m),
            "average_forgetting": metrics.average_forgetting(m),
            "backward_transfer": metrics.backward_transfer(m),
            "forward_transfer": metrics.forward_transfer(m, self.baseline),
        }


@dataclass(frozen=True)
class LearnSummary:
    """What one `learn` call did."""

    experience: int
    samples: int
    seconds: float
    classes: tuple[int, ...]
    new_classes: tuple[int, ...]
