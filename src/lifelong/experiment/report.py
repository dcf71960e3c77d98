"""`lifelong report DIR`: a report people read at a glance, from a sweep's `results.json`.

Writes `DIR/report.html` (self-contained: inline CSS, figures embedded as base64 PNG data
URIs) and `DIR/report.md` (figures saved under `DIR/report_files/`). For each benchmark and
scenario of the sweep: the comparison table (mean ± std over seeds, the best value of each
column highlighted), the accuracy matrix of each strategy as an annotated heatmap (mean
over seeds), the average accuracy on the experiences seen so far after each experience,
the forgetting of each experience, and accuracy against cost (training seconds, and the
replay buffer size where a strategy has `mem_size`). Rows are named by their label
(`lifelong.experiment.labels`: every parameter the sweep varied is shown) and experiences
are numbered from 1. The figures are drawn by `lifelong.experiment.report_plots`
(matplotlib's Agg backend, labels placed with adjustText).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import time
from pathlib import Path
from typing import Any

from lifelong import metrics
from lifelong.experiment.labels import row_labels
from lifelong.experiment.report_plots import Figure, Section, build_figures
from lifelong.experiment.table import COLUMNS

#: the table's header row
TITLES = ("strategy", "seeds", *(c[1] for c in COLUMNS))
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
    """Group rows by benchmark and scenario, then by label (the strategy spec with every
    parameter the sweep varied, `lifelong.experiment.labels`), in order of appearance."""
    out: dict[tuple[str, str], Section] = {}
    for r, name in zip(rows, row_labels(rows)):
        key = (str(r.get("benchmark")), str(r.get("scenario")))
        sec = out.setdefault(key, Section(*key))
        sec.groups.setdefault(name, []).append(r)
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
    fmt = COLUMNS[c][3]
    return f"{fmt.format(mean)} ± {fmt.format(std or 0.0).lstrip('+')}"


def table_rows(section: Section) -> list[tuple[str, str, list[tuple[str, bool]]]]:
    """The comparison table as text, for both renderers: per strategy its name, `ok/total`
    seeds and each column's `mean ± std`, with whether it is the column's best mean."""
    table = summary(section)
    best = best_values(table)
    out = []
    for strat, seeds, stats in table:
        cells = enumerate(stats)
        texts = [(cell_text(c, m, s), m is not None and m == best[c]) for c, (m, s) in cells]
        out.append((strat, seeds, texts))
    return out


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
        out.append(f"<h2>{esc(sec.benchmark)} · {esc(sec.scenario)}-incremental</h2>")
        head = "".join(f"<th>{esc(t)}</th>" for t in TITLES)
        out.append(f"<table><thead><tr>{head}</tr></thead><tbody>")
        for strat, seeds, texts in table_rows(sec):
            cells = [f"<td>{esc(strat)}</td>", f"<td>{seeds}</td>"]
            for text, is_best in texts:
                cls = ' class="best"' if is_best else ""
                cells.append(f"<td{cls}>{esc(text)}</td>")
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
        out += [f"## {sec.benchmark} · {sec.scenario}-incremental", ""]
        out += ["| " + " | ".join(TITLES) + " |", "|---|---|" + "---:|" * len(COLUMNS)]
        for strat, seeds, texts in table_rows(sec):
            cells = [_md_escape(strat), seeds]
            cells += [f"**{text}**" if is_best else text for text, is_best in texts]
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
    if (folder / "simulation.json").is_file() and not (folder / "results.json").is_file():
        from lifelong.simulate.report import write_report as write_simulation_report

        return write_simulation_report(folder)  # a `lifelong simulate` folder
    header, rows = load_results(folder)
    if not rows:
        raise ValueError(f"{folder / 'results.json'} has no runs to report")
    secs = sections(rows)
    try:
        for sec in secs:
            sec.figures = build_figures(sec)
    except ModuleNotFoundError as e:
        raise ValueError(
            f"the report's figures need the package {e.name!r}: pip install 'lifelong[report]'"
        ) from e
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
