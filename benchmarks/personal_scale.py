"""Benchmarks 6(b) and 6(c) of issue 12: personal heads at scale, on one CPU thread.

(b) `scale`: 10,000 users' heads resident (384 features, as MiniLM's, and 4 or 10
    classes): memory of the stacked heads (and the process's resident set); the time of
    one batched update of 1,000 users (one upload of 20 rows each, naive and
    replay(mem_size=50)), against the same uploads of 100 users one user per update.
    `predict`: the throughput of prediction batches of 1,024 and 8,192 rows that mix 1, 8,
    64 or all-distinct users, contiguous by user or shuffled, by id and by slot, against
    the same batch through one head (raw `addmm`, the single model) and through the API
    for one user (`prediction`). `text`: end to end from text through MiniLM (134 texts,
    134 users) against one head.
(c) `c`: one user's update of 1,000 cached examples (naive, replay, ewc, lwf).

Features are the benchmark texts' MiniLM embeddings when `personal_text.py` has cached
them, else random unit vectors (marked in the output). Timings: medians of repeated runs,
the compared runs alternated. Figures merge into results/personal/scale.json.

    .venv/bin/python benchmarks/personal_scale.py [c] [scale] [predict] [text]   # default: all
"""

from __future__ import annotations

import itertools
import json
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lifelong.personal import HeadTraining, PersonalHeads

DIM = 384
SETS = 4  # user draws each prediction case cycles through
OUT = Path(__file__).parent / "results" / "personal"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_times(
    fns: dict[str, Callable[[], object]], repeats: int, shuffle: bool = False
) -> dict[str, float]:
    """Median seconds of each function, the functions alternated in every round (in a
    fresh seeded order each round with `shuffle`, so that no function always follows the
    one that has just flushed the caches)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names, rng = list(fns), random.Random(0)
    for _ in range(repeats):
        if shuffle:
            rng.shuffle(names)
        for k in names:
            t = time.perf_counter()
            fns[k]()
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
    return out


def cycled(fn: Callable[..., object], args: list[tuple]) -> Callable[[], object]:
    """`fn` called on the next of `args` at every call (round robin)."""
    it = itertools.cycle(args)
    return lambda: fn(*next(it))


def prediction(feats: torch.Tensor, n_classes: int, rows: int, repeats: int) -> dict:
    """Prediction of `rows` feature rows (argmax included) against 10,000 resident heads.

    Baselines: one head through raw `torch.addmm(b, x, W.T)` (one shared model) and one
    user through the API (`predict(x, "u")`). Cases: 1, 8, 64 users of equal shares and
    `rows` distinct users, the rows contiguous by user (as a service batching requests
    makes them) or shuffled, named by id (`predict(x, ids)`) or by slot
    (`bank.masked_logits(x, slots)`). Every function cycles through `SETS` draws of users,
    so that the heads it reads are not the ones its previous call left in the cache, and
    the functions run in a fresh order every round (a fixed order would always put the
    same one after the all-distinct case, which flushes the caches).
    """
    m = resident(10_000, n_classes, "naive")
    g = torch.Generator().manual_seed(4)
    x = feats[torch.randint(len(feats), (rows,), generator=g)].contiguous()
    shuffle = torch.randperm(rows, generator=g).tolist()
    draws = [torch.randperm(10_000, generator=g).tolist() for _ in range(SETS)]
    one = [(f"u{d[0]}",) for d in draws]
    heads = [(m.bank.bias[int(u[1:])].clone(), m.bank.weight[int(u[1:])].clone()) for (u,) in one]
    fns: dict[str, Callable[[], object]] = {
        "addmm": cycled(lambda b, w: torch.addmm(b, x, w.T).argmax(1), heads),
        "api_one_user": cycled(lambda u: m.predict(x, u), one),
    }
    for k in (1, 8, 64, rows):
        for order in ("contiguous", "shuffled") if 1 < k < rows else ("contiguous",):
            ids = []
            for d in draws:
                run = [f"u{d[i * k // rows]}" for i in range(rows)]
                ids.append(run if order == "contiguous" else [run[i] for i in shuffle])
            slots = [(m.bank.index(u),) for u in ids]
            name = f"{'distinct' if k == rows else k}_users_{order}"
            fns[f"{name}_by_id"] = cycled(lambda u: m.predict(x, u), [(u,) for u in ids])
            fns[f"{name}_by_slot"] = cycled(lambda s: m.bank.masked_logits(x, s).argmax(1), slots)
    t = median_times(fns, repeats, shuffle=True)
    return {
        "rows": rows,
        "s": t,
        "ratio_vs_addmm": {k: t["addmm"] / v for k, v in t.items()},
        "ratio_vs_api_one_user": {k: t["api_one_user"] / v for k, v in t.items()},
    }


def prediction_table(res: dict) -> str:
    """Markdown rows: case, then per result time and the two ratios."""
    lines = []
    for case in next(iter(res.values()))["s"]:
        cells = []
        for r in res.values():
            a, b = r["ratio_vs_addmm"][case], r["ratio_vs_api_one_user"][case]
            cells.append(f"{r['s'][case] * 1e3:.3f} ms | {a:.2f}x | {b:.2f}x")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def end_to_end(m: PersonalHeads, texts: list[str], repeats: int) -> dict:
    """Text -> MiniLM -> head(s), no feature cache: 134 texts of 134 distinct users
    against one head. Every round encodes the texts once (timed) and scores those
    features both ways (medians of 20 alternated calls): the two pipelines share the
    encoder's work, and timing it twice would let its run-to-run noise on this shared
    machine (10-20% between runs of 11-14 s) swamp the heads' difference."""
    from lifelong.models.pretrained import load_text_encoder

    enc = load_text_encoder("minilm", cache=False)
    w, b = m.bank.weight[5].clone(), m.bank.bias[5].clone()
    users = [f"u{i * 9}" for i in range(len(texts))]
    encode: list[float] = []
    heads: dict[str, list[float]] = {"single_head": [], "mixed_users": []}
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            f = enc.encode(texts)
            encode.append(time.perf_counter() - t)
            fns = {
                "single_head": lambda f=f: torch.addmm(b, f, w.T).argmax(1),
                "mixed_users": lambda f=f: m.predict(f, users),
            }
            for k, v in median_times(fns, 20).items():
                heads[k].append(v)
    e = statistics.median(encode)
    h = {k: statistics.median(v) for k, v in heads.items()}
    total = {k: e + v for k, v in h.items()}
    return {
        "rows": len(texts),
        "encode_s": e,
        "heads_s": h,
        "s": total,
        "ratio": total["single_head"] / total["mixed_users"],
        "heads_ratio": h["single_head"] / h["mixed_users"],
    }


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


