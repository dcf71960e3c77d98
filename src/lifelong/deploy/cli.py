"""`lifelong deploy create|ingest|predict|label|update|promote|rollback|status|forget|keys`
(`keys create|list|revoke`).
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
    c.add_argument(
        "--memory", choices=["keep", "none"], default="keep",
        help="none: keep no real sample beyond the update that learns it (refuses replay)",
    )  # fmt: skip
    c.add_argument(
        "--policy", default="stateful",
        help="manual, scheduled, stateful (default, daily) or triggered; or a spec",
    )  # fmt: skip
    c.add_argument(
        "--policy-option", action="append", default=[], metavar="KEY=VALUE",
        help="a policy parameter, e.g. every_s=3600 or cooldown_s=600 (repeatable)",
    )  # fmt: skip
    c.add_argument(
        "--gate", action="append", default=[], metavar="KEY=VALUE",
        help="gate threshold: max_drop, max_forgetting_drop (0.01), holdout_fraction (0.2), "
        "waive_forgetting_on_change (1: on after a concept drift; 0: off)",
    )  # fmt: skip
    i = sub.add_parser("ingest", help="store a batch of samples (checked whole first)")
    i.add_argument("dir")
    i.add_argument("--data", required=True, help=".csv (with a header) or .npz (x, y, subject, t)")
    i.add_argument("--target", default=None, help="label column (CSV); no labels without it")
    i.add_argument("--subject-column", default=None, help="subject id column (CSV)")
    i.add_argument("--text-column", default=None, help="column of texts, the one feature (CSV)")
    i.add_argument("--user", default=None, help="a user's upload: stored, personalises their head")
    i.add_argument(
        "--user-column", default=None, metavar="NAME",
        help="users' uploads, a user id per row (CSV column or .npz array NAME): stored, "
        "every named user's head learns in one batched update",
    )  # fmt: skip
    pr = sub.add_parser("predict", help="predict with the production version")
    pr.add_argument("dir")
    pr.add_argument("--data", required=True, help=".csv (numeric columns) or .npz (array x)")
    pr.add_argument("--out", default=None, help="CSV to write (default: standard output)")
    pr.add_argument("--target", default=None, help="a label column to leave out (CSV)")
    pr.add_argument("--subject-column", default=None, help="subject id column (CSV), recorded")
    pr.add_argument("--no-record", action="store_true", help="do not store inputs and predictions")
    pr.add_argument("--text-column", default=None, help="column of texts, the one feature (CSV)")
    pr.add_argument("--user", default=None, help="predict with this user's head (not recorded)")
    pr.add_argument(
        "--user-column", default=None, metavar="NAME",
        help="a user id per row (CSV column or .npz array NAME): each row by its user's head",
    )  # fmt: skip
    lb = sub.add_parser("label", help="labels for samples stored earlier (ids from predict/ingest)")
    lb.add_argument("dir")
    lb.add_argument("--data", required=True, help=".csv with an id column and a label column")
    lb.add_argument("--id-column", default="id", help="column of sample (prediction) ids")
    lb.add_argument("--target", required=True, help="label column")
    up = sub.add_parser("update", help="ask the policy; run a retrain or stateful update + gate")
    up.add_argument("dir")
    up.add_argument("--force", action="store_true", help="run now whatever the policy says")
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
    f.add_argument("--subject", default=None)
    f.add_argument("--user", default=None, help="a user: their samples and their head")
    f.add_argument(
        "--retrain", action="store_true",
        help="also rebuild production without the subject (replays later updates)",
    )  # fmt: skip
    k = sub.add_parser("keys", help="API keys of `lifelong serve` (shown once, stored hashed)")
    ks = k.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    kc = ks.add_parser("create", help="create a key and print it (the only time it is shown)")
    kc.add_argument("dir")
    kc.add_argument("--scope", required=True, choices=["predict", "feedback", "admin"],
                    help="predict < feedback (also predicts) < admin (everything)")  # fmt: skip
    kc.add_argument("--name", default=None, help="its name in the audit log (default SCOPE-N)")
    kl = ks.add_parser("list", help="name, scope, created, last used of each key (never the key)")
    kl.add_argument("dir")
    kl.add_argument("--json", action="store_true", help="print the list as JSON")
    kr = ks.add_parser("revoke", help="revoke key NAME (servers refuse it within a second)")
    kr.add_argument("dir")
    kr.add_argument("name", metavar="NAME")


def _options(items: list[str], flag: str) -> dict[str, Any]:
    """`KEY=VALUE` strings as a dict; values read as JSON where they parse (numbers,
    true/false, null/none), else kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE")
        if value.strip().lower() == "none":
            out[key.strip()] = None
            continue
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _read_labels(path: str, id_column: str, target: str) -> tuple[list[str], list[str]]:
    """(ids, labels) from a CSV with a header naming both columns (other columns ignored)."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such data file")
    with open(p, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    header = [h.strip() for h in rows[0]] if rows else []
    for name in (id_column, target):
        if name not in header:
            raise ValueError(f"{p}: no column {name!r}; columns: {', '.join(header)}")
    i, j = header.index(id_column), header.index(target)
    return [r[i].strip() for r in rows[1:]], [r[j].strip() for r in rows[1:]]


def _read_users(args: argparse.Namespace) -> tuple[Any, Any, Any, list[str] | None]:
    """(features, labels, users, feature columns) of `--data` with `--user ID` or
    `--user-column NAME` (a CSV column, or an array of a `.npz`)."""
    from pathlib import Path

    from lifelong.deploy.schema import read_batch

    if args.user is not None and args.user_column is not None:
        raise SystemExit("give --user ID or --user-column NAME, not both")
    column = args.user_column
    npz = Path(args.data).suffix.lower() == ".npz"
    x, y, subject, _, cols = read_batch(
        args.data, args.target, None if npz else column or args.subject_column, args.text_column
    )
    if column is not None and npz:
        import numpy as np

        with np.load(args.data, allow_pickle=False) as z:
            if column not in z:
                raise SystemExit(
                    f"{args.data}: no array {column!r} (--user-column); has {sorted(z.files)}"
                )
            subject = z[column]
    return x, y, args.user if args.user is not None else subject, cols


def _acc(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _print_status(s: dict[str, Any]) -> None:
    pol = s["policy"] or {}
    print(
        f"production: {s['production']}   candidate: {s['candidate']}   policy: {pol.get('name')}"
    )
    print(
        f"samples: {s['samples']} stored ({s['predictions']} predicted, {s['holdouts']} held "
        f"out), {s['pending_labelled']} labelled and {s['pending_unlabelled']} unlabelled since "
        "production was trained"
    )
    mem = s["memory"]
    kept = "kept" if mem["unmatched_kept"] else "dropped at the next update"
    line = f"replay memory: {mem['rows']} rows referring to stored samples"
    print(line + (f", {mem['unmatched']} not from the store ({kept})" if mem["unmatched"] else ""))
    if s.get("users"):
        print(f"users: {s['users']} with a personal head")
    for v in s["versions"]:
        m = v["metrics"]
        acc = ""
        if "holdout_accuracy" in m:
            acc = f"  holdout {_acc(m['holdout_accuracy'])} (production {_acc(m.get('production_accuracy'))})"
            acc += f", earlier {_acc(m.get('earlier_holdout_accuracy'))} (production {_acc(m.get('production_earlier_accuracy'))})"
        print(f"  {v['id']:<8} {v['kind']:<9} parent={v['parent']}  {v['verdict']}{acc}")
    d = s["last_decision"]
    if d is not None:
        again = f" (the same {d['repeats']} more times since)" if d.get("repeats") else ""
        print(
            f"last decision: {'run ' + d['mode'] if d['ran'] else 'no update'}: {d['reason']}{again}"
        )
        print(f"  trigger scores: {json.dumps(d.get('scores') or {})}")
    print("last events:")
    for d in s["last_decisions"]:
        print(f"  {d['at']:.0f}  {d['action']:<9} {json.dumps(d['details'])}")


def main(args: argparse.Namespace) -> int:
    """Run one `lifelong deploy` action."""
    from lifelong import deploy
    from lifelong.deploy.schema import read_batch

    a, d = args.deploy_command, args.dir
    if a == "keys" and args.keys_command != "create":
        from lifelong.serve.keys import keys_command

        return keys_command(d, args.keys_command, args)
    if a == "keys":
        from lifelong.deploy.deployment import Deployment
        from lifelong.serve.keys import create_key

        with Deployment(d) as dep:
            token, key = create_key(dep.engine, args.scope, args.name)
        print(token)
        print(f"key {key.name!r} (scope {key.scope}): shown only now; keep it", file=sys.stderr)
        return 0
    if a == "create":
        policy = {"name": args.policy, **_options(args.policy_option, "--policy-option")}
        if "(" in args.policy and not args.policy_option:
            policy = args.policy
        out: Any = deploy.create(
            d, from_run=args.from_run, model=args.model, strategy=args.strategy,
            scenario=args.scenario, db=args.db, max_age_days=args.max_age_days,
            max_samples=args.max_samples, memory=args.memory, policy=policy,
            gate=_options(args.gate, "--gate"),
        )  # fmt: skip
    elif a == "ingest":
        if args.user is not None or args.user_column is not None:
            from lifelong.deploy.users import learn_users

            x, y, users, cols = _read_users(args)
            out = learn_users(d, x, y, users, columns=cols)
        else:
            x, y, subject, task, cols = read_batch(
                args.data, args.target, args.subject_column, args.text_column
            )
            out = deploy.ingest(d, x, y, subject, task=task, columns=cols)
    elif a == "predict":
        if args.user is not None or args.user_column is not None:
            from lifelong.deploy.serving import Prediction
            from lifelong.deploy.users import predict_users

            x, _, users, cols = _read_users(args)
            pred = Prediction(*predict_users(d, x, users, columns=cols))
        else:
            x, _, subject, task, cols = read_batch(
                args.data, args.target, args.subject_column, args.text_column
            )
            pred = deploy.predict(
                d, x, subject=subject, task=task, columns=cols, record=not args.no_record
            )
        ids: list[Any] = list(pred.ids) or [""] * len(pred.classes)
        f = sys.stdout if args.out is None else open(args.out, "w", newline="")
        with f if args.out is not None else contextlib.nullcontext(f):
            w = csv.writer(f)
            w.writerow(["id", "class", "version"])
            w.writerows([i, int(c), pred.version] for i, c in zip(ids, pred.classes))
        if args.out is not None:
            print(f"{len(pred.classes)} predictions ({pred.version}) written to {args.out}", file=sys.stderr)  # fmt: skip
        return 0
    elif a == "label":
        given, labels = _read_labels(args.data, args.id_column, args.target)
        out = deploy.label(d, given, labels)
    elif a == "update":
        out = deploy.update(d, force=args.force)
    elif a == "promote":
        out = deploy.promote(d, args.name)
    elif a == "rollback":
        out = deploy.rollback(d, args.name)
    elif a == "status":
        s = deploy.status(d)
        print(json.dumps(s, indent=2)) if args.json else _print_status(s)
        return 0
    elif args.user is not None:
        from lifelong.deploy.users import forget_user

        out = forget_user(d, args.user)
    elif args.subject is None:
        raise SystemExit("lifelong deploy forget: give --subject ID or --user ID")
    else:
        out = deploy.forget(d, args.subject, retrain=args.retrain)
    print(json.dumps(out))
    return 0
