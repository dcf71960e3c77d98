"""`lifelong deploy create|ingest|predict|update|promote|rollback|status|forget`.
Only the standard library at import: `lifelong --help` stays free of torch."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `deploy` subcommands on parser `p`."""
    sub = p.add_subparsers(dest="deploy_command", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="create a deployment folder (and its database)")
    c.add_argument("dir")
    c.add_argument("--from", dest="from_run", default=None, help="a run's folder or saved learner")
    c.add_argument("--model", default=None, help="model spec (instead of --from)")
    c.add_argument("--strategy", default=None, help="strategy spec (with --model)")
    c.add_argument("--scenario", default="class", help="class, domain or task (with --model)")
    c.add_argument("--db", default=None, help="SQLAlchemy URL (default: sqlite file DIR/deploy.db)")
    c.add_argument(
        "--max-age-days", type=float, default=None, help="delete samples older than this"
    )
    c.add_argument("--max-samples", type=int, default=None, help="keep at most this many samples")
    i = sub.add_parser("ingest", help="store a batch of samples (checked whole first)")
    i.add_argument("dir")
    i.add_argument("--data", required=True, help=".csv (with a header) or .npz (x, y, subject, t)")
    i.add_argument("--target", default=None, help="label column (CSV); no labels without it")
    i.add_argument("--subject-column", default=None, help="subject id column (CSV)")
    pr = sub.add_parser("predict", help="predict with the production version")
    pr.add_argument("dir")
    pr.add_argument("--data", required=True, help=".csv (numeric columns) or .npz (array x)")
    pr.add_argument("--out", default=None, help="CSV to write (default: standard output)")
    pr.add_argument("--target", default=None, help="a label column to leave out (CSV)")
    pr.add_argument("--subject-column", default=None, help="a subject column to leave out (CSV)")
    sub.add_parser("update", help="stateful update on the new labelled samples, then the gate").add_argument("dir")  # fmt: skip
    pm = sub.add_parser("promote", help="make VERSION production")
    pm.add_argument("dir")
    pm.add_argument("name", metavar="VERSION")  # not `version`: the top-level --version
    rb = sub.add_parser("rollback", help="back to the previous production version (or VERSION)")
    rb.add_argument("dir")
    rb.add_argument("name", metavar="VERSION", nargs="?", default=None)
    st = sub.add_parser("status", help="versions, production, pending samples, last decisions")
    st.add_argument("dir")
    st.add_argument("--json", action="store_true", help="print the whole status as JSON")
    f = sub.add_parser("forget", help="delete a subject's samples (bytes included) and log it")
    f.add_argument("dir")
    f.add_argument("--subject", required=True)


def _print_status(s: dict[str, Any]) -> None:
    print(f"production: {s['production']}   candidate: {s['candidate']}")
    print(
        f"samples: {s['samples']} stored, {s['pending_labelled']} labelled and "
        f"{s['pending_unlabelled']} unlabelled since production was trained"
    )
    for v in s["versions"]:
        m = v["metrics"]
        acc = f"  holdout {m['holdout_accuracy']:.3f} (production {m['production_accuracy']:.3f})" if "holdout_accuracy" in m else ""  # fmt: skip
        print(f"  {v['id']:<8} {v['kind']:<9} parent={v['parent']}  {v['verdict']}{acc}")
    print("last decisions:")
    for d in s["last_decisions"]:
        print(f"  {d['at']:.0f}  {d['action']:<9} {json.dumps(d['details'])}")


def main(args: argparse.Namespace) -> int:
    """Run one `lifelong deploy` action."""
    from lifelong import deploy
    from lifelong.deploy.schema import read_batch

    a, d = args.deploy_command, args.dir
    if a == "create":
        out: Any = deploy.create(
            d, from_run=args.from_run, model=args.model, strategy=args.strategy,
            scenario=args.scenario, db=args.db, max_age_days=args.max_age_days,
            max_samples=args.max_samples,
        )  # fmt: skip
    elif a == "ingest":
        x, y, subject, task, cols = read_batch(args.data, args.target, args.subject_column)
        out = deploy.ingest(d, x, y, subject, task=task, columns=cols)
    elif a == "predict":
        x, _, _, task, cols = read_batch(args.data, args.target, args.subject_column)
        pred = deploy.predict(d, x, task=task, columns=cols)
        f = sys.stdout if args.out is None else open(args.out, "w", newline="")
        with f if args.out is not None else contextlib.nullcontext(f):
            w = csv.writer(f)
            w.writerow(["class", "version"])
            w.writerows([int(c), pred.version] for c in pred.classes)
        if args.out is not None:
            print(f"{len(pred.classes)} predictions ({pred.version}) written to {args.out}", file=sys.stderr)  # fmt: skip
        return 0
    elif a == "update":
        out = deploy.update(d)
    elif a == "promote":
        out = deploy.promote(d, args.name)
    elif a == "rollback":
        out = deploy.rollback(d, args.name)
    elif a == "status":
        s = deploy.status(d)
        print(json.dumps(s, indent=2)) if args.json else _print_status(s)
        return 0
    else:
        out = deploy.forget(d, args.subject)
    print(json.dumps(out))
    return 0
