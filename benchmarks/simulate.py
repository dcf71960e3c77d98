"""The update policies in simulated production, and the triggers' detection delay and
false alarms. Writes benchmarks/SIMULATE.md and benchmarks/results/simulate.json.

    .venv/bin/python benchmarks/simulate.py --part policies   # writes results/simulate-policies.json
    .venv/bin/python benchmarks/simulate.py --part triggers   # writes results/simulate-triggers.json
    .venv/bin/python benchmarks/simulate.py --part report     # SIMULATE.md from both files
    (--quick: small streams, one seed, a smoke run)

Part 1 runs `lifelong.simulate.simulate` (real SQLite deployments) for the four policies
on each stream, seeds alternating, and checks the issue's criterion on the abrupt
streams: `triggered` within 1 point of `stateful`'s prequential accuracy with at most a
third of its updates. Part 2 runs each trigger over a fixed model's stream (no update)
and reports the mean delay of the first alarm after the known drift and the false alarms
per 10,000 stable rows, next to an always-fire and a periodic baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

from lifelong.simulate import detection, simulate  # noqa: E402
from lifelong.simulate.streams import make_stream  # noqa: E402

HERE = Path(__file__).parent
POLICY_STREAMS = ("sea-abrupt", "agrawal-abrupt", "mnist-abrupt", "sea-stable")
TRIGGER_STREAMS = ("sea-abrupt", "agrawal-abrupt", "mnist-abrupt", "mnist-rotating",
                   "sea-stable", "mnist-stable")  # fmt: skip


SETUP = [
    "Policies: each stream replayed through one real SQLite deployment per policy",
    "(`lifelong.simulate.simulate`): model `mlp`, strategy `naive`, 5 epochs per update",
    "(lr 0.05, momentum 0.9), warm-up 1,000 labelled rows -> v1.0, then batches of 100 rows",
    "an hour apart, labels 1 batch late, `update` after every batch, the deployment's default",
    "gate (at most 1 point worse than production on the newest 20% holdout and on earlier",
    "holdouts; the forgetting check waived, for every policy alike, when production's",
    "feedback shows an accuracy decline without input drift: a change of P(y | x)).",
    "Policies: scheduled = scratch every 10 batches; stateful = fine-tune after every",
    "batch; triggered = drift test (alpha 0.01) or accuracy alarm (ADWIN + level test) with",
    "a 2-batch cooldown, or 1,000 new labels; after an accuracy alarm without input drift",
    "it learns only the labels after the estimated change point. Streams: SEA and Agrawal",
    "4,000 rows drifting at 2,000; MNIST-5k 5,000 rows rotated 90 degrees from 2,500. Accuracy is",
    "prequential over the rows after the warm-up. Triggers: a fixed MLP trained on the first",
    "1,000 rows, checks after every 100 rows on the window since the last alarm (at most",
    "2,000 rows), 3 seeds; delay = rows from the drift to the first alarm after it (a check",
    "every 100 rows: 100 is the shortest possible).",
]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


SIZES = {"sea-abrupt": {"n": 4000, "position": 2000}, "agrawal-abrupt": {"n": 4000, "position": 2000},
         "sea-stable": {"n": 4000}, "mnist-abrupt": {"n": 5000, "position": 2500}}  # fmt: skip


def _save(path: Path, data: dict) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def policies(
    streams: tuple[str, ...], seeds: list[int], quick: bool, path: Path
) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for seed in seeds:  # seeds outside, streams inside: the runs of one stream alternate
        for name in streams:
            o = dict({"n": 2400, "position": 1400} if quick else SIZES[name], seed=seed)
            if name.endswith("stable"):
                o.pop("position", None)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = simulate(name, out=tmp, stream_options=o, warmup=400 if quick else 1000,
                               plot=False)  # fmt: skip
                print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f}s", file=sys.stderr)
            for label, r in res["policies"].items():
                row = out.setdefault(name, {}).setdefault(label, [])
                after = list(r["accuracy_after_drift"].values())
                row.append({k: r[k] for k in ("accuracy", "updates", "promoted", "train_seconds",
                                              "samples_retained", "memory_rows", "alarm_ticks", "alarms", "checks",
                                              "wall_seconds")}
                           | {"after_drift": after[0] if after else None})  # fmt: skip
            _save(path, out)  # after every run: a long benchmark loses nothing
    return out


def triggers(
    streams: tuple[str, ...], seeds: list[int], quick: bool, path: Path
) -> dict[str, dict]:
    out: dict[str, dict] = {}
    start = 400 if quick else 1000
    for seed in seeds:
        for name in streams:
            opts = {"seed": seed} | ({"n": 2400} if quick else {})
            if quick and not name.endswith("stable"):
                opts["position"] = 1400
            s = make_stream(name, **opts)
            correct = detection.fixed_model_correct(s, start, seed=seed)
            for det in detection.DETECTORS:
                fired = detection.alarms(s, correct, start, det, seed=seed)
                out.setdefault(name, {}).setdefault(det, []).append(
                    detection.score(s, start, fired)
                )
            print(f"triggers {name} seed {seed} done", file=sys.stderr)
            _save(path, out)
    return out


def _policy_md(table: dict[str, dict]) -> list[str]:
    lines = []
    for stream, by_policy in table.items():
        lines += [f"### {stream}", "",
                  "| policy | accuracy % | after drift % | updates | promoted | train s | "
                  "samples retained | alarms: drift / accuracy / volume |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for label, runs in by_policy.items():
            med = {k: _median([r[k] for r in runs if r[k] is not None])
                   for k in runs[0] if k not in ("after_drift", "alarms")}  # fmt: skip
            aft = [r["after_drift"] for r in runs if r["after_drift"] is not None]
            after = f"{100 * _median(aft):.1f}" if aft else "-"
            alarms = " / ".join(
                f"{_median([r['alarms'][a] for r in runs]):.0f}"
                for a in ("drift", "accuracy", "volume")
            )
            lines.append(
                f"| {label} | {100 * med['accuracy']:.1f} | {after} | {med['updates']:.0f} | "
                f"{med['promoted']:.0f} | {med['train_seconds']:.2f} | "
                f"{med['samples_retained']:.0f} | {alarms} |"
            )
        lines.append("")
    return lines


def stable_alarms(table: dict[str, dict], alpha: float = 0.01) -> list[str]:
    """On the streams without drift: the triggered policy's drift and accuracy alarms per
    check (one check per batch), next to the drift test's setting `alpha`."""
    lines = ["| stream | seed | checks | drift alarms | accuracy alarms | drift alarms per check "
             f"(alpha={alpha}) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for stream, by_policy in table.items():
        if not stream.endswith("stable"):
            continue
        for i, r in enumerate(by_policy["triggered"]):
            checks = r["checks"]
            d, a = r["alarms"]["drift"], r["alarms"]["accuracy"]
            lines.append(f"| {stream} | {i} | {checks} | {d} | {a} | {d / checks:.3f} |")
    return lines


def criterion(table: dict[str, dict]) -> list[str]:
    """The issue's check on every stream with a drift, per seed."""
    lines = ["| stream | seed | triggered acc % | stateful acc % | gap (points) | updates "
             "triggered / stateful | passes |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for stream, by_policy in table.items():
        if stream.endswith("stable"):
            continue
        for i, (t, s) in enumerate(zip(by_policy["triggered"], by_policy["stateful"])):
            gap = 100 * (s["accuracy"] - t["accuracy"])
            ok = gap <= 1.0 and t["updates"] * 3 <= s["updates"]
            lines.append(f"| {stream} | {i} | {100 * t['accuracy']:.1f} | {100 * s['accuracy']:.1f} | "
                         f"{gap:+.1f} | {t['updates']} / {s['updates']} | {'yes' if ok else 'no'} |")  # fmt: skip
    return lines


def _trigger_md(table: dict[str, dict]) -> list[str]:
    lines = ["| stream | detector | mean delay (rows) | missed | false alarms / 10k stable rows (pooled) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for stream, by_det in table.items():
        for det, runs in by_det.items():
            delays = [r["mean_delay"] for r in runs if r["mean_delay"] is not None]
            missed = sum(r["missed"] for r in runs)
            rows = sum(r["stable_rows"] for r in runs)
            false = 1e4 * sum(r["false_alarms"] for r in runs) / max(1, rows)  # pooled
            drift = not stream.endswith("stable")
            delay = f"{statistics.mean(delays):.0f}" if delays else "-"
            lines.append(f"| {stream} | {det} | {delay if drift else 'n/a'} | "
                         f"{missed if drift else 'n/a'} | {false:.1f} |")  # fmt: skip
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["policies", "triggers", "report"], required=True)
    ap.add_argument("--quick", action="store_true", help="small streams, one seed")
    ap.add_argument("--seeds", type=int, default=1)
    args = ap.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))
    tag = "-quick" if args.quick else ""
    paths = {p: HERE / "results" / f"simulate-{p}{tag}.json" for p in ("policies", "triggers")}
    t0 = time.perf_counter()
    if args.part == "policies":
        policies(POLICY_STREAMS, seeds, args.quick, paths["policies"])
    elif args.part == "triggers":
        triggers(TRIGGER_STREAMS, seeds, args.quick, paths["triggers"])
    else:
        pol, trig = (json.loads(paths[p].read_text()) for p in ("policies", "triggers"))
        md = ["# Update policies and triggers in simulated production", "",
              "`.venv/bin/python benchmarks/simulate.py --part policies|triggers|report"
              f"{' --quick' if args.quick else ''}` (torch threads 1); raw figures in "
              f"`benchmarks/results/simulate-*{tag}.json`. Medians over seeds.", "", *SETUP, "",
              "## The four policies", "", *_policy_md(pol),
              "## Triggered vs stateful (the issue's check)", "", *criterion(pol), "",
              "## Triggered on a stable stream", "", *stable_alarms(pol), "",
              "## Triggers: detection delay and false alarms", "", *_trigger_md(trig), ""]  # fmt: skip
        (HERE / f"SIMULATE{tag}.md").write_text("\n".join(md))
        print("\n".join(md))
    print(f"{args.part}: {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
