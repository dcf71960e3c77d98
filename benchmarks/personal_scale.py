"""Benchmarks 6(b) and 6(c) of issue 12: personal heads at scale, on one CPU thread.

(b) 10,000 users' heads resident (384 features, as MiniLM's, and 4 or 10 classes): memory
    of the stacked heads (and the process's resident set); the time of one batched update
    of 1,000 users (one upload of 20 rows each, naive and replay(mem_size=50)), against
    the same uploads of 100 users one user per update (cost per user); and the
    throughput of a prediction batch of 1,024 rows that mixes users (1,024 distinct users;
    64 users of 16 rows) against the same batch through one head (`x @ W + b`, the single
    model), on features, and end to end from text through MiniLM (134 texts, 134 users).
(c) One user's update of 1,000 cached examples (naive, replay, ewc, lwf).

Features for (b) and (c) are the benchmark texts' MiniLM embeddings when
`personal_text.py` has cached them, else random unit vectors (marked in the output).
Timings: medians of repeated runs, the compared runs alternated.

    .venv/bin/python benchmarks/personal_scale.py
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lifelong.personal import HeadTraining, PersonalHeads

DIM = 384
OUT = Path(__file__).parent / "results" / "personal"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, the functions alternated in every round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def feature_pool(n: int) -> tuple[torch.Tensor, str]:
    try:
        sys.path.insert(0, str(Path(__file__).parent))
        import personal_text  # noqa: PLC0415 - a sibling benchmark script

        texts, _ = personal_text.documents()
        feats = personal_text.features(texts)
        src = f"MiniLM embeddings of {len(texts)} benchmark texts"
    except Exception as e:  # noqa: BLE001 - fall back to random features, say so
        feats = torch.nn.functional.normalize(torch.randn(n, DIM), dim=1)
        src = f"random unit vectors ({type(e).__name__}: {e})"
    idx = torch.randint(len(feats), (n,), generator=torch.Generator().manual_seed(0))
    return feats[idx].contiguous(), src


def resident(n_users: int, n_classes: int, strategy: str) -> PersonalHeads:
    m = PersonalHeads(DIM, n_classes, strategy=strategy, capacity=n_users + 1)
    for u in range(n_users):
        m.add_user(f"u{u}")
    g = torch.Generator().manual_seed(1)
    m.bank.weight.normal_(0, 0.1, generator=g)  # trained-looking heads, not zeros
    m.bank.seen[:] = True
    return m


def scale(feats: torch.Tensor, n_classes: int, repeats: int) -> dict:
    rss0 = rss_mb()
    m = resident(10_000, n_classes, "naive")
    out: dict = {
        "users": len(m),
        "heads_mb": m.bank.nbytes() / 2**20,
        "rss_growth_mb": rss_mb() - rss0,
    }
    g = torch.Generator().manual_seed(2)
    y = torch.randint(n_classes, (1000, 20), generator=g)
    batch = {f"u{u}": (feats[20 * u : 20 * u + 20], y[u]) for u in range(1000)}
    mr = resident(1000, n_classes, "replay(mem_size=50)")
    mr.update(batch)  # memories filled, as after a first upload
    first100 = list(batch)[:100]

    def one_by_one() -> None:  # the same uploads, one user per update
        for uid in first100:
            m.update({uid: batch[uid]})

    upd = median_times(
        {
            "naive": lambda: m.update(batch),
            "replay": lambda: mr.update(batch),
            "naive_100_users_one_by_one": one_by_one,
        },
        repeats,
    )
    out["update_1000_users_s"] = upd
    out["batched_speedup_per_user"] = (
        upd["naive_100_users_one_by_one"] / 100 / (upd["naive"] / 1000)
    )
    out["replay_state_mb"] = mr.nbytes()["user_state"] / 2**20
    x = feats[:1024]
    distinct = [f"u{i * 9}" for i in range(1024)]
    grouped = [f"u{(i // 16) * 131}" for i in range(1024)]
    w, b = m.bank.weight[5].clone(), m.bank.bias[5].clone()
    s_distinct, s_grouped = m.bank.index(distinct), m.bank.index(grouped)
    fns = {
        "single_head": lambda: (torch.addmm(b, x, w.T)).argmax(1),
        "mixed_1024_users": lambda: m.predict(x, distinct),
        "mixed_64_users": lambda: m.predict(x, grouped),
        "one_user_via_api": lambda: m.predict(x, "u5"),
        "mixed_1024_users_by_slot": lambda: m.bank.masked_logits(x, s_distinct).argmax(1),
        "mixed_64_users_by_slot": lambda: m.bank.masked_logits(x, s_grouped).argmax(1),
    }
    pred = median_times(fns, repeats * 20)
    out["predict_1024_rows_s"] = pred
    out["throughput_ratio_vs_single_head"] = {k: pred["single_head"] / v for k, v in pred.items()}
    return out


def end_to_end(m: PersonalHeads, texts: list[str], repeats: int) -> dict:
    """Text -> MiniLM -> head(s): a mixed batch against one head (no feature cache)."""
    from lifelong.models.pretrained import load_text_encoder

    enc = load_text_encoder("minilm", cache=False)
    w, b = m.bank.weight[5].clone(), m.bank.bias[5].clone()
    users = [f"u{i * 9}" for i in range(len(texts))]
    with torch.no_grad():
        fns = {
            "single_head": lambda: torch.addmm(b, enc.encode(texts), w.T).argmax(1),
            "mixed_users": lambda: m.predict(enc.encode(texts), users),
        }
        t = median_times(fns, repeats)
    return {"rows": len(texts), "s": t, "ratio": t["single_head"] / t["mixed_users"]}


def single_user(feats: torch.Tensor, repeats: int) -> dict:
    """(c): one user's update of 1,000 cached rows, per strategy (alternated)."""
    y = torch.randint(10, (1000,), generator=torch.Generator().manual_seed(3))
    x = feats[:1000]
    models = {}
    for spec in ("naive", "replay(mem_size=200)", "ewc(lambda=100)", "lwf(alpha=1)"):
        models[spec] = PersonalHeads(DIM, 10, strategy=spec, train=HeadTraining())
        models[spec].update({"u": (x, y)})  # a second upload: memory, Fisher, teacher in use
    fns = {s: (lambda mm=mm: mm.update({"u": (x, y)})) for s, mm in models.items()}
    return median_times(fns, repeats)


def main() -> None:
    torch.set_num_threads(1)
    feats, src = feature_pool(20_000)
    res: dict = {"features": src, "torch_threads": torch.get_num_threads()}
    OUT.mkdir(parents=True, exist_ok=True)

    def keep() -> None:  # after every part, so that a late failure keeps the figures
        (OUT / "scale.json").write_text(json.dumps(res, indent=1))

    res["c_single_user_1000_rows_s"] = single_user(feats, 9)
    keep()
    for c in (4, 10):
        res[f"b_scale_{c}_classes"] = scale(feats, c, 5)
        keep()
    if "MiniLM" in src:
        sys.path.insert(0, str(Path(__file__).parent))
        import personal_text  # noqa: PLC0415

        texts = personal_text.documents()[0][::15]  # 134 of the 2,000, every kind
        res["b_end_to_end_texts"] = end_to_end(resident(10_000, 4, "naive"), texts, 5)
    keep()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
