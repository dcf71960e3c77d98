"""The plain-text comparison table `lifelong compare` prints.

Mean ± std over seeds per benchmark, scenario and run label (`lifelong.experiment.labels`:
every hyper-parameter or training setting the sweep varied is shown in each row). The full
layout has a column for everything; when it is wider than the terminal, the compact layout
prints one heading per benchmark and scenario, short column titles, the means on the row
and the stds on a line below (only where some strategy has several seeds).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from lifelong import metrics
from lifelong.experiment.labels import row_labels

#: The columns of the comparison table, here and in the report: (row key, title, compact
#: title, number format, which is best: "max" or "min").
COLUMNS = (
    ("final_average_accuracy", "accuracy", "acc", "{:.3f}", "max"),
    ("average_forgetting", "forgetting", "forget", "{:.3f}", "min"),
    ("backward_transfer", "BWT", "BWT", "{:+.3f}", "max"),
    ("forward_transfer", "FWT", "FWT", "{:+.3f}", "max"),
    ("train_seconds", "train s", "train s", "{:.2f}", "min"),
    ("peak_memory_mb", "peak MB", "MB", "{:.0f}", "min"),
)
Groups = dict[tuple[str, str, str], list[dict[str, Any]]]
Stats = list[tuple[float | None, float | None]]


def terminal_width() -> int | None:
    """The width standard output is shown in: `COLUMNS` when set, the terminal's when it is
    one, else None (a file or a pipe: no limit)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def summary_table(rows: list[dict[str, Any]], width: int | None = None) -> str:
    """The comparison table as text; compact when the full one is wider than `width`."""
    groups: Groups = {}
    for r, name in zip(rows, row_labels(rows)):
        groups.setdefault((str(r["benchmark"]), str(r["scenario"]), name), []).append(r)
    stats = {key: _stats(rs) for key, rs in groups.items()}
    full = _full(groups, stats)
    if width is None or max(map(len, full.splitlines()), default=0) <= width:
        return full
    return _compact(groups, stats, width)


def _stats(rows: Sequence[dict[str, Any]]) -> Stats:
    ok = [r for r in rows if r.get("status") == "ok"]
    return [metrics.mean_std([r.get(key) for r in ok]) for key, *_ in COLUMNS]


def _ok(rows: Sequence[dict[str, Any]]) -> str:
    return f"{sum(r.get('status') == 'ok' for r in rows)}/{len(rows)}"


def _num(c: int, value: float | None) -> str:
    return "-" if value is None else COLUMNS[c][3].format(value)


def _full(groups: Groups, stats: dict[tuple[str, str, str], Stats]) -> str:
    head = ["benchmark", "scenario", "strategy", "seeds"] + [c[1] for c in COLUMNS]
    lines = []
    for (bench, scen, name), rs in groups.items():
        cells = [bench, scen, name, _ok(rs)]
        for c, (mean, std) in enumerate(stats[(bench, scen, name)]):
            spread = _num(c, std or 0.0).lstrip("+")
            cells.append("-" if mean is None else f"{_num(c, mean)} ± {spread}")
        lines.append(cells)
    return _layout(head, lines)


def _compact(groups: Groups, stats: dict[tuple[str, str, str], Stats], width: int) -> str:
    head = ["strategy", "seeds"] + [c[2] for c in COLUMNS]
    with_std = any(sum(r.get("status") == "ok" for r in rs) > 1 for rs in groups.values())
    blocks: dict[tuple[str, str], list[list[str]]] = {}
    for (bench, scen, name), rs in groups.items():
        means = stats[(bench, scen, name)]
        numbers = [[_ok(rs)] + [_num(c, m) for c, (m, _) in enumerate(means)]]
        if with_std:
            numbers.append([""] + [_spread(c, s) for c, (_, s) in enumerate(means)])
        blocks.setdefault((bench, scen), []).extend(_wrap_rows(name, numbers, width))
    note = "means; ± std over seeds on the line below" if with_std else "means"
    out = []
    for (bench, scen), lines in blocks.items():
        out += [f"{bench} · {scen} ({note})", _layout(head, lines, right_from=1), ""]
    return "\n".join(out).rstrip()


def _spread(c: int, std: float | None) -> str:
    return "" if std is None else f"±{_num(c, std).lstrip('+')}"


def _wrap_rows(name: str, numbers: list[list[str]], width: int) -> list[list[str]]:
    """A label and its lines of numbers; a label too long for what the numbers leave of
    `width` goes on over the next lines, broken after a `+` or a `,`."""
    room = width - sum(max(len(c), 7) + 2 for c in numbers[0])
    parts: list[str] = []
    for token in re.split(r"(?<=[+,])", name):
        if parts and len(parts[-1]) + len(token) <= max(room, 12):
            parts[-1] += token
        else:
            parts.append(token)
    blank = [""] * len(numbers[0])
    n = max(len(parts), len(numbers))
    return [
        [parts[k] if k < len(parts) else "", *(numbers[k] if k < len(numbers) else blank)]
        for k in range(n)
    ]


def _layout(head: list[str], lines: list[list[str]], right_from: int | None = None) -> str:
    """Columns padded to their widest cell; from column `right_from` on, right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    edge = len(widths) if right_from is None else right_from
    fmt_row = "  ".join(
        ("{:<%d}" if c < edge else "{:>%d}") % w for c, w in enumerate(widths)
    ).format
    sep = "  ".join("-" * w for w in widths)
    return "\n".join(r.rstrip() for r in [fmt_row(*head), sep] + [fmt_row(*c) for c in lines])
