"""Continual-learning metrics: pure functions of the accuracy matrix.

`R[i][j]` is the accuracy on experience j's test set after training on experience i;
there are T experiences. No function here touches a model or a tensor.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

Matrix = Sequence[Sequence[float]]

#: The figures of a `results.json` row (docs/architecture.md): metrics of the matrix, then costs.
ROW_FIGURES = (
    "final_average_accuracy",
    "average_forgetting",
    "backward_transfer",
    "forward_transfer",
    "train_seconds",
    "eval_seconds",
    "wall_seconds",
    "peak_memory_mb",
)


def _check(R: Matrix) -> int:
    T = len(R)
    if T == 0 or any(len(row) != T for row in R):
        raise ValueError(f"the accuracy matrix must be square and non-empty, got {T} rows")
    return T


def final_average_accuracy(R: Matrix) -> float:
    """Mean of the last row: `mean_j R[T-1][j]`."""
    T = _check(R)
    return sum(R[T - 1]) / T


def average_forgetting(R: Matrix) -> float | None:
    """Chaudhry et al. 2018: `mean_{j<T-1} (max_{l<T-1} R[l][j] - R[T-1][j])`; None if T=1."""
    T = _check(R)
    if T < 2:
        return None
    return sum(max(R[l][j] for l in range(T - 1)) - R[T - 1][j] for j in range(T - 1)) / (T - 1)


def backward_transfer(R: Matrix) -> float | None:
    """Lopez-Paz & Ranzato 2017: `mean_{j<T-1} (R[T-1][j] - R[j][j])`; None if T=1."""
    T = _check(R)
    if T < 2:
        return None
    return sum(R[T - 1][j] - R[j][j] for j in range(T - 1)) / (T - 1)


def forward_transfer(R: Matrix, baseline: Sequence[float] | None) -> float | None:
    """Lopez-Paz & Ranzato 2017: `mean_{j>0} (R[j-1][j] - b_j)`, `b_j` the accuracy of the
    untrained model on experience j; None when `baseline` was not measured or T=1."""
    T = _check(R)
    if baseline is None or T < 2:
        return None
    if len(baseline) != T:
        raise ValueError(f"baseline needs one accuracy per experience ({T}), got {len(baseline)}")
    return sum(R[j - 1][j] - baseline[j] for j in range(1, T)) / (T - 1)


def accuracy_curve(R: Matrix) -> list[float]:
    """Average accuracy over the experiences seen so far, after each experience."""
    T = _check(R)
    return [sum(R[i][: i + 1]) / (i + 1) for i in range(T)]


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value), ignoring None."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0
