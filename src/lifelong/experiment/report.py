"""`lifelong report DIR`: a report people read at a glance, from a sweep's `results.json`.

Writes `DIR/report.html` (self-contained: inline CSS, figures embedded as base64 PNG data
URIs) and `DIR/report.md` (figures saved under `DIR/report_files/`). For each benchmark and
scenario of the sweep: the comparison table (mean ± std over seeds, the best value of each
column highlighted), the accuracy matrix of each strategy as an annotated heatmap (mean
over seeds), the average accuracy on the experiences seen so far after each experience,
the forgetting of each experience, and accuracy against cost (training seconds, and the
replay buffer size where a strategy has `mem_size`). Figures use matplotlib's Agg backend.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifelong import metrics

#: (row key, column title, number format, which is best: "max" or "min")
COLUMNS = (
    ("final_average_accuracy", "accuracy", "{:.3f}", "max"),
    ("average_forgetting", "forgetting", "{:.3f}", "min"),
    ("backward_transfer", "BWT", "{:+.3f}", "max"),
    ("forward_transfer", "FWT", "{:+.3f}", "max"),
    ("train_seconds", "train s", "{:.2f}", "min"),
    ("peak_memory_mb", "peak MB", "{:.0f}", "min"),
)
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1150px;padding:24px;color:#1d2330;background:#fff;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:2px solid #e3e7ef;padding-bottom:.2em;
margin-top:1.8em}.meta{color:#5a6478;font-size:.92em}
table{border-collapse:collapse;margin:12px 0;font-size:.95em}
th,td{padding:6px 12px;border-bottom:1px solid #e3e7ef;text-align:right;white-space:nowrap}
th{background:#f3f5f9}td:first-child,th:first-child{text-align:left}
td.best{background:#d7f5dd;font-weight:700}.grid{display:flex;flex-wrap:wrap;gap:18px}
figure{margin:10px 0;flex:1 1 480px}figure.wide{flex-basis:100%}figure img{max-width:100%;height:auto;
border:1px solid #e3e7ef;border-radius:4px}figcaption{color:#5a6478;font-size:.9em}
.note{background:#f7f8fb;border-left:4px solid #9aa7c2;padding:8px 14px;font-size:.92em}
.failed{color:#b3261e}
"""
NOTE = (
    "accuracy: mean accuracy over all experiences after the last one; forgetting: mean drop "
    "from an experience's best earlier accuracy to its final one (lower is better); BWT/FWT: "
    "backward/forward transfer (Lopez-Paz & Ranzato 2017). Values are mean ± std over seeds; "
    "the best value of each column is highlighted."
)


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


