"""`simulate`: the stream, the policies, one deployment per policy, the result file."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from lifelong.simulate.engine import default_policies, run_policy
from lifelong.simulate.settings import SimulationSettings
from lifelong.simulate.streams import ProductionStream, make_stream

RESULT_FILE = "simulation.json"
#: how each update trains unless `train` says otherwise
DEFAULT_TRAIN = {"epochs": 5, "lr": 0.05, "momentum": 0.9}


def _policies(
    policies: Any, seconds_per_batch: float, batch_size: int
) -> dict[str, dict[str, Any]]:
    from lifelong.deploy.policies import check_policy

    defaults = default_policies(seconds_per_batch, batch_size)
    if policies is None:
        policies = list(defaults)
    if isinstance(policies, dict):
        return {label: check_policy(cfg) for label, cfg in policies.items()}
    out = {}
    for p in policies:
        if isinstance(p, str) and p in defaults:
            out[p] = check_policy(defaults[p])
        else:
            cfg = check_policy(p)
            out[str(p) if isinstance(p, str) else cfg["name"]] = cfg
    return out


def simulate(
    stream: str | ProductionStream = "sea-abrupt",
    *,
    out: str | os.PathLike[str] = "simulation",
    policies: Any = None,
    stream_options: dict[str, Any] | None = None,
    model: str = "mlp",
    strategy: str = "naive",
    warmup: int = 1000,
    batch_size: int = 100,
    label_delay: int = 1,
    seconds_per_batch: float = 3600.0,
    train: dict[str, Any] | None = None,
    retention: dict[str, Any] | None = None,
    gate: dict[str, Any] | None = None,
    plot: bool = True,
) -> dict[str, Any]:
    """Replay `stream` (a name from `STREAMS` or a `ProductionStream`) through one fresh
    deployment per policy, in `out/deployments/<policy>`. `policies`: names of the four
    stages (their simulator defaults), policy configs, or {label: config}; default all four.
    Labels arrive `label_delay` batches after their batch was predicted. The options from
    `model` to `gate` are the `SimulationSettings` every policy runs with."""
    if isinstance(stream, str):
        stream = make_stream(stream, **(stream_options or {}))
    settings = SimulationSettings(
        model=model, strategy=strategy, warmup=warmup, batch_size=batch_size,
        label_delay=label_delay, seconds_per_batch=seconds_per_batch,
        train=train or DEFAULT_TRAIN, retention=retention, gate=gate,
    )  # fmt: skip
    settings.check(len(stream))
    configs = _policies(policies, seconds_per_batch, batch_size)
    folder = Path(out)
    deployments = folder / "deployments"
    if deployments.exists():
        shutil.rmtree(deployments)  # a rerun replaces the simulation's own deployments
    deployments.mkdir(parents=True)
    result: dict[str, Any] = {
        "kind": "simulation",
        "stream": {
            "name": stream.name,
            "rows": len(stream),
            "drifts": list(stream.drifts),
            "info": stream.info,
        },  # fmt: skip
        "settings": settings.to_dict(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": platform.node(),
        "policies": {},
    }
    for label, cfg in configs.items():
        t0 = time.perf_counter()
        res = run_policy(stream, cfg, deployments / label.replace("/", "_"), settings)
        res["wall_seconds"] = round(time.perf_counter() - t0, 2)
        result["policies"][label] = res
    (folder / RESULT_FILE).write_text(json.dumps(result, indent=1, default=str))
    if plot:
        from lifelong.simulate.plot import plot_simulation

        result["plot"] = str(plot_simulation(result, folder / "accuracy.png"))
    return result
