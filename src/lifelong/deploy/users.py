"""Users of a deployment: a personal head per user on the production model's frozen
pretrained backbone (`lifelong.personal`), kept as one row per user in the store's `users`
table (head, rule state and replay memory as bytes, `persist.user_to_bytes`; created and
updated times; a revision that every write increments).

A user's uploads are stored as samples whose subject is the user id (so retention and
`forget` cover them), and each upload personalises that user's head at once: features by
the production version's backbone (`encode_cached`: computed once per distinct row), the
head trained by the user's rule (default `replay(mem_size=200)`). `learn_users` takes rows
of many users (one id per row) and trains all of them in one batched update
(`PersonalHeads.update`); only those users' rows are written, each only if its revision
is still the one read (else the update is redone on the new rows). A new user starts from
the production model's own head (the shared head). `predict_users` answers a batch that
mixes users in one pass; a user without a head gets the shared head, i.e. production's
answer. `forget_user` deletes the user's row, their samples (`erase.forget`, which
compacts the database so the bytes are gone from its files) and any folder left from
before the table.

`UserHeads` is the part a server with its production learner in memory keeps: the heads
of the users it has answered, each refreshed when its row's revision changes (one SELECT
of ids and revisions per request). Only models with a pretrained backbone (`text:...`,
`image:...`) have users; labels are the production model's classes.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import bindparam, delete, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment
from lifelong.deploy.errors import DeployError
from lifelong.deploy.ops import PathArg, apply_retention, insert_samples, sample_rows
from lifelong.deploy.schema import check_batch, check_features, label_id

USERS_DIR = "users"  # DIR/users/: users kept as folders before the table (migrated)
DEFAULT_RULE = "replay(mem_size=200)"
_CHUNK = 500  # ids per `IN (...)` (SQLite's variable limit)
_ATTEMPTS = 5


@dataclass
class Production:
    """The production learner and its version (what a server holds in memory), and the
    lock its forward passes take."""

    learner: Any
    version: str
    lock: Any = field(default_factory=threading.Lock)


def open_users(dep: Deployment) -> None:
    """Create the `users` table if this deployment predates it, and move users kept as
    folders (`DIR/users/u/<id>/`) into it."""
    try:
        store.users.create(dep.engine, checkfirst=True)
    except Exception:  # another process created it between the check and the create
        with dep.engine.connect() as conn:
            if not inspect(conn).has_table("users"):
                raise
    _migrate_folders(dep)


def _migrate_folders(dep: Deployment) -> None:
    from lifelong.personal import UserFolder
    from lifelong.personal.persist import user_to_bytes
    from lifelong.serialize import CheckpointError

    root = dep.path / USERS_DIR
    if not (root / "u").is_dir():
        return
    folder = UserFolder(root)
    uids = folder.stored_users()
    try:
        heads = folder.load(uids)
    except (CheckpointError, KeyError) as e:
        raise DeployError(
            f"{root}: users kept as folders (before the users table) cannot be read, so they "
            f"cannot be moved into the store ({e}); move or delete the folder"
        ) from None
    now = time.time()
    with contextlib.suppress(IntegrityError), store.transaction(dep.engine) as conn:
        have = set(_rows(conn, uids, store.users.c.id))
        new = [
            {"id": u, "state": user_to_bytes(heads, u), "created_at": now, "updated_at": now,
             "revision": 1}
            for u in uids if u not in have
        ]  # fmt: skip
        if new:
            conn.execute(store.users.insert(), new)
        dep.log(conn, "users_migrated", at=now, users=len(new))
    shutil.rmtree(root, ignore_errors=True)


def _rows(conn: Connection, uids: Iterable[str], *cols: Any) -> dict[str, Any]:
    """Rows of `users` for `uids` (the columns `cols`, by id), read `_CHUNK` ids at a time."""
    u, ids, out = store.users, list(uids), {}
    for i in range(0, len(ids), _CHUNK):
        q = select(u.c.id, *cols).where(u.c.id.in_(ids[i : i + _CHUNK]))
        out.update({r[0]: r for r in conn.execute(q)})
    return out


def _production(dep: Deployment) -> Production:
    with dep.engine.connect() as conn:
        version = dep.alias(conn, "production")
        if version is None:
            raise DeployError("no production version yet: ingest labelled data and update")
        return Production(dep.load_learner(conn, version), version)


def features(
    prod: Production, x: Any, columns: list[str] | None = None
) -> tuple[np.ndarray, torch.Tensor]:
    """`x` checked against production's input schema, and its backbone features (one
    pass, each distinct row computed once: `encode_cached`)."""
    from lifelong.models.pretrained import encode_cached

    learner = prod.learner
    _require_backbone(learner)
    xs = check_features(x, learner.input_shape, columns, learner.feature_names)
    with prod.lock:
        return xs, encode_cached(learner.model, torch.from_numpy(np.ascontiguousarray(xs)))


def _require_backbone(learner: Any) -> None:
    from lifelong.models.pretrained import find_encoder

    try:
        find_encoder(learner.model)
    except ValueError:
        raise DeployError(
            "users need a model with a pretrained backbone (text:..., image:...); "
            f"production is {type(learner.model).__name__}"
        ) from None


def _shared(learner: Any, strategy: str) -> Any:
    """A `PersonalHeads` whose shared head is the production model's linear head."""
    from lifelong.personal import SHARED, PersonalHeads

    _require_backbone(learner)
    head = getattr(learner.model, "head", None)
    weight = getattr(head, "weight", None)
    if not isinstance(head, torch.nn.Linear) or weight is None:
        raise DeployError(f"users need a linear head on the backbone, got {type(head).__name__}")
    heads = PersonalHeads(head.in_features, head.out_features, strategy=strategy)
    seen = torch.zeros(head.out_features, dtype=torch.bool)
    seen[list(learner.class_ids)] = True
    bias = head.bias if head.bias is not None else torch.zeros(head.out_features)
    heads.bank.put(heads.bank.index([SHARED]), weight[None], bias[None], seen[None])
    return heads


