"""`stream_loop`: the one loop over a stream of experiences.

It trains each experience, fills a row of each accuracy matrix after it, times both and
calls back after each experience. `Learner.fit_stream` runs it for one model (and so
`lifelong.run`, tuning and the speed suite); `experiment.batched` runs it for S stacked
models (S rows per evaluation). See docs/architecture.md, "The stream loop".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from lifelong.data.experience import Experience
from lifelong.results import Result

#: `on_epoch(epoch, epochs)`: called as each epoch of an experience ends (progress lines)
OnEpoch = Callable[[int, int], None]


def stream_loop(
    experiences: Sequence[Experience],
    past: Sequence[Experience],
    whole: bool,
    train: Callable[[Experience, list[Experience], OnEpoch], None],
    evaluate: Callable[[], list[list[float]]] | None,
    results: Sequence[Result],
    after: Callable[[int], None] | None = None,
    progress: Callable[[str], None] | None = None,
    device: torch.device | None = None,
) -> None:
    """The one stream loop: train each remaining experience (`train(experience, seen,
    on_epoch)`, where `seen` is `past` plus the stream's experiences so far, or all of them
    for strategies that see the whole stream), then fill a row of each accuracy matrix
    (`evaluate()` returns one row per model: one for a `Learner`, S for S stacked runs),
    timing both into `results`; `after(i)` runs after experience i (a checkpoint).
    Continues from `results[0].next_experience`."""
    wall0 = time.perf_counter() - results[0].wall_seconds
    if evaluate is not None and not results[0].baseline:
        t0 = time.perf_counter()
        baseline = evaluate()
        spent_eval = time.perf_counter() - t0
        for r, row in zip(results, baseline):
            r.baseline = row
            r.eval_seconds += spent_eval
    T = len(experiences)
    for i in range(results[0].next_experience, T):
        seen = [*past, *(experiences if whole else experiences[: i + 1])]

        def on_epoch(e: int, n: int, i: int = i) -> None:
            if progress:
                progress(f"experience {i + 1}/{T} epoch {e}/{n}")

        t0 = time.perf_counter()
        train(experiences[i], seen, on_epoch)
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        spent = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = evaluate() if evaluate is not None else [[] for _ in results]
        spent_eval = time.perf_counter() - t0
        for r, row in zip(results, rows):
            r.train_seconds += spent
            if evaluate is not None:
                r.matrix.append(row)
                r.eval_seconds += spent_eval
            r.next_experience, r.wall_seconds = i + 1, time.perf_counter() - wall0
        if after is not None:
            after(i)
