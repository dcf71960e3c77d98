"""The figures of `lifelong report`, drawn with matplotlib's Agg backend as PNG bytes.

For one benchmark and scenario of a sweep (a `Section`): the
accuracy matrix of each strategy as an annotated heatmap (mean over seeds), the average
accuracy on the experiences seen so far after each experience, the forgetting of each
experience, and accuracy against cost (training seconds, and the replay buffer size where a
strategy has `mem_size`). matplotlib is imported on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lifelong import metrics


@dataclass
class Figure:
    """One rendered figure: a file-name slug, a title, a caption and PNG bytes."""

    slug: str
    title: str
    caption: str
    png: bytes
    wide: bool = False


@dataclass
class Section:
    """One benchmark and scenario of the sweep: its strategies' rows, grouped by spec."""

    benchmark: str
    scenario: str
    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)

    def ok(self, strategy: str) -> list[dict[str, Any]]:
        """The completed runs of `strategy`."""
        return [r for r in self.groups[strategy] if r.get("status") == "ok"]


def forgetting_per_experience(R: metrics.Matrix) -> list[float]:
    """For each experience j < T-1: `max_{l<T-1} R[l][j] - R[T-1][j]` (Chaudhry et al. 2018)."""
    T = len(R)
    return [max(R[l][j] for l in range(T - 1)) - R[T - 1][j] for j in range(T - 1)]


def mean_matrix(rows: list[dict[str, Any]]) -> list[list[float]] | None:
    """The element-wise mean of the runs' accuracy matrices (None without any)."""
    mats = [r["accuracy_matrix"] for r in rows if r.get("accuracy_matrix")]
    if not mats:
        return None
    T = len(mats[0])
    return [[sum(m[i][j] for m in mats) / len(mats) for j in range(T)] for i in range(T)]


def mem_size(row: dict[str, Any]) -> float:
    """Total replay buffer size of a run: the sum of its strategies' `mem_size` (0 if none)."""
    params = row.get("params") or {}
    return float(sum(v for k, v in params.items() if k.split(".")[-1] == "mem_size" and v))


def has_mem_size(row: dict[str, Any]) -> bool:
    """Whether any strategy of the run has a `mem_size` hyper-parameter."""
    return any(k.split(".")[-1] == "mem_size" for k in (row.get("params") or {}))


# -- figures ---------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _colors(section: Section) -> dict[str, Any]:
    cmap = _pyplot().get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(section.groups)}


def heatmaps(section: Section) -> Figure | None:
    """The mean accuracy matrix of each strategy, one annotated heatmap each."""
    mats = {s: m for s in section.groups if (m := mean_matrix(section.ok(s)))}
    if not mats:
        return None
    plt = _pyplot()
    n = len(mats)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    T = max(len(m) for m in mats.values())
    size = 1.0 + 0.55 * T
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(size * cols + 1.2, size * rows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    for k, (ax, (strat, R)) in enumerate(zip(axes.flat, mats.items())):
        im = ax.imshow(R, vmin=0.0, vmax=1.0, cmap="viridis")
        for i, acc_row in enumerate(R):
            for j, v in enumerate(acc_row):
                color = "black" if v > 0.6 else "white"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color=color, fontsize=8)
        ax.set_title(strat, fontsize=10)
        ax.set_xticks(range(len(R)))
        ax.set_yticks(range(len(R)))
        if k + cols >= n:
            ax.set_xlabel("tested on experience")
        if k % cols == 0:
            ax.set_ylabel("after training on")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="accuracy")
    caption = "R[i][j]: accuracy on experience j's test set after training on experience i."
    return Figure("heatmaps", "Accuracy matrices", caption, _png(fig), wide=n > 2)


