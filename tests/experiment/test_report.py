"""`lifelong report`: tables, figures, self-contained HTML, and a real render in headless
Chromium (every image decodes; the screenshot is not blank)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lifelong.experiment.report import Section, best_values, summary, write_report
from lifelong.experiment.report_plots import forgetting_per_experience

STRATEGIES = ("naive", "replay(mem_size=40)")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep folder: 2 strategies x 2 seeds on the synthetic benchmark."""
    from lifelong.config import TrainConfig
    from lifelong.experiment.compare import provenance, run_all, write_results
    from lifelong.experiment.run import RunConfig

    configs = [
        RunConfig(
            benchmark="synthetic",
            scenario="class",
            strategy=s,
            seed=seed,
            train=TrainConfig(epochs=1),
        )
        for s in STRATEGIES
        for seed in (0, 1)
    ]
    rows = run_all(configs, isolate=False, quiet=True)
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    folder = tmp_path_factory.mktemp("sweep")
    write_results(folder, rows, provenance("cpu", 1))
    return folder


def row(strategy: str, acc: float, forgetting: float, secs: float) -> dict[str, Any]:
    return {
        "benchmark": "b",
        "scenario": "class",
        "strategy": strategy,
        "status": "ok",
        "final_average_accuracy": acc,
        "average_forgetting": forgetting,
        "backward_transfer": -forgetting,
        "forward_transfer": None,
        "train_seconds": secs,
        "peak_memory_mb": 100.0,
        "accuracy_matrix": [[1.0, 0.0], [0.5, 1.0]],
    }


def test_best_value_per_column_follows_its_direction() -> None:
    sec = Section("b", "class")
    sec.groups = {
        "a": [row("a", 0.9, 0.3, 5.0), row("a", 0.8, 0.1, 7.0)],
        "b": [row("b", 0.5, 0.05, 1.0)],
    }
    table = summary(sec)
    assert table[0][1] == "2/2" and table[0][2][0] == (
        pytest.approx(0.85),
        pytest.approx(0.0707, abs=1e-4),
    )
    best = best_values(table)
    assert best[0] == pytest.approx(0.85)  # highest accuracy
    assert best[1] == pytest.approx(0.05)  # lowest forgetting
    assert best[2] == pytest.approx(-0.05)  # highest BWT
    assert best[3] is None  # FWT not measured
    assert best[4] == pytest.approx(1.0)  # fewest seconds


def test_forgetting_per_experience() -> None:
    R = [[0.9, 0.0, 0.0], [0.6, 0.8, 0.0], [0.3, 0.7, 0.95]]
    assert forgetting_per_experience(R) == pytest.approx([0.6, 0.1])


def test_missing_results_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no results.json"):
        write_report(tmp_path)


def test_report_files(sweep: Path) -> None:
    from lifelong.cli import main

    assert main(["report", str(sweep)]) == 0
    page = (sweep / "report.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 4  # heatmaps, curves, forgetting, cost (with the buffer panel)
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in page and "<style>" in page  # self-contained
    for spec in STRATEGIES:
        assert f"<td>{spec}</td>" in page
    assert page.count('class="best"') >= 6
    md = (sweep / "report.md").read_text()
    links = re.findall(r"\]\((report_files/[^)]+\.png)\)", md)
    assert len(links) == 4 and all((sweep / link).stat().st_size > 1000 for link in links)
    rows = json.loads((sweep / "results.json").read_text())["runs"]
    acc = [r["final_average_accuracy"] for r in rows if r["strategy"] == "naive"]
    assert f"{sum(acc) / 2:.3f} ±" in md
    assert "| naive | 2/2 |" in md and md.count("**") >= 12


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed")
    return exe


def run_chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


CHECK = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "imgcheck";
  out.textContent = JSON.stringify([...document.images].map(
    i => [i.complete, i.naturalWidth, i.naturalHeight]));
  document.body.appendChild(out);
});
</script></body>"""


def test_report_renders_in_headless_chromium(sweep: Path, tmp_path: Path) -> None:
    import matplotlib.image

    write_report(sweep)
    page = (sweep / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", CHECK))
    dom = run_chromium(probe, tmp_path / "p1", "--virtual-time-budget=5000", "--dump-dom").stdout
    found = re.search(r'<pre id="imgcheck">(.*?)</pre>', dom)
    assert found, dom[-500:]
    images = json.loads(found.group(1))
    assert len(images) == 4
    assert all(ok and w > 100 and h > 100 for ok, w, h in images), images
    shot = tmp_path / "shot.png"
    run_chromium(
        sweep / "report.html", tmp_path / "p2", "--window-size=1280,1800", f"--screenshot={shot}"
    )
    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (1800, 1280)
    assert pixels.std() > 0.05  # not a blank page
    saturated = (pixels.max(axis=2) - pixels.min(axis=2)) > 0.3
    assert saturated.mean() > 0.01  # coloured figures are on screen, not just text


# -- the figures, read back from matplotlib (issue 14: overlaps, numbering, axes) -----------
def matrix(T: int, shift: float) -> list[list[float]]:
    return [[(0.9 - shift if j == i else 0.5 - shift) if j <= i else 0.0 for j in range(T)]
            for i in range(T)]  # fmt: skip


def sweep_row(strategy: str, acc: float, secs: float, params: dict[str, Any]) -> dict[str, Any]:
    return {
        **row(strategy, acc, 0.2, secs),
        "accuracy_matrix": matrix(5, acc / 10),
        "params": {"lr": 0.01, **params},
    }


#: ten strategies, several drawn almost on top of each other (as ewc with lambda 10 and 100)
CROWD = [
    sweep_row("naive", 0.44, 0.10, {}),
    sweep_row("lwf", 0.44, 0.10, {"lwf.alpha": 1.0}),
    sweep_row("replay(mem_size=200)", 0.40, 0.10, {"replay.mem_size": 200}),
    sweep_row("replay", 0.41, 0.10, {"replay.mem_size": 500}),
    sweep_row("ewc(lambda=10.0)", 0.29, 0.10, {"ewc.lambda": 10.0}),
    sweep_row("ewc(lambda=100.0)", 0.30, 0.10, {"ewc.lambda": 100.0}),
    sweep_row("si", 0.31, 0.10, {"si.c": 0.1}),
    sweep_row("agem", 0.64, 0.20, {"agem.mem_size": 500}),
    sweep_row("derpp", 0.27, 0.20, {"derpp.mem_size": 500}),
    sweep_row("cumulative", 0.81, 0.13, {}),
]


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Draw a section's figures, keeping the matplotlib figures instead of their PNG."""
    import matplotlib.pyplot as plt

    from lifelong.experiment import report_plots
    from lifelong.experiment.report import sections

    kept: list[Any] = []

    def keep(fig: Any) -> bytes:
        fig.canvas.draw()
        kept.append(fig)
        return b"png"

    monkeypatch.setattr(report_plots, "_png", keep)

    def draw(rows: list[dict[str, Any]], *makers: str) -> dict[str, Any]:
        figures = {}
        for maker in makers:
            assert getattr(report_plots, maker)(sections(rows)[0]) is not None, maker
            figures[maker] = kept[-1]
        return figures

    yield draw
    plt.close("all")