def check_users(users: str | Sequence[Any], n: int) -> list[str]:
    """One checked user id per row (`users` one id for all `n` rows, or one per row;
    integers, e.g. an `.npz` array of numbers, are taken as their decimal text)."""
    from lifelong.personal import check_user_id

    ids = [users] * n if isinstance(users, str) else list(np.asarray(users).tolist())
    ids = [str(u) if isinstance(u, int) and not isinstance(u, bool) else u for u in ids]
    if len(ids) != n:
        raise DeployError(f"need one user id per row ({n} rows), got {len(ids)}")
    try:
        return [check_user_id(u) for u in ids]
    except ValueError as e:
        raise DeployError(str(e)) from None


class UserHeads:
    """The heads of a deployment's users on one production learner: a `PersonalHeads`
    whose shared head is production's, holding the users read so far, each at the
    revision of their row (`revisions`; with the row's creation time, so that a user
    forgotten and created again is never taken for the old one)."""

    def __init__(self, prod: Production, strategy: str = DEFAULT_RULE) -> None:
        self.prod = prod
        self.heads = _shared(prod.learner, strategy)
        self.revisions: dict[str, int] = {}
        self.created: dict[str, float] = {}
        self.lock = threading.Lock()  # one sync/update/predict at a time (a server's threads)

    def sync(self, conn: Connection, users: Iterable[str]) -> None:
        """Bring `users` to their rows: one SELECT of ids and revisions, then the state of
        those whose revision changed; a user whose row is gone is dropped."""
        from lifelong.personal.persist import user_from_bytes

        u = store.users
        wanted = sorted(set(users))
        stamps = _rows(conn, wanted, u.c.revision, u.c.created_at)
        for uid in wanted:
            if uid not in stamps:
                self.drop(uid)
        stale = [
            k for k, r in stamps.items()
            if (self.revisions.get(k), self.created.get(k)) != (r.revision, r.created_at)
        ]  # fmt: skip
        for uid, row in _rows(conn, stale, u.c.state, u.c.revision, u.c.created_at).items():
            if user_from_bytes(self.heads, row.state) != uid:
                raise DeployError(f"the users row {uid!r} holds another user's head")
            self.revisions[uid], self.created[uid] = int(row.revision), float(row.created_at)

    def drop(self, uid: str) -> None:
        """Forget `uid`'s head here (their row is gone)."""
        if uid in self.heads:
            self.heads.forget(uid)
        self.revisions.pop(uid, None)
        self.created.pop(uid, None)

    def predict(self, feats: torch.Tensor, users: list[str]) -> np.ndarray:
        """Class ids, row `i` by the head of `users[i]` (the shared head for a user
        without one), in one pass."""
        from lifelong.personal import SHARED

        slots = [uid if uid in self.heads else SHARED for uid in users]
        return self.heads.predict(feats, slots).numpy()


