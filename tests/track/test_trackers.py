"""Each tracker logs a real results row; the test reads the run back from the tracker's own
store (MLflow's SQLite store, TensorBoard event files, Neptune's and W&B's offline files)
and compares it with the row. Nothing reaches the network."""

from __future__ import annotations

import importlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from lifelong.track import get_tracker, log_results
from lifelong.track.base import experience_metrics, final_metrics, param_value, run_params


def require(module: str) -> Any:
    """Import a tracker's package; skip when missing locally, fail in CI (which installs
    every extra, so a skip there would hide a missing install)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A results.json from two real runs on the synthetic benchmark, plus a failed row."""
    from lifelong.config import TrainConfig
    from lifelong.experiment.compare import failed_row, provenance, run_all, write_results
    from lifelong.experiment.run import RunConfig

    configs = [
        RunConfig(
            benchmark="synthetic",
            scenario="class",
            strategy="naive",
            seed=s,
            train=TrainConfig(epochs=1),
        )
        for s in (0, 1)
    ]
    rows = run_all(configs, isolate=False, quiet=True)
    rows.append(failed_row(RunConfig(benchmark="synthetic", strategy="naive"), "Boom: it broke"))
    folder = tmp_path_factory.mktemp("sweep")
    path = write_results(folder, rows, provenance("cpu", 1))
    return {"path": path, **json.loads(path.read_text())}


