"""lifelong's `naive` against a plain PyTorch loop doing the same work, in one process.

Reference protocol: split-mnist-5k, class scenario, MLP 784-400-400-10, SGD lr 0.01
momentum 0.9, batch 32, 2 epochs per experience, evaluation on every experience's test set
after each one. Both sides use device-resident tensors, the same initial weights, the same
batch order and a fresh optimizer per experience, so they compute the same thing (the
script checks that the accuracy matrices agree). The runs alternate, round after round,
and the script prints the median of the per-round ratios.

    python benchmarks/loop_overhead.py --rounds 15 --threads 1 [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.data import Stream, get_benchmark
from lifelong.experiment.run import RunConfig, run

EPOCHS, BATCH, LR, MOMENTUM = 2, 32, 0.01, 0.9


def plain_loop(
    stream: Stream, seed: int, device: torch.device
) -> tuple[float, float, list[list[float]]]:
    """The hand-written loop: returns (train seconds, total seconds, accuracy matrix)."""
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 400),
        nn.ReLU(),
        nn.Linear(400, 400),
        nn.ReLU(),
        nn.Linear(400, 10),
    ).to(device)
    exps = [(e.train.x.to(device), e.train.y.to(device)) for e in stream]
    tests = [(e.test.x.to(device), e.test.y.to(device)) for e in stream]

    def evaluate() -> list[float]:
        model.eval()
        with torch.no_grad():
            row = [(model(x).argmax(1) == y).float().mean().item() for x, y in tests]
        model.train()
        return row

    evaluate()  # the untrained model's accuracy (lifelong measures it for forward transfer)
    train_s, matrix = 0.0, []
    for x, y in exps:
        t0 = time.perf_counter()
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        for _ in range(EPOCHS):
            order = torch.randperm(len(x), generator=gen).to(device)
            for i in range(0, len(x), BATCH):
                idx = order[i : i + BATCH]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s += time.perf_counter() - t0
        matrix.append(evaluate())
    return train_s, time.perf_counter() - t_start, matrix


def lifelong_run(stream: Stream, seed: int, device: str) -> tuple[float, float, list[list[float]]]:
    """lifelong's `naive` on the same stream: (train seconds, total seconds, matrix)."""
    t0 = time.perf_counter()
    row = run(RunConfig(strategy="naive", seed=seed, device=device), stream=stream)
    return row["train_seconds"], time.perf_counter() - t0, row["accuracy_matrix"]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    stream = get_benchmark("split-mnist-5k", "class")
    lifelong_run(stream, 0, args.device)  # warm-up both paths
    plain_loop(stream, 0, device)
    train_ratios, total_ratios, ours, theirs = [], [], [], []
    for r in range(args.rounds):
        order = (lifelong_run, plain_loop) if r % 2 == 0 else (plain_loop, lifelong_run)
        res = {}
        for fn in order:
            res[fn.__name__] = fn(stream, r, args.device if fn is lifelong_run else device)  # type: ignore[operator]
        (lt, ltot, lm), (pt, ptot, pm) = res["lifelong_run"], res["plain_loop"]
        if device.type == "cpu":
            same = all(abs(a - b) < 1e-6 for ra, rb in zip(lm, pm) for a, b in zip(ra, rb))
            assert same, f"round {r}: lifelong and the plain loop disagree"
        train_ratios.append(lt / pt)
        total_ratios.append(ltot / ptot)
        ours.append(lt)
        theirs.append(pt)
    print(
        f"torch {torch.__version__}, device {args.device}, threads {args.threads}, rounds {args.rounds}"
    )
    print(f"plain loop train seconds (median): {statistics.median(theirs):.3f}")
    print(f"lifelong naive train seconds (median): {statistics.median(ours):.3f}")
    print(f"median ratio lifelong/plain, training loop: {statistics.median(train_ratios):.3f}x")
    print(
        f"median ratio lifelong/plain, whole protocol incl. evaluation and setup: "
        f"{statistics.median(total_ratios):.3f}x"
    )


if __name__ == "__main__":
    main()