class _Conflict(Exception):
    """A row changed between its read and the write that expected it."""


def _write_rows(conn: Connection, heads: UserHeads, uids: list[str], now: float) -> int:
    """Write `uids`' rows: insert the new users', update the others' if their revision is
    still the one read (`_Conflict` otherwise); the number of new users."""
    from lifelong.personal.persist import user_to_bytes

    u, h = store.users, heads.heads
    new = [k for k in uids if k not in heads.revisions]
    old = [k for k in uids if k in heads.revisions]
    if new:
        rows = [{"id": k, "state": user_to_bytes(h, k), "created_at": now, "updated_at": now,
                 "revision": 1} for k in new]  # fmt: skip
        try:
            conn.execute(u.insert(), rows)
        except IntegrityError:
            raise _Conflict() from None
    q = (
        u.update()
        .where(u.c.id == bindparam("uid"), u.c.revision == bindparam("rev"))
        .values(state=bindparam("blob"), updated_at=now, revision=bindparam("rev") + 1)
    )
    params = [{"uid": k, "rev": heads.revisions[k], "blob": user_to_bytes(h, k)} for k in old]
    many = conn.dialect.supports_sane_multi_rowcount
    for part in [params] if many else [[p] for p in params]:
        if part and conn.execute(q, part).rowcount != len(part):
            raise _Conflict()
    return len(new)


def _class_ids(learner: Any, y: Any, n: int) -> tuple[list[int], torch.Tensor]:
    """`y` as the store keeps labels (integers), and as the model's class ids."""
    given = list(np.asarray(y).reshape(-1).tolist())
    if len(given) != n:
        raise DeployError(f"{n} rows but {len(given)} labels")
    labels = [label_id(v, i) for i, v in enumerate(given)]
    if None in labels:
        raise DeployError(f"row {labels.index(None)}: no label given (a user's rows need one)")
    kept = [int(v) for v in labels if v is not None]
    ids, _, new = learner.labels.encode(np.array(kept, dtype=np.int64), n)
    if new or (len(ids) and int(ids.max()) >= learner.n_classes):
        raise DeployError(f"user labels must be the model's classes {learner.classes}")
    return kept, torch.as_tensor(np.asarray(ids), dtype=torch.long)


def _learn(
    dep: Deployment, prod: Production, x: Any, y: Any, users: Any, *,
    columns: list[str] | None, strategy: str, now: float,
) -> dict[str, Any]:  # fmt: skip
    kept, labels = _class_ids(prod.learner, y, len(x))
    xs, feats = features(prod, x, columns)
    uids = check_users(users, len(xs))
    with dep.engine.connect() as conn:
        batch = check_batch(xs, kept, uids, None, shape=store.get_setting(conn, "input_shape"))
    rows: dict[str, list[int]] = {}
    for i, uid in enumerate(uids):
        rows.setdefault(uid, []).append(i)
    upload = {k: (feats[torch.tensor(v)], labels[torch.tensor(v)]) for k, v in rows.items()}
    for _ in range(_ATTEMPTS):
        heads = UserHeads(prod, strategy)
        with dep.engine.connect() as conn:
            heads.sync(conn, rows)
        heads.heads.update(upload)  # every user of the batch in one step
        try:
            with store.transaction(dep.engine) as conn:
                n_new = _write_rows(conn, heads, list(rows), now)
                sids = insert_samples(conn, sample_rows(conn, batch, now))
                dep.log(conn, "users_update", at=now, users=len(rows), new_users=n_new,
                        rows=len(sids), first_id=sids[0])  # fmt: skip
                expired = apply_retention(dep, conn, now)
            break
        except _Conflict:
            continue
    else:
        raise DeployError("these users' rows kept changing during the update; send it again")
    if expired:
        store.compact(dep.engine)
    return {"users": len(rows), "new_users": n_new, "version": prod.version,
            "ingested": len(sids), "labelled": len(sids), "expired": expired, "ids": sids}  # fmt: skip


