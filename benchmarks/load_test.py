"""Load test of `lifelong serve` on loopback: throughput and p50/p99 latency of
`/v1/predict` while idle, and while an update runs in the updater process and a
promotion swaps the served model. Idle and update phases alternate, `--rounds` times.

    python benchmarks/load_test.py --rounds 3 --concurrency 8 --idle-s 8

The deployment: an MLP 64-512-512-10 with replay on scikit-learn's 8x8 digits, from a
learner trained here on 600 digits. Each update phase first stores 900 new labelled
digits, then asks `/v1/update` (a stateful update: fine-tuning with replay, the gate)
and, once the update holds the lock, promotes the other version through `/v1/promote`.
The phase lasts until the update has released the lock. Every predict request sends 8
rows and records them (the default). A failed request is any non-200 answer or error."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def setup(root: Path, epochs: int) -> tuple[Path, dict[str, str], np.ndarray, np.ndarray]:
    import torch
    from sklearn.datasets import load_digits

    from lifelong import deploy
    from lifelong.config import TrainConfig
    from lifelong.deploy.deployment import Deployment
    from lifelong.learner import Learner
    from lifelong.serve.keys import create_key

    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=0.05, momentum=0.9)
    learner = Learner("mlp(hidden=(512, 512))", "replay(mem_size=300)", config=cfg)
    learner.learn(x[:600], y[:600])
    learner.save(root / "model")
    path = root / "dep"
    deploy.create(path, from_run=root / "model")
    deploy.ingest(path, x[600:900], y[600:900])
    deploy.update(path, force=True)  # v1.1: so there is another version to promote
    with Deployment(path) as dep:
        keys = {s: create_key(dep.engine, s, f"load-{s}")[0] for s in ("predict", "admin")}
    return path, keys, x, y


async def client(
    http: httpx.AsyncClient, rows: list[list[float]], halt: asyncio.Event,
    out: list[tuple[float, float, bool]], record: bool,
) -> None:  # fmt: skip
    while not halt.is_set():
        t0 = time.perf_counter()
        try:
            r = await http.post("/v1/predict", json={"rows": rows, "record": record})
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        out.append((t0, time.perf_counter() - t0, ok))


async def phase(
    url: str, keys: dict[str, str], x: np.ndarray, args: argparse.Namespace, update: bool
) -> dict[str, Any]:
    """One phase of load; with `update`, an update and a promotion run meanwhile."""
    out: list[tuple[float, float, bool]] = []
    limits = httpx.Limits(max_connections=args.concurrency)
    h = {"Authorization": f"Bearer {keys['predict']}"}
    async with httpx.AsyncClient(base_url=url, headers=h, limits=limits, timeout=30) as http, \
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=30) as admin:  # fmt: skip
        start = time.perf_counter()
        halt = asyncio.Event()
        rows = [x[i * 8 : i * 8 + 8].tolist() for i in range(args.concurrency)]
        tasks = [
            asyncio.create_task(client(http, rows[i], halt, out, not args.no_record))
            for i in range(args.concurrency)
        ]
        window = (start, start + args.idle_s)
        promoted = None
        if not update:
            await asyncio.sleep(args.idle_s)
        else:
            await asyncio.sleep(1.0)  # the load is running: now the update
            n0 = len((await admin.get("/v1/versions")).json()["versions"])
            r = await admin.post("/v1/update")
            assert r.status_code == 202, r.text
            t_update = time.perf_counter()
            while True:  # until the update's version is written and the lock is free
                s = (await admin.get("/v1/status")).json()
                if s["update_running"] and promoted is None:
                    versions = [v["id"] for v in s["versions"]]
                    other = next(v for v in versions[::-1] if v != s["production"])
                    promoted = (await admin.post("/v1/promote", json={"version": other})).json()
                if len(s["versions"]) > n0 and not s["update_running"]:
                    break
                await asyncio.sleep(0.1)
            window = (t_update, time.perf_counter())
        halt.set()
        await asyncio.gather(*tasks)
    lat = sorted(d for t0, d, ok in out if window[0] <= t0 <= window[1])
    failed = sum(not ok for t0, _, ok in out)
    dur = window[1] - window[0]
    return {
        "requests": len(lat), "failed": failed, "seconds": dur, "rps": len(lat) / dur,
        "p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "promoted": promoted,
    }  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--idle-s", type=float, default=8.0)
    p.add_argument("--epochs", type=int, default=3, help="epochs per update (its length)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--no-record", action="store_true", help="predict with record: false")
    args = p.parse_args()
    from lifelong import deploy

    with tempfile.TemporaryDirectory() as tmp:
        path, keys, x, y = setup(Path(tmp), args.epochs)
        url = f"http://127.0.0.1:{args.port}"
        server = subprocess.Popen([sys.executable, "-m", "lifelong.serve", str(path), "--port", str(args.port)],
                                  stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)  # fmt: skip
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            results: dict[str, list[dict[str, Any]]] = {"idle": [], "update": []}
            for r in range(args.rounds):
                results["idle"].append(asyncio.run(phase(url, keys, x, args, update=False)))
                lo = 900 - 300 * (r % 3)
                deploy.ingest(path, x[lo : lo + 900], y[lo : lo + 900])
                results["update"].append(asyncio.run(phase(url, keys, x, args, update=True)))
                for kind in ("idle", "update"):
                    m = results[kind][-1]
                    print(f"round {r} {kind:<6} {m['requests']:>6} req {m['seconds']:6.1f} s "
                          f"{m['rps']:7.1f} req/s p50 {m['p50_ms']:6.2f} ms p99 {m['p99_ms']:6.2f} ms "
                          f"failed {m['failed']}" + (f" promoted {m['promoted']}" if m["promoted"] else ""))  # fmt: skip
        finally:
            server.terminate()
            server.wait(30)
    what = "not recorded" if args.no_record else "recorded"
    print(
        f"\nconcurrency {args.concurrency}, 8 rows per request ({what}), {args.rounds} rounds (medians):"
    )
    print("| phase | req/s | p50 ms | p99 ms | failed | seconds |")
    print("|---|---|---|---|---|---|")
    med = {k: {f: statistics.median(m[f] for m in v) for f in ("rps", "p50_ms", "p99_ms", "seconds")} for k, v in results.items()}  # fmt: skip
    for kind, m in med.items():
        failed = sum(x["failed"] for x in results[kind])
        print(
            f"| {kind} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {failed} | {m['seconds']:.1f} |"
        )
    ratios = [u["p99_ms"] / i["p99_ms"] for i, u in zip(results["idle"], results["update"])]
    print(
        f"p99 during update / idle, per round: {', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