def header_of(results: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in results.items() if k not in ("runs", "path")}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network, no telemetry, nothing written outside tmp."""
    for key, value in {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp_path / "wandb-dir"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
        "NEPTUNE_MODE": "offline",
        "NEPTUNE_DATA_DIRECTORY": str(tmp_path / "neptune"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)


def test_unknown_tracker_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown tracker 'comet'.*mlflow"):
        get_tracker("comet")


def test_experience_metrics_follow_the_matrix() -> None:
    row = {"accuracy_matrix": [[0.9, 0.1], [0.5, 0.8]], "final_average_accuracy": 0.65}
    steps = experience_metrics(row)
    assert steps[0]["accuracy/seen_average"] == 0.9 and steps[1]["accuracy/current"] == 0.8
    assert steps[1]["accuracy/seen_average"] == pytest.approx(0.65)
    assert steps[0]["accuracy/experience_1"] == 0.1
    assert final_metrics(row) == {"final_average_accuracy": 0.65}
    assert param_value(None) == "None" and param_value([1, 2]) == "[1, 2]"


def test_mlflow_run_reads_back(results: dict[str, Any], tmp_path: Path, monkeypatch) -> None:
    mlflow = require("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_files = tmp_path / "run-files"
    run_files.mkdir()
    (run_files / "note.txt").write_text("checkpoint here")
    row, header = results["runs"][0], header_of(results)
    with get_tracker(
        "mlflow", tracking_uri=uri, experiment="t", artifact_location=str(tmp_path / "art")
    ) as tracker:
        tracker.log_run(row, header, run_dir=str(run_files))
        tracker.log_run(results["runs"][2], header)  # the failed row
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("t")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    df = mlflow.search_runs([exp.experiment_id])
    assert len(df) == 2 and sorted(df["status"]) == ["FAILED", "FINISHED"]
    done = client.get_run(tracker.run_ids[0])
    expected = {k: str(v) for k, v in run_params(row, header).items()}
    assert done.data.params == expected
    assert done.data.params["strategy"] == "naive" and done.data.params["seed"] == "0"
    assert done.data.params["provenance.torch_version"] == header["torch_version"]
    for key, value in final_metrics(row).items():
        assert done.data.metrics[key] == pytest.approx(value)
    R = row["accuracy_matrix"]
    hist = client.get_metric_history(done.info.run_id, "accuracy/current")
    assert [(m.step, m.value) for m in sorted(hist, key=lambda m: m.step)] == [
        (i, pytest.approx(R[i][i])) for i in range(len(R))
    ]
    arts = {a.path for a in client.list_artifacts(done.info.run_id)}
    assert {"accuracy_matrix.json", "accuracy_matrix.csv", "run_files"} <= arts
    local = client.download_artifacts(done.info.run_id, "accuracy_matrix.json", str(tmp_path))
    assert json.loads(Path(local).read_text())["accuracy_matrix"] == R
    failed = client.get_run(tracker.run_ids[1])
    assert failed.data.tags["lifelong.status"] == "failed" and not failed.data.metrics
    assert "Boom" in failed.data.tags["lifelong.error"]
    # MLFLOW_TRACKING_URI is honoured when no URI is given
    assert log_results(results["path"], get_tracker("mlflow", experiment="env")) == 3
    env_exp = client.get_experiment_by_name("env")
    assert len(client.search_runs([env_exp.experiment_id])) == 3


def test_mlflow_logs_each_run_once(results: dict[str, Any], tmp_path: Path) -> None:
    require("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    art = str(tmp_path / "art")
    for _ in range(2):  # log_results called twice (a second process, a second tracker)
        with get_tracker("mlflow", tracking_uri=uri, experiment="t", artifact_location=art) as t:
            assert log_results(results["path"], t) == 3
            assert log_results(results["path"], t) == 3
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.get_experiment_by_name("t").experiment_id
    runs = client.search_runs([exp_id])
    assert len(runs) == 3
    assert {r.data.tags["lifelong.run_id"] for r in runs} == {
        str(row["run_id"]) for row in results["runs"]
    }
    # a new attempt of a run (another row: new timings) is a new MLflow run
    again = {**results["runs"][0], "wall_seconds": 123.0}
    with get_tracker("mlflow", tracking_uri=uri, experiment="t") as t:
        t.log_run(again, header_of(results))
    assert len(client.search_runs([exp_id])) == 4


def test_tensorboard_events_read_back(results: dict[str, Any], tmp_path: Path) -> None:
    require("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    row, header = results["runs"][1], header_of(results)
    tracker = get_tracker("tensorboard", log_dir=str(tmp_path / "tb"))
    tracker.log_run(row, header)
    tracker.close()
    folder = tracker.run_dirs[0]
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    R = row["accuracy_matrix"]
    for j in range(len(R)):
        events = acc.Scalars(f"accuracy/experience_{j}")
        assert [e.step for e in events] == list(range(len(R)))
        assert [e.value for e in events] == pytest.approx([R[i][j] for i in range(len(R))])
    for key, value in final_metrics(row).items():
        assert acc.Scalars(key)[-1].value == pytest.approx(value, rel=1e-6)
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["strategy"].string_value == "naive"
    assert info.hparams["seed"].number_value == 1
    assert info.hparams["lr"].number_value == pytest.approx(row["params"]["lr"])
    text = acc.Tensors("accuracy_matrix/text_summary")[0].tensor_proto.string_val[0].decode()
    assert f"{R[-1][-1]:.4f}" in text
    saved = json.loads((folder / "accuracy_matrix.json").read_text())
    assert saved["accuracy_matrix"] == R


def test_neptune_offline_files_read_back(results: dict[str, Any], tmp_path: Path) -> None:
    require("neptune")
    row, header = results["runs"][0], header_of(results)
    with get_tracker("neptune", mode="offline", tags=["test"]) as tracker:
        tracker.log_run(row, header)
    (run_folder,) = (tmp_path / "neptune" / "offline").iterdir()
    ops = []
    for log in sorted(run_folder.glob("data-*.log")):
        ops += [json.loads(line)["obj"] for line in log.read_text().splitlines() if line]
    assigned = {"/".join(o["path"]): o["value"] for o in ops if o["type"].startswith("Assign")}
    for key, value in run_params(row, header).items():
        assert assigned[f"parameters/{key}"] == value
    for key, value in final_metrics(row).items():
        assert assigned[key] == pytest.approx(value)
    assert assigned["status"] == "ok" and assigned["sys/name"] == "naive seed=0"
    series: dict[str, list[tuple[int, float]]] = {}
    for o in ops:
        if o["type"] == "LogFloats":
            series.setdefault("/".join(o["path"]), []).extend(
                (v["step"], v["value"]) for v in o["values"]
            )
    R = row["accuracy_matrix"]
    curve = [sum(R[i][: i + 1]) / (i + 1) for i in range(len(R))]
    assert series["accuracy/seen_average"] == [(i, pytest.approx(c)) for i, c in enumerate(curve)]
    uploads = {"/".join(o["path"]): o["tmp_file_name"] for o in ops if o["type"] == "UploadFile"}
    saved = json.loads((run_folder / "upload_path" / uploads["accuracy_matrix/json"]).read_text())
    assert saved["accuracy_matrix"] == R


def wandb_records(path: Path) -> list[Any]:
    """Read a `.wandb` file: W&B's LevelDB-style log (a 7-byte ':W&B' header, 32 KiB blocks
    of records, each `crc32 | length | type` then data; types 1 full, 2 first, 3 middle,
    4 last) of `wandb_internal_pb2.Record` messages."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, chunk, records = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # trailer too small for a header: skip to next block
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            pos += block - pos % block if pos % block else 0
            continue
        chunk += data[pos : pos + length]
        pos += length
        if kind in (1, 4):
            records.append(pb.Record.FromString(chunk))
            chunk = b""
    return records


