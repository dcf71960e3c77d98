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