PARTS = ("c", "scale", "predict", "text")


def main(parts: list[str]) -> None:
    """Run the named parts (default: all), merging their figures into `scale.json`."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    parts = parts or list(PARTS)
    torch.set_num_threads(1)
    feats, src = feature_pool(20_000)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "scale.json"
    res: dict = json.loads(path.read_text()) if path.is_file() else {}
    res |= {"features": src, "torch_threads": torch.get_num_threads()}

    def keep() -> None:  # after every part, so that a late failure keeps the figures
        path.write_text(json.dumps(res, indent=1))

    if "c" in parts:
        res["c_single_user_1000_rows_s"] = single_user(feats, 9)
        keep()
    for c in (4, 10) if "scale" in parts else ():
        res[f"b_scale_{c}_classes"] = scale(feats, c, 5)
        keep()
    for c in (4, 10) if "predict" in parts else ():
        pred = {n: prediction(feats, c, n, 800 if n <= 1024 else 100) for n in (1024, 8192)}
        res[f"b_predict_{c}_classes"] = pred
        keep()
        print(f"{c} classes, rows {' / '.join(map(str, pred))}:\n{prediction_table(pred)}")
    if "text" in parts and "MiniLM" in src:
        sys.path.insert(0, str(Path(__file__).parent))
        import personal_text  # noqa: PLC0415

        texts = personal_text.documents()[0][::15]  # 134 of the 2,000, every kind
        res["b_end_to_end_texts"] = end_to_end(resident(10_000, 4, "naive"), texts, 3)
        keep()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