def test_wandb_offline_run_reads_back(results: dict[str, Any], tmp_path: Path) -> None:
    require("wandb")
    row, header = results["runs"][1], header_of(results)
    run_files = tmp_path / "ckpt"
    run_files.mkdir()
    (run_files / "model.json").write_text("{}")
    tracker = get_tracker("wandb", project="t", mode="offline", dir=str(tmp_path / "wb"))
    tracker.log_run(row, header, run_dir=str(run_files))
    tracker.close()
    run_folder = tracker.run_dirs[0]
    assert run_folder.name.startswith("offline-run-")
    (log,) = run_folder.glob("run-*.wandb")
    records = wandb_records(log)
    assert records[-1].WhichOneof("record_type") == "exit"  # close() flushed the whole run
    kinds = [r.WhichOneof("record_type") for r in records]
    run_rec = records[kinds.index("run")].run
    config = {u.key: json.loads(u.value_json) for u in run_rec.config.update}
    for key, value in run_params(row, header).items():
        assert config[key] == value
    assert run_rec.display_name == "naive seed=1"
    history = []
    summary: dict[str, Any] = {}
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind == "history":
            history.append(
                {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            )
        elif kind == "summary":
            summary.update(
                {
                    "/".join(u.nested_key) or u.key: json.loads(u.value_json)
                    for u in r.summary.update
                }
            )
    R = row["accuracy_matrix"]
    assert [h["_step"] for h in history] == list(range(len(R)))
    assert [h["accuracy/current"] for h in history] == pytest.approx(
        [R[i][i] for i in range(len(R))]
    )
    for key, value in final_metrics(row).items():
        assert summary[key] == pytest.approx(value)
    saved = json.loads((run_folder / "files" / "accuracy_matrix.json").read_text())
    assert saved["accuracy_matrix"] == R
    assert (run_folder / "files" / "run_files" / "model.json").exists()
    assert records[-1].WhichOneof("record_type") == "exit" and records[-1].exit.exit_code == 0


@pytest.mark.parametrize("name", ["tensorboard", "wandb", "neptune"])
def test_local_trackers_log_each_run_once(
    name: str, results: dict[str, Any], tmp_path: Path
) -> None:
    """`log_results` twice, from two tracker objects, writes one run per row; a new attempt
    of a run (another row: new timings) is a run of its own."""
    require({"tensorboard": "tensorboard", "wandb": "wandb", "neptune": "neptune"}[name])
    options: dict[str, Any] = {
        "tensorboard": {"log_dir": str(tmp_path / "tb")},
        "wandb": {"project": "t", "mode": "offline", "dir": str(tmp_path / "wb")},
        "neptune": {"mode": "offline"},
    }[name]

    def runs() -> list[Path]:
        if name == "tensorboard":  # one event file per logged run (a folder could get two)
            return list((tmp_path / "tb").glob("*/events.out.tfevents.*"))
        where = {
            "tensorboard": tmp_path / "tb",
            "wandb": tmp_path / "wb" / "wandb",
            "neptune": tmp_path / "neptune" / "offline",
        }[name]
        return [
            p for p in where.iterdir() if p.is_dir() and not p.is_symlink() and p.name[0] != "."
        ]

    for _ in range(2):
        with get_tracker(name, **options) as tracker:
            assert log_results(results["path"], tracker) == 3
    assert len(runs()) == 3
    again = {**results["runs"][0], "wall_seconds": 123.0}
    with get_tracker(name, **options) as tracker:
        tracker.log_run(again, header_of(results))
    assert len(runs()) == 4