def tick_texts(axis: Any) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]


def test_experiences_are_numbered_from_one_in_every_figure(drawn: Any) -> None:
    figs = drawn(CROWD[:2], "heatmaps", "accuracy_curves", "forgetting_bars")
    heat = figs["heatmaps"].axes[0]
    assert tick_texts(heat.xaxis) == ["1", "2", "3", "4", "5"]
    assert tick_texts(heat.yaxis) == ["1", "2", "3", "4", "5"]
    assert tick_texts(figs["accuracy_curves"].axes[0].xaxis) == ["1", "2", "3", "4", "5"]
    # the last experience cannot be forgotten: bars for experiences 1 to 4
    assert tick_texts(figs["forgetting_bars"].axes[0].xaxis) == ["1", "2", "3", "4"]


def test_heatmap_numbers_are_readable_with_two_strategies(drawn: Any) -> None:
    heat = drawn(CROWD[:2], "heatmaps")["heatmaps"]
    sizes = {t.get_fontsize() for ax in heat.axes for t in ax.texts}
    assert sizes and min(sizes) >= 10  # points, at the size the figure is shown


def overlaps(a: Any, b: Any) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_legends_cover_no_bars_or_lines(drawn: Any) -> None:
    figs = drawn(CROWD, "forgetting_bars", "accuracy_curves")
    for name in ("forgetting_bars", "accuracy_curves"):
        fig = figs[name]
        ax = fig.axes[0]
        renderer = fig.canvas.get_renderer()
        legend = ax.get_legend().get_window_extent(renderer)
        assert not overlaps(legend, ax.get_window_extent(renderer)), name


def test_cost_labels_do_not_overlap_and_buffer_axis_starts_at_zero(drawn: Any) -> None:
    fig = drawn(CROWD, "cost_tradeoff")["cost_tradeoff"]
    renderer = fig.canvas.get_renderer()
    time_ax, buffer_ax = fig.axes
    for ax in (time_ax, buffer_ax):
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert len(boxes) >= 8
        clashes = [
            (i, j) for i in range(len(boxes)) for j in range(i) if overlaps(boxes[i], boxes[j])
        ]
        assert not clashes, [(ax.texts[i].get_text(), ax.texts[j].get_text()) for i, j in clashes]
    texts = {t.get_text() for t in buffer_ax.texts}
    assert "naive, lwf" in texts  # one label for points drawn on the same spot
    assert "replay(mem_size=200)" in texts and "replay(mem_size=500)" in texts
    assert not any("cumulative" in t for t in texts)  # keeps all data: no buffer size
    left, right = buffer_ax.get_xlim()
    assert -0.05 * right <= left <= 0
    assert all(float(t) >= 0 for t in tick_texts(buffer_ax.xaxis))
    assert time_ax.get_xlim()[0] >= 0


def test_sweep_rows_show_the_values_that_vary() -> None:
    from lifelong.experiment.report import render_html, render_markdown, sections

    rows = [dict(r, seed=s) for r in CROWD for s in (0, 1)]
    secs = sections(rows)  # the figures are tested above
    page = render_html({}, rows, secs)
    assert "<td>replay(mem_size=200)</td>" in page and "<td>replay(mem_size=500)</td>" in page
    assert "<td>ewc(lambda=10.0)</td>" in page and "<td>ewc(lambda=100.0)</td>" in page
    assert "<td>naive</td>" in page and "<td>replay</td>" not in page
    assert "| replay(mem_size=500) | 2/2 |" in render_markdown({}, rows, secs, "files")
    assert [r["strategy"] for r in rows][4:8:2] == ["replay(mem_size=200)", "replay"]  # kept