def learn_users(
    path: PathArg | Deployment,
    x: Any,
    y: Any,
    users: str | Sequence[str],
    *,
    columns: list[str] | None = None,
    strategy: str = DEFAULT_RULE,
    now: float | None = None,
    production: Production | None = None,
) -> dict[str, Any]:
    """Store labelled rows (row `i` of user `users[i]`, stored with the user as subject)
    and train every named user's head on their rows in one batched update. `production`:
    the learner to use (a server's, in memory) instead of loading it; `path` may be an
    open `Deployment`. The whole batch is checked first."""
    now = time.time() if now is None else now
    with _opened(path) as dep:
        open_users(dep)
        prod = production or _production(dep)
        return _learn(dep, prod, x, y, users, columns=columns, strategy=strategy, now=now)


def predict_users(
    path: PathArg | Deployment,
    x: Any,
    users: str | Sequence[str],
    *,
    columns: list[str] | None = None,
) -> tuple[np.ndarray, str]:
    """Class ids for `x`, row `i` by the head of `users[i]` (production's head for a
    user without one), in one pass; and the production version whose backbone computed
    the features."""
    with _opened(path) as dep:
        open_users(dep)
        prod = _production(dep)
        xs, feats = features(prod, x, columns)
        uids = check_users(users, len(xs))
        heads = UserHeads(prod, "naive")
        with dep.engine.connect() as conn:
            heads.sync(conn, uids)
        return heads.predict(feats, uids), prod.version


@contextlib.contextmanager
def _opened(path: PathArg | Deployment) -> Any:
    if isinstance(path, Deployment):
        yield path
    else:
        with Deployment(path) as dep:
            yield dep


def learn_user(
    path: PathArg,
    user: str,
    x: Any,
    y: Any,
    *,
    columns: list[str] | None = None,
    strategy: str = DEFAULT_RULE,
    now: float | None = None,
) -> dict[str, Any]:
    """Store `user`'s labelled upload (subject = user) and personalise their head."""
    check_users(user, 1)
    out = learn_users(path, x, y, user, columns=columns, strategy=strategy, now=now)
    return {"user": user, "new_user": out.pop("new_users") == 1, **out}


def predict_user(
    path: PathArg, user: str, x: Any, *, columns: list[str] | None = None
) -> tuple[np.ndarray, str]:
    """Class ids for `x` by `user`'s head (production's head for a user without one),
    and the production version whose backbone computed the features."""
    check_users(user, 1)
    return predict_users(path, x, user, columns=columns)


def forget_user(path: PathArg, user: str) -> dict[str, Any]:
    """Delete `user`'s row, samples (bytes included: `erase.forget` compacts the
    database) and any folder left from before the users table."""
    from lifelong.deploy.erase import forget
    from lifelong.personal import UserFolder

    check_users(user, 1)
    with Deployment(path) as dep:
        open_users(dep)
        with store.transaction(dep.engine) as conn:
            gone = conn.execute(delete(store.users).where(store.users.c.id == user)).rowcount
    out = forget(path, user)  # the samples, then VACUUM: the row's bytes go too
    leftover = UserFolder(Path(path) / USERS_DIR).forget(user)
    out["head_deleted"] = bool(gone) or leftover
    return out
