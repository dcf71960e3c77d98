"""`lifelong init`: the commented example experiment file.

Its training keys are written from `lifelong.config.TrainConfig`'s fields (each at its
default, with its help text), so the example lists every training setting there is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lifelong.config import TRAIN_FIELDS, field_info


def _yaml(value: Any) -> str:
    """`value` as YAML reads it back (YAML 1.1 wants a dot in `1.0e-05`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and "e" in repr(value) and "." not in repr(value):
        mantissa, _, exponent = repr(value).partition("e")
        return f"{mantissa}.0e{exponent}"
    return "null" if value is None else str(value)


def training_keys() -> str:
    """One line per `TrainConfig` field: `key: default  # help (choices)`."""
    lines = []
    for key in TRAIN_FIELDS:
        info = field_info(key)
        note = str(info["help"])
        if info["choices"] is not None and not all(str(c) in note for c in info["choices"]):
            note += f" ({', '.join(map(str, info['choices']))})"
        if not info["sweep"]:
            note += "; cannot be swept"
        lines.append(f"{key + ': ' + _yaml(info['default']):<31} # {note}")
    return "\n".join(lines) + "\n"


EXAMPLE = """\
# lifelong experiment: run it with `lifelong compare experiment.yaml`.
# Flags override single keys: `lifelong compare experiment.yaml --epochs 1 --workers 2`.
# Rerunning the same command skips the runs already in `out` (and reruns failed ones).

benchmark: split-mnist-5k       # or a list; `lifelong benchmarks` lists them
# data:                         # ...or your own data instead of benchmark
#   path: my_data.csv           #   (options of lifelong.data.files.stream_from_files)
scenario: class                 # class, domain and/or task (a list runs each)

# Strategy specs (`lifelong strategies` lists them): name or name(key=value, ...),
# `+` joins a hybrid, e.g. "replay(mem_size=200)+lwf(alpha=1)".
strategies:
  - naive
  - replay
  - ewc
# Each key takes a list of values; the grid is their Cartesian product.
# `strategy.param` sets that parameter in every spec holding the strategy;
# training settings (lr, epochs, batch_size, ...) apply to every run.
sweep:
  replay.mem_size: [200, 500]
  ewc.lambda: [10, 100]
seeds: [0, 1]

model: mlp                      # e.g. "mlp(hidden=(256,256))"
head: fixed                     # fixed or grow

# Training settings (`lifelong.config.TrainConfig`), here at their defaults:
{training}
device: cpu                     # cpu, cuda, cuda:N or auto
executor: local                 # local (one process per run) or ray
workers: 2                      # runs at once
threads: 1                      # torch threads per run (default: cores // workers)
# address: ray://head:10001     # an existing Ray cluster (executor: ray)
# tracker: [mlflow]             # mlflow, tensorboard, neptune, wandb; or with options:
# tracker: {mlflow: {tracking_uri: "sqlite:///mlflow.db"}}
out: runs/experiment            # results.json, results.csv/.parquet, runs/<key>/
""".replace("{training}", training_keys())


def write_example(path: str | os.PathLike[str] = "experiment.yaml", force: bool = False) -> Path:
    """Write the commented example experiment to `path` (refusing to overwrite unless
    `force`); it runs in a minute or two on 2 CPU cores."""
    p = Path(path)
    if p.exists() and not force:
        raise ValueError(f"{p} exists already; pass --force to overwrite it")
    text = EXAMPLE.replace("experiment.yaml", p.name)
    text = text.replace("out: runs/experiment ", f"out: runs/{p.stem} ")
    p.write_text(text)
    return p
