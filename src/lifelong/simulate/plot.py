"""The simulation plot: accuracy over time per policy, updates marked, drifts dashed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = [values[: i + 1].mean() for i in range(window - 1)]
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_simulation(result: dict[str, Any], path: str | Path, window: int = 3) -> Path:
    """Write the accuracy-over-time plot of a `simulate` result to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, res in result["policies"].items():
        ticks = res["ticks"]
        rows = np.array([t["end"] for t in ticks])
        acc = np.array([t["correct"] / max(1, t["n"]) for t in ticks])
        (line,) = ax.plot(rows, _smooth(acc, window), label=f"{name} ({res['updates']} updates)")
        up = [i for i, t in enumerate(ticks) if t["ran"]]
        ax.scatter(rows[up], _smooth(acc, window)[up], marker="^", s=28, color=line.get_color())
    for d in result["stream"]["drifts"]:
        ax.axvline(d, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("rows arrived")
    ax.set_ylabel(f"prequential accuracy (mean of {window} batches)")
    ax.set_title(f"{result['stream']['name']}: accuracy over time (triangles: updates)")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
