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
from lifelong.spec import parse_one, split_top_level


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


def keeps_past_data(row: dict[str, Any]) -> bool:
    """Whether a strategy of the run keeps all past data (cumulative, joint): its memory is
    the whole stream, not a buffer of `mem_size` samples."""
    from lifelong.strategies.registry import registry

    reg = registry()
    try:
        names = [parse_one(part)[0] for part in split_top_level(str(row.get("strategy")), "+")]
    except ValueError:
        return False
    return any(getattr(reg.get(name), "uses_past_data", False) for name in names)


# -- figures ---------------------------------------------------------------------------------
#: Figures are drawn at the size they are shown: the report's column is about 1080 pixels
#: wide, a half-width figure about 530, at `DPI` pixels per inch.
DPI = 110
FULL_WIDTH, HALF_WIDTH = 9.8, 4.8


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _colors(section: Section) -> dict[str, Any]:
    cmap = _pyplot().get_cmap("tab10" if len(section.groups) <= 10 else "tab20")
    return {s: cmap(i % cmap.N) for i, s in enumerate(section.groups)}


def _legend_below(ax: Any, n: int) -> None:
    """The legend under the axes, where it covers nothing."""
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncol=1 if n < 2 else 2,
        fontsize=8,
        frameon=False,
    )


def heatmaps(section: Section) -> Figure | None:
    """The mean accuracy matrix of each strategy, one annotated heatmap each; experiences
    are numbered from 1 (the first one trained)."""
    import textwrap

    mats = {s: m for s in section.groups if (m := mean_matrix(section.ok(s)))}
    if not mats:
        return None
    plt = _pyplot()
    n = len(mats)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    T = max(len(m) for m in mats.values())
    panel = min(3.4, (FULL_WIDTH - 1.2) / cols - 0.7)  # inches per (square) panel
    fontsize = min(12.0, 20.0 * panel / T)  # numbers sized to their cells
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(cols * (panel + 0.7) + 1.2, rows * (panel + 0.9)),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    for k, (ax, (strat, R)) in enumerate(zip(axes.flat, mats.items())):
        im = ax.imshow(R, vmin=0.0, vmax=1.0, cmap="viridis")
        if fontsize >= 6:
            for i, acc_row in enumerate(R):
                for j, v in enumerate(acc_row):
                    color = "black" if v > 0.6 else "white"
                    ax.text(
                        j, i, f"{v:.2f}", ha="center", va="center", color=color, fontsize=fontsize
                    )
        ax.set_title(textwrap.fill(strat, int(panel * 11)), fontsize=10)
        ticks = list(range(len(R)))
        ax.set_xticks(ticks, [str(t + 1) for t in ticks])
        ax.set_yticks(ticks, [str(t + 1) for t in ticks])
        if k + cols >= n:
            ax.set_xlabel("tested on experience")
        if k % cols == 0:
            ax.set_ylabel("after training on experience")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="accuracy")
    caption = (
        "Row i, column j: accuracy on experience j's test set after training on experiences "
        "1 to i (experiences numbered from 1, in training order)."
    )
    return Figure("heatmaps", "Accuracy matrices", caption, _png(fig), wide=True)


