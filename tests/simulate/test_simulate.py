"""`lifelong simulate`: streams, the detection scoring, and a small real simulation
(SQLite deployments driven through `lifelong.deploy`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lifelong.simulate import detection
from lifelong.simulate.streams import STREAMS, ProductionStream, make_stream


def test_streams_have_their_known_drifts() -> None:
    from lifelong.simulate.command import STREAM_NAMES

    assert tuple(STREAMS) == STREAM_NAMES  # the CLI's list (standard library) is the real one
    sea = make_stream("sea-abrupt", n=400, position=200)
    assert sea.x.shape == (400, 3) and sea.x.dtype == np.float32 and sea.drifts == (200,)
    assert set(np.unique(sea.y)) == {0, 1}
    assert make_stream("sea-stable", n=100).drifts == ()
    agr = make_stream("agrawal-abrupt", n=300, position=150)
    assert agr.x.shape == (300, 9) and abs(float(agr.x[:150].mean())) < 0.5
    with pytest.raises(ValueError, match="unknown stream 'sea'"):
        make_stream("sea")
    with pytest.raises(ValueError, match="stream 'sea-stable'"):
        make_stream("sea-stable", position=3)


def test_mnist_rotation_moves_only_the_rows_after_the_drift() -> None:
    base = make_stream("mnist-stable", n=300)
    rot = make_stream("mnist-abrupt", n=300, position=200, angle=90)
    assert np.array_equal(base.x[:200], rot.x[:200]) and np.array_equal(base.y, rot.y)
    assert not np.allclose(base.x[200:], rot.x[200:])
    grow = make_stream("mnist-rotating", n=300, position=100, angle=60)
    assert np.array_equal(base.x[:100], grow.x[:100]) and grow.drifts == (100,)


def test_detection_score_counts_delays_and_false_alarms() -> None:
    s = ProductionStream("toy", np.zeros((3000, 1), np.float32), np.zeros(3000, np.int64), (2000,))
    out = detection.score(s, 1000, [1500, 2300, 2600])
    assert out["false_alarms"] == 1 and out["stable_rows"] == 1000
    assert out["false_per_10k"] == 10.0 and out["delays"] == [300] and out["missed"] == 0
    assert detection.score(s, 1000, [1200])["missed"] == 1
    correct = np.ones(2000, bool)
    assert detection.alarms(s, correct, 1000, "periodic", batch_size=100, period=500) == [
        1500, 2000, 2500, 3000,
    ]  # fmt: skip
    assert len(detection.alarms(s, correct, 1000, "always", batch_size=500)) == 4


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from lifelong.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    result = simulate(
        "sea-abrupt", out=out, stream_options={"n": 700, "position": 400}, warmup=200,
        batch_size=50, label_delay=2, model="mlp(hidden=(16,))",
        train={"epochs": 2, "lr": 0.05, "momentum": 0.9},
        policies=["manual", "scheduled", {"name": "stateful", "every_s": 3600.0},
                  {"name": "triggered", "cooldown_s": 0.0, "drift_alpha": 0.05}],
    )  # fmt: skip
    return out, result


def test_simulation_drives_real_deployments_prequentially(small_run: tuple[Path, dict]) -> None:
    from lifelong import deploy

    out, result = small_run
    assert set(result["policies"]) == {"manual", "scheduled", "stateful", "triggered"}
    for label, r in result["policies"].items():
        ticks = r["ticks"]
        assert len(ticks) == 10 and sum(t["n"] for t in ticks) == 500
        assert 0.0 <= r["accuracy"] <= 1.0
        st = deploy.status(out / "deployments" / label)
        created = {v["id"]: v["created_at"] for v in st["versions"]}
        for t in ticks:  # prequential: the version that predicted a batch predates it
            assert created[t["predicted_by"]] < t["now"]
        assert st["predictions"] == 500 and r["samples_retained"] == st["samples"]
    m = result["policies"]["manual"]
    assert m["updates"] == 0 and {t["predicted_by"] for t in m["ticks"]} == {"v1.0"}
    s = result["policies"]["stateful"]
    assert s["updates"] == 8 and s["modes"] == {"scratch": 0, "stateful": 8}  # 2 wait for labels
    assert result["policies"]["scheduled"]["modes"]["stateful"] == 0


def test_labels_arrive_late(small_run: tuple[Path, dict]) -> None:
    """label_delay=2: the last two batches' labels never arrive; the first tick's update
    has no new label to learn from, so stateful's first update is at the third tick."""
    from lifelong import deploy

    out, result = small_run
    st = deploy.status(out / "deployments" / "manual")
    assert st["pending_labelled"] == 500 - 2 * 50
    ticks = result["policies"]["triggered"]["ticks"]
    assert all(not t["ran"] for t in ticks[:2])


def test_results_file_plot_and_report(small_run: tuple[Path, dict]) -> None:
    from lifelong.cli import main

    out, result = small_run
    saved = json.loads((out / "simulation.json").read_text())
    assert saved["kind"] == "simulation" and saved["stream"]["drifts"] == [400]
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "triggered" in page
    assert "| stateful |" in (out / "report.md").read_text()


def test_cli_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    from lifelong.cli import main

    assert main(["simulate", "--stream", "sea-stable", "--drift-at", "10"]) == 2
    assert "has no drift" in capsys.readouterr().err
    assert main(["simulate", "--policy", "hourly", "--rows", "300", "--warmup", "100"]) == 2
    assert "unknown policy 'hourly'" in capsys.readouterr().err
