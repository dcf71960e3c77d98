"""The simulation's table (text, Markdown, HTML) and its report files:
`DIR/report.html` (the plot embedded) and `DIR/report.md` (the plot beside it).
`lifelong report DIR` writes them when DIR holds a `simulation.json`."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

HEADERS = ("policy", "accuracy", "after drift", "updates", "promoted", "train s",
           "retained", "alarms")  # fmt: skip


def load(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "simulation.json"
    if not path.is_file():
        raise ValueError(f"no simulation.json in {str(folder)!r}; run `lifelong simulate` first")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("kind") != "simulation":
        raise ValueError(f"{path} is not a lifelong simulation file")
    return data


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def table(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per policy: accuracy (%, prequential), accuracy after the first drift,
    updates made, promoted by the gate, training seconds, samples retained, alarm ticks."""
    rows: list[tuple[str, ...]] = []
    for label, r in result["policies"].items():
        after = list((r.get("accuracy_after_drift") or {}).values())
        rows.append((
            label, _pct(r["accuracy"]), _pct(after[0] if after else None), str(r["updates"]),
            str(r["promoted"]), f"{r['train_seconds']:.2f}", str(r["samples_retained"]),
            str(r["alarm_ticks"]),
        ))  # fmt: skip
    return rows


def text_table(result: dict[str, Any]) -> str:
    rows = [HEADERS, *table(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths))) for r in rows]  # fmt: skip
    return "\n".join(lines)


def markdown_table(result: dict[str, Any]) -> str:
    rows = table(result)
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def _describe(result: dict[str, Any]) -> str:
    s, st = result["settings"], result["stream"]
    drifts = ", ".join(map(str, st["drifts"])) or "none"
    return (
        f"stream {st['name']} ({st['rows']} rows, drift at {drifts}); model {s['model']}, "
        f"strategy {s['strategy']}; warm-up {s['warmup']} rows, batches of {s['batch_size']}, "
        f"labels {s['label_delay']} batch(es) late. Accuracy: prequential (each batch predicted "
        "before anything learned from it), in %."
    )


def write_report(folder: str | Path) -> tuple[Path, Path]:
    """Write `folder/report.html` and `folder/report.md` for a simulation folder."""
    folder = Path(folder)
    result = load(folder)
    png = folder / "accuracy.png"
    if not png.is_file():
        from lifelong.simulate.plot import plot_simulation

        plot_simulation(result, png)
    title = f"Simulation: {result['stream']['name']}"
    md = [f"# {title}", "", _describe(result), "", markdown_table(result), "",
          f"![accuracy over time]({png.name})", ""]  # fmt: skip
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in table(result)
    )
    head = "".join(f"<th>{h}</th>" for h in HEADERS)
    img = base64.b64encode(png.read_bytes()).decode()
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:auto;padding:20px}"
        "table{border-collapse:collapse}th,td{padding:5px 10px;border-bottom:1px solid #ddd;"
        "text-align:right}td:first-child{text-align:left}img{max-width:100%}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(_describe(result))}</p>"
        f"<table><tr>{head}</tr>{rows}</table>"
        f"<figure><img alt='accuracy over time' src='data:image/png;base64,{img}'>"
        "<figcaption>Accuracy over time per policy; triangles mark updates, dashed lines the "
        "known drifts.</figcaption></figure></body></html>"
    )
    html_path, md_path = folder / "report.html", folder / "report.md"
    html_path.write_text(page, encoding="utf-8")
    md_path.write_text("\n".join(md), encoding="utf-8")
    return html_path, md_path