def accuracy_curves(section: Section) -> Figure | None:
    """Average accuracy on the experiences seen so far, after each experience (± std)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(HALF_WIDTH, 3.4))
    drawn = 0
    T = 0
    for strat, color in _colors(section).items():
        curves = [metrics.accuracy_curve(r["accuracy_matrix"]) for r in section.ok(strat)]
        if not curves:
            continue
        T = max(T, len(curves[0]))
        stats = [metrics.mean_std([c[i] for c in curves]) for i in range(len(curves[0]))]
        mean = [m or 0.0 for m, _ in stats]
        std = [s or 0.0 for _, s in stats]
        xs = list(range(1, len(mean) + 1))
        ax.plot(xs, mean, marker="o", color=color, label=strat)
        lo = [m - s for m, s in zip(mean, std)]
        hi = [m + s for m, s in zip(mean, std)]
        ax.fill_between(xs, lo, hi, color=color, alpha=0.15)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("experiences trained")
    ax.set_ylabel("accuracy on seen experiences")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(range(1, T + 1))
    ax.grid(alpha=0.3)
    _legend_below(ax, drawn)
    caption = (
        "After experience i (numbered from 1): mean accuracy on experiences 1 to i "
        "(band: ± std over seeds)."
    )
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
    fig, ax = plt.subplots(figsize=(HALF_WIDTH, 3.4))
    for k, (strat, vals) in enumerate(data.items()):
        xs = [j + (k - (len(data) - 1) / 2) * width for j in range(len(vals))]
        ax.bar(xs, vals, width=width, color=colors[strat], label=strat)
    ax.set_xticks(range(n_exp), [str(j + 1) for j in range(n_exp)])
    ax.set_xlabel("experience")
    ax.set_ylabel("forgetting")
    ax.axhline(0, color="#555", lw=0.8)
    ax.grid(axis="y", alpha=0.3)
    _legend_below(ax, len(data))
    caption = (
        "How much of experience j (numbered from 1) is forgotten by the end: its best "
        "earlier accuracy minus its final one (lower is better; the last experience is "
        "left out, nothing was trained after it)."
    )
    return Figure("forgetting", "Forgetting per experience", caption, _png(fig))


CostPoint = tuple[str, tuple[float, float], tuple[float, float], float | None]


def _cost_points(section: Section) -> list[CostPoint]:
    """Per strategy: label, accuracy and train seconds (mean, std), and buffer size (0
    without a buffer, None when it keeps all past data)."""
    points = []
    for strat in section.groups:
        ok = section.ok(strat)
        acc = metrics.mean_std([r["final_average_accuracy"] for r in ok])
        secs = metrics.mean_std([r.get("train_seconds") for r in ok])
        if acc[0] is None or secs[0] is None:
            continue
        buffer = None if keeps_past_data(ok[0]) else mem_size(ok[0])
        points.append((strat, (acc[0], acc[1] or 0.0), (secs[0], secs[1] or 0.0), buffer))
    return points


def _label_points(ax: Any, xs: list[float], ys: list[float], labels: list[str]) -> None:
    """Write each point's label next to it, moved apart until none overlap (adjustText),
    with a thin line back to its point; points drawn on top of each other (within 1% of
    the axes) share one label, `a, b`."""
    from adjustText import adjust_text

    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    spots: dict[tuple[int, int], tuple[float, float, list[str]]] = {}
    for x, y, text in zip(xs, ys, labels):
        cell = (round(100 * (x - x0) / ((x1 - x0) or 1)), round(100 * (y - y0) / ((y1 - y0) or 1)))
        spots.setdefault(cell, (x, y, []))[2].append(text)
    texts = [ax.text(x, y, ", ".join(names), fontsize=8) for x, y, names in spots.values()]
    arrow = {"arrowstyle": "-", "color": "#777", "lw": 0.6}
    adjust_text(texts, x=xs, y=ys, ax=ax, arrowprops=arrow, expand=(1.2, 1.4))


def cost_tradeoff(section: Section) -> Figure | None:
    """Final accuracy against training seconds, and against buffer size where one exists."""
    points = _cost_points(section)
    if not points:
        return None
    colors = _colors(section)
    with_mem = any(p[3] for p in points)
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, 2 if with_mem else 1, figsize=(FULL_WIDTH, 4.4) if with_mem else (6.4, 4.4)
    )
    axes = list(axes) if with_mem else [axes]
    for strat, (am, asd), (sm, ssd), _ in points:
        axes[0].errorbar(sm, am, xerr=ssd, yerr=asd, fmt="o", color=colors[strat], capsize=3)
    axes[0].set_xlabel("training time per run (s)")
    panels = [
        (axes[0], [p[2][0] for p in points], [p[1][0] for p in points], [p[0] for p in points])
    ]
    if with_mem:
        buffered = [p for p in points if p[3] is not None]
        for strat, (am, asd), _, buffer in buffered:
            axes[1].errorbar(
                buffer, am, yerr=asd, fmt="s", color=colors[strat], capsize=3, clip_on=False
            )
        _buffer_axis(axes[1], [float(p[3] or 0.0) for p in buffered])
        panels.append(
            (
                axes[1],
                [float(p[3] or 0.0) for p in buffered],
                [p[1][0] for p in buffered],
                [p[0] for p in buffered],
            )
        )
    for ax in axes:
        ax.set_ylabel("final average accuracy")
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.15)
    left = axes[0].get_xlim()[0]
    axes[0].set_xlim(left=max(0.0, left))
    fig.tight_layout()
    for ax, xs, ys, labels in panels:
        _label_points(ax, xs, ys, labels)
    kept = [p[0] for p in points if p[3] is None]
    caption = "Up and to the left is better: accuracy bought per second" + (
        " and per stored sample." if with_mem else "."
    )
    if with_mem and kept:
        caption += f" Not in the buffer panel (they keep all past data): {', '.join(kept)}."
    return Figure("cost", "Accuracy against cost", caption, _png(fig), wide=with_mem)


def _buffer_axis(ax: Any, sizes: list[float]) -> None:
    """The buffer-size axis from 0 (no buffer) to past the largest buffer, ticked at the
    sizes the sweep used (when few)."""
    top = max(sizes) or 1.0
    ax.set_xlim(-0.03 * top, top * 1.15)
    distinct = sorted(set(sizes))
    if len(distinct) <= 8:
        ax.set_xticks(distinct, [f"{v:g}" for v in distinct])
    ax.set_xlabel("replay buffer size (samples; 0 = no buffer)")


def build_figures(section: Section) -> list[Figure]:
    """Every figure of a section (those without data are left out)."""
    makers = (heatmaps, accuracy_curves, forgetting_bars, cost_tradeoff)
    return [f for f in (make(section) for make in makers) if f is not None]