def accuracy_curves(section: Section) -> Figure | None:
    """Average accuracy on the experiences seen so far, after each experience (± std)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    drawn = False
    for strat, color in _colors(section).items():
        curves = [metrics.accuracy_curve(r["accuracy_matrix"]) for r in section.ok(strat)]
        if not curves:
            continue
        T = len(curves[0])
        stats = [metrics.mean_std([c[i] for c in curves]) for i in range(T)]
        mean = [m or 0.0 for m, _ in stats]
        std = [s or 0.0 for _, s in stats]
        xs = list(range(1, T + 1))
        ax.plot(xs, mean, marker="o", color=color, label=strat)
        lo = [m - s for m, s in zip(mean, std)]
        hi = [m + s for m, s in zip(mean, std)]
        ax.fill_between(xs, lo, hi, color=color, alpha=0.15)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("experiences trained")
    ax.set_ylabel("average accuracy on seen experiences")
    ax.set_ylim(0, 1.02)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    caption = "After each experience: mean accuracy on the experiences seen so far (band: ± std)."
    return Figure("curves", "Accuracy after each experience", caption, _png(fig))


def forgetting_bars(section: Section) -> Figure | None:
    """Forgetting of each experience (all but the last), grouped by strategy."""
    data = {}
    for strat in section.groups:
        per_run = [forgetting_per_experience(r["accuracy_matrix"]) for r in section.ok(strat)]
        if per_run and per_run[0]:
            data[strat] = [sum(v) / len(v) for v in zip(*per_run)]
    if not data:
        return None
    plt = _pyplot()
    colors = _colors(section)
    n_exp = max(len(v) for v in data.values())
    width = 0.8 / len(data)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for k, (strat, vals) in enumerate(data.items()):
        xs = [j + (k - (len(data) - 1) / 2) * width for j in range(len(vals))]
        ax.bar(xs, vals, width=width, color=colors[strat], label=strat)
    ax.set_xticks(range(n_exp))
    ax.set_xlabel("experience")
    ax.set_ylabel("forgetting (best earlier − final accuracy)")
    ax.axhline(0, color="#555", lw=0.8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    caption = "How much of each experience is forgotten by the end (lower is better)."
    return Figure("forgetting", "Forgetting per experience", caption, _png(fig))


def cost_tradeoff(section: Section) -> Figure | None:
    """Final accuracy against training seconds, and against buffer size where one exists."""
    colors = _colors(section)
    points = []
    for strat in section.groups:
        ok = section.ok(strat)
        acc = metrics.mean_std([r["final_average_accuracy"] for r in ok])
        secs = metrics.mean_std([r.get("train_seconds") for r in ok])
        if acc[0] is None or secs[0] is None:
            continue
        buffer = mem_size(ok[0]) if any(has_mem_size(r) for r in ok) else None
        points.append((strat, acc, secs, buffer))
    if not points:
        return None
    with_mem = any(p[3] is not None for p in points)
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, 2 if with_mem else 1, figsize=(11 if with_mem else 6.4, 4), layout="constrained"
    )
    axes = list(axes) if with_mem else [axes]
    for strat, (am, asd), (sm, ssd), buffer in points:
        axes[0].errorbar(sm, am, xerr=ssd, yerr=asd, fmt="o", color=colors[strat], capsize=3)
        axes[0].annotate(strat, (sm, am), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if with_mem:
            x = buffer or 0.0
            axes[1].errorbar(x, am, yerr=asd, fmt="s", color=colors[strat], capsize=3)
            axes[1].annotate(strat, (x, am), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axes[0].set_xlabel("training time per run (s)")
    if with_mem:
        axes[1].set_xlabel("replay buffer size (samples; 0 = no buffer)")
    for ax in axes:
        ax.set_ylabel("final average accuracy")
        ax.grid(alpha=0.3)
        ax.margins(x=0.25, y=0.2)
    caption = "Up and to the left is better: accuracy bought per second" + (
        " and per stored sample." if with_mem else "."
    )
    return Figure("cost", "Accuracy against cost", caption, _png(fig), wide=with_mem)


def build_figures(section: Section) -> list[Figure]:
    """Every figure of a section (those without data are left out)."""
    makers = (heatmaps, accuracy_curves, forgetting_bars, cost_tradeoff)
    return [f for f in (make(section) for make in makers) if f is not None]