def load_results(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read `folder/results.json`: its provenance header and its rows."""
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise ValueError(f"no results.json in {str(folder)!r}; run `lifelong compare` first")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ValueError(f"{path} is not a lifelong results file (no 'runs' list)")
    return {k: v for k, v in data.items() if k != "runs"}, data["runs"]


def sections(rows: list[dict[str, Any]]) -> list[Section]:
    """Group rows by benchmark and scenario, then by strategy, in order of appearance."""
    out: dict[tuple[str, str], Section] = {}
    for r in rows:
        key = (str(r.get("benchmark")), str(r.get("scenario")))
        sec = out.setdefault(key, Section(*key))
        sec.groups.setdefault(str(r.get("strategy")), []).append(r)
    return list(out.values())


def summary(section: Section) -> list[tuple[str, str, list[tuple[float | None, float | None]]]]:
    """Per strategy: its name, `ok/total` seeds, and (mean, std) of each column."""
    table = []
    for strat, rs in section.groups.items():
        ok = section.ok(strat)
        stats = [metrics.mean_std([r.get(key) for r in ok]) for key, *_ in COLUMNS]
        table.append((strat, f"{len(ok)}/{len(rs)}", stats))
    return table


def best_values(
    table: list[tuple[str, str, list[tuple[float | None, float | None]]]],
) -> list[float | None]:
    """The best mean of each column (highest or lowest, as the column says)."""
    best: list[float | None] = []
    for c, (*_, direction) in enumerate(COLUMNS):
        means = [m for _, _, stats in table if (m := stats[c][0]) is not None]
        best.append(None if not means else max(means) if direction == "max" else min(means))
    return best


def cell_text(c: int, mean: float | None, std: float | None) -> str:
    """`mean ± std` in the column's format, or `-` when not measured."""
    if mean is None:
        return "-"
    fmt = COLUMNS[c][2]
    return f"{fmt.format(mean)} ± {fmt.format(std or 0.0).lstrip('+')}"


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


# -- rendering -------------------------------------------------------------------------------
def _meta(header: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    keys = ("lifelong_version", "torch_version", "device", "threads", "git_commit")
    parts = [f"{k.replace('_', ' ')}: {header[k]}" for k in keys if header.get(k) is not None]
    ok = sum(r.get("status") == "ok" for r in rows)
    return f"{ok}/{len(rows)} runs completed · " + " · ".join(parts)


def _failed(section: Section) -> list[str]:
    return [
        f"{strat} seed={r.get('seed')}: {str(r.get('error') or '').splitlines()[0] if r.get('error') else 'failed'}"
        for strat, rs in section.groups.items()
        for r in rs
        if r.get("status") != "ok"
    ]


def render_html(header: dict[str, Any], rows: list[dict[str, Any]], secs: list[Section]) -> str:
    """The self-contained HTML page (figures as base64 data URIs, inline CSS)."""
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>lifelong report</title><style>{CSS}</style></head><body>",
        "<h1>Continual-learning report</h1>",
        f'<p class="meta">{esc(_meta(header, rows))} · generated {time.strftime("%Y-%m-%d %H:%M")}</p>',
        f'<p class="note">{esc(NOTE)}</p>',
    ]
    for sec in secs:
        table = summary(sec)
        best = best_values(table)
        out.append(f"<h2>{esc(sec.benchmark)} · {esc(sec.scenario)}-incremental</h2>")
        head = "".join(
            f"<th>{esc(t)}</th>" for t in ["strategy", "seeds"] + [c[1] for c in COLUMNS]
        )
        out.append(f"<table><thead><tr>{head}</tr></thead><tbody>")
        for strat, seeds, stats in table:
            cells = [f"<td>{esc(strat)}</td>", f"<td>{seeds}</td>"]
            for c, (m, s) in enumerate(stats):
                cls = ' class="best"' if m is not None and m == best[c] else ""
                cells.append(f"<td{cls}>{esc(cell_text(c, m, s))}</td>")
            out.append(f"<tr>{''.join(cells)}</tr>")
        out.append("</tbody></table>")
        failed = _failed(sec)
        if failed:
            items = "".join(f"<li>{esc(f)}</li>" for f in failed)
            out.append(f'<p class="failed">Failed runs:</p><ul class="failed">{items}</ul>')
        out.append('<div class="grid">')
        for fig in sec.figures:
            data = base64.b64encode(fig.png).decode()
            cls = ' class="wide"' if fig.wide else ""
            out.append(
                f'<figure{cls}><img src="data:image/png;base64,{data}" alt="{esc(fig.title)}">'
                f"<figcaption><b>{esc(fig.title)}.</b> {esc(fig.caption)}</figcaption></figure>"
            )
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(
    header: dict[str, Any], rows: list[dict[str, Any]], secs: list[Section], files: str
) -> str:
    """The Markdown report; figures are linked from the `files` folder (relative path)."""
    out = ["# Continual-learning report", "", _meta(header, rows), "", f"> {NOTE}", ""]
    for k, sec in enumerate(secs):
        table = summary(sec)
        best = best_values(table)
        out += [f"## {sec.benchmark} · {sec.scenario}-incremental", ""]
        titles = ["strategy", "seeds"] + [c[1] for c in COLUMNS]
        out += ["| " + " | ".join(titles) + " |", "|---|---|" + "---:|" * len(COLUMNS)]
        for strat, seeds, stats in table:
            cells = [_md_escape(strat), seeds]
            for c, (m, s) in enumerate(stats):
                text = cell_text(c, m, s)
                cells.append(f"**{text}**" if m is not None and m == best[c] else text)
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        failed = [f"- FAILED {_md_escape(f)}" for f in _failed(sec)]
        out += [*failed, ""] if failed else []
        for fig in sec.figures:
            out += [f"### {fig.title}", "", f"![{fig.title}]({files}/{_fig_name(k, fig)})", ""]
            out += [fig.caption, ""]
    return "\n".join(out)


def _fig_name(k: int, fig: Figure) -> str:
    return f"section{k + 1}-{fig.slug}.png"


def write_report(folder: str | Path) -> tuple[Path, Path]:
    """Write `folder/report.html` and `folder/report.md` (+ `report_files/`); return both paths."""
    folder = Path(folder)
    header, rows = load_results(folder)
    if not rows:
        raise ValueError(f"{folder / 'results.json'} has no runs to report")
    secs = sections(rows)
    for sec in secs:
        sec.figures = build_figures(sec)
    files = folder / "report_files"
    files.mkdir(exist_ok=True)
    for k, sec in enumerate(secs):
        for fig in sec.figures:
            (files / _fig_name(k, fig)).write_bytes(fig.png)
    html_path, md_path = folder / "report.html", folder / "report.md"
    html_path.write_text(render_html(header, rows, secs), encoding="utf-8")
    md_path.write_text(render_markdown(header, rows, secs, files.name), encoding="utf-8")
    return html_path, md_path


# -- command line ----------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `lifelong report`."""
    parser.add_argument("dir", metavar="DIR", help="a sweep folder holding results.json")


def main(args: argparse.Namespace) -> int:
    """`lifelong report DIR`: write the HTML and Markdown reports, print their paths."""
    html_path, md_path = write_report(args.dir)
    print(f"report: {html_path}\nreport: {md_path}")
    return 0
