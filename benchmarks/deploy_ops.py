"""Deployment operations on the reference MLP: rollback, predict, ingest, update times.

The reference deployment: an MLP 784-400-400-10 (`mlp(hidden=(400,400))`) with
`replay(mem_size=500)`, trained on split-mnist-5k's first experience (v1.0, from a saved
learner), then one stateful update (v1.1) on the second. Each operation runs several
times through the public API (`lifelong.deploy`, a fresh database connection per call, as
the command line does) and the script prints the medians:

* rollback: `deploy.rollback(dir)` (the alias switch, one transaction), alternating
  between v1.1 and v1.0; and rollback followed by the first prediction of the version it
  switched to (what a client waits for: the new version loaded and predicting one row);
* predict: 256 rows by the production version, recorded (samples + predictions rows);
* ingest: a batch of 256 labelled rows, checked and stored;
* update: a forced stateful update on 256 new labelled rows (memory refilled from the
  store, training, gate, the version written).

    python benchmarks/deploy_ops.py --rounds 7 [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lifelong import deploy
from lifelong.config import TrainConfig
from lifelong.data import get_benchmark
from lifelong.learner import Learner


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--db", default=None, help="SQLAlchemy URL (default: SQLite in the folder)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    stream = get_benchmark("split-mnist-5k")
    first, second = stream.experiences[0].train, stream.experiences[1].train
    x2, y2 = second.x.numpy(), second.y.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        learner = Learner(
            "mlp(hidden=(400,400))", "replay(mem_size=500)", config=TrainConfig(epochs=1)
        )
        learner.learn(first.x, first.y)
        learner.save(root / "saved")
        dep = root / "dep"
        deploy.create(dep, from_run=root / "saved", db=args.db)
        deploy.ingest(dep, x2[:400], y2[:400])
        deploy.update(dep, force=True)
        deploy.promote(dep, "v1.1")
        times: dict[str, list[float]] = {k: [] for k in ("rollback", "rollback+predict", "predict", "ingest", "update")}  # fmt: skip
        rows = x2[400:656]
        for r in range(args.rounds):
            times["rollback"].append(_timed(lambda: deploy.rollback(dep)))

            def switch_and_serve() -> None:
                deploy.rollback(dep)
                deploy.predict(dep, rows[:1], record=False)

            times["rollback+predict"].append(_timed(switch_and_serve))
            times["predict"].append(_timed(lambda: deploy.predict(dep, rows)))
            batch = stream.experiences[2 + r % 3].train  # new rows each round
            lo = (r // 3 % 3) * 256
            xb, yb = batch.x[lo : lo + 256].numpy(), batch.y[lo : lo + 256].numpy()
            times["ingest"].append(_timed(lambda xb=xb, yb=yb: deploy.ingest(dep, xb, yb)))
            times["update"].append(_timed(lambda: deploy.update(dep, force=True)))
        print(
            f"reference MLP 784-400-400-10 + replay(mem_size=500), {args.rounds} rounds, 1 thread"
        )
        print(f"database: {args.db or 'SQLite (DIR/deploy.db)'}")
        print("| operation | median s | min s | max s |")
        print("|---|---|---|---|")
        for name, ts in times.items():
            print(f"| {name} | {statistics.median(ts):.4f} | {min(ts):.4f} | {max(ts):.4f} |")
        print(f"versions at the end: {len(deploy.status(dep)['versions'])}")


if __name__ == "__main__":
    main()
