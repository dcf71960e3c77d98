"""Latency of `/v1/predict` for personal heads in `lifelong serve` (in process, FastAPI's
TestClient, one torch thread): a request by one user's head (`user`), a request mixing
users (`users`), and a plain request by production's own head, on a MiniLM deployment
whose users are rows of its store. The three kinds alternate request by request; medians
and the ratios to the plain request are printed.

    python benchmarks/serve_users.py --requests 200 --users 1000

Features are cached after the first request of each text (the feature cache), so the
figures are the service's own cost around the heads, not MiniLM's forward pass; the
`--fresh` option sends texts never seen before instead (MiniLM runs on every request)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def deployment(root: Path, n_users: int) -> tuple[Path, dict[str, str], list[str]]:
    """A MiniLM text model in production and `n_users` users with a personal head each."""
    from lifelong import deploy
    from lifelong.config import TrainConfig
    from lifelong.data.text import encode_texts
    from lifelong.deploy.deployment import Deployment
    from lifelong.deploy.users import learn_users
    from lifelong.learner import Learner
    from lifelong.serve.keys import SCOPES, create_key

    texts = ["a wonderful film", "great acting", "a dull film", "terrible acting"]
    x = encode_texts(texts)
    learner = Learner("text:minilm(max_tokens=32)", "naive", config=TrainConfig(epochs=3))
    learner.learn(x, np.array([0, 0, 1, 1]))
    learner.save(root / "model")
    deploy.create(root / "dep", from_run=root / "model")
    users = [f"user{i}" for i in range(n_users)]
    flips = np.array([[1, 1, 0, 0] if i % 2 else [0, 0, 1, 1] for i in range(n_users)])
    learn_users(root / "dep", np.tile(x, (n_users, 1)), flips.ravel(), list(np.repeat(users, 4)))
    with Deployment(root / "dep") as dep:
        keys = {s: create_key(dep.engine, s, f"bench-{s}")[0] for s in SCOPES}
    return root / "dep", keys, users


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=200, help="requests of each kind")
    p.add_argument("--users", type=int, default=1000, help="users with a head")
    p.add_argument("--rows", type=int, default=8, help="texts per request")
    p.add_argument("--fresh", action="store_true", help="texts never seen before (MiniLM runs)")
    args = p.parse_args()
    torch.set_num_threads(1)
    from fastapi.testclient import TestClient

    from lifelong.serve.app import create_app

    root = Path(tempfile.mkdtemp(prefix="serve-users-"))
    os.environ.setdefault("LIFELONG_FEATURE_CACHE", str(root / "features"))
    dep, keys, users = deployment(root, args.users)
    rng = np.random.default_rng(0)
    head = {"Authorization": f"Bearer {keys['predict']}"}
    times: dict[str, list[float]] = {"plain": [], "user": [], "users": []}
    with TestClient(create_app(dep, updater=False)) as api:
        for i in range(args.requests + 2):  # the first two rounds warm up
            for k, kind in enumerate(rng.permutation(list(times))):
                n = i * len(times) + k  # a new text for every request with --fresh
                texts = [f"review {n}-{j}: a film" if args.fresh else f"a film {j}"
                         for j in range(args.rows)]  # fmt: skip
                body: dict[str, object] = {"texts": texts, "record": False}
                if kind == "user":
                    body["user"] = users[int(rng.integers(len(users)))]
                elif kind == "users":
                    body["users"] = [
                        users[int(k)] for k in rng.integers(len(users), size=args.rows)
                    ]
                t0 = time.perf_counter()
                r = api.post("/v1/predict", json=body, headers=head)
                dt = time.perf_counter() - t0
                if r.status_code != 200:
                    sys.exit(f"{kind}: HTTP {r.status_code} {r.text}")
                if i >= 2:
                    times[kind].append(dt * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.users} users, {args.rows} texts a request, {args.requests} requests of each "
          f"kind, {'new texts (MiniLM runs)' if args.fresh else 'cached features'}")  # fmt: skip
    print("| request | median ms | p90 ms | vs plain |")
    print("|---|---|---|---|")
    for k, v in times.items():
        p90 = float(np.percentile(v, 90))
        print(f"| {k} | {med[k]:.2f} | {p90:.2f} | {med[k] / med['plain']:.2f}x |")


if __name__ == "__main__":
    main()
