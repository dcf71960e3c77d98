"""Users of a deployment: a personal head per user on the production model's frozen
pretrained backbone (`lifelong.personal`), kept one folder per user in `DIR/users/`.

A user's uploads are stored as samples whose subject is the user id (so retention and
`forget` cover them), and each upload personalises that user's head at once: features by
the production version's backbone (`encode_cached`: computed once), the head trained by
the user's rule (default `replay(mem_size=200)`), only that user's folder rewritten. A new
user starts from the production model's own head (the shared head). Prediction for a user
uses their head; a user without one gets the shared head, i.e. production's answer.
`forget_user` deletes the user's samples (`erase.forget`) and their folder.

Only models with a pretrained backbone (`text:...`, `image:...`) have users; labels are
the production model's classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifelong.deploy.deployment import Deployment
from lifelong.deploy.errors import DeployError
from lifelong.deploy.ops import PathArg, ingest
from lifelong.deploy.schema import check_features

USERS_DIR = "users"


def _production(path: PathArg) -> tuple[Any, str]:
    with Deployment(path) as dep:
        with dep.engine.connect() as conn:
            version = dep.alias(conn, "production")
            if version is None:
                raise DeployError("no production version yet: ingest labelled data and update")
            return dep.load_learner(conn, version), version


def _features(learner: Any, x: Any, columns: list[str] | None) -> torch.Tensor:
    from lifelong.models.pretrained import encode_cached, find_encoder

    try:
        find_encoder(learner.model)
    except ValueError:
        raise DeployError(
            "users need a model with a pretrained backbone (text:..., image:...); "
            f"production is {type(learner.model).__name__}"
        ) from None
    xs = check_features(x, learner.input_shape, columns, learner.feature_names)
    return encode_cached(learner.model, torch.from_numpy(np.ascontiguousarray(xs)))


def _shared(learner: Any, strategy: str) -> Any:
    """A `PersonalHeads` whose shared head is the production model's linear head."""
    from lifelong.personal import SHARED, PersonalHeads

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


def _folder(path: PathArg) -> Any:
    from lifelong.personal import UserFolder

    return UserFolder(Path(path) / USERS_DIR)


def learn_user(
    path: PathArg,
    user: str,
    x: Any,
    y: Any,
    *,
    columns: list[str] | None = None,
    strategy: str = "replay(mem_size=200)",
    now: float | None = None,
) -> dict[str, Any]:
    """Store `user`'s labelled upload (subject = user) and personalise their head."""
    from lifelong.personal import check_user_id

    try:
        check_user_id(user)
    except ValueError as e:
        raise DeployError(str(e)) from None
    learner, version = _production(path)
    ids, _, new = learner.labels.encode(y, len(np.asarray(y)))
    if new or (len(ids) and int(ids.max()) >= learner.n_classes):
        raise DeployError(f"user {user!r}: labels must be the model's classes {learner.classes}")
    feats = _features(learner, x, columns)
    folder = _folder(path)
    stored = user in folder.stored_users()
    heads = folder.load([user]) if stored else _shared(learner, strategy)
    out = ingest(path, x, y, subject=user, columns=columns, now=now)
    heads.update({user: (feats, ids)})
    folder.save(heads, [user])
    return {"user": user, "version": version, "new_user": not stored, **out}


def predict_user(
    path: PathArg, user: str, x: Any, *, columns: list[str] | None = None
) -> tuple[np.ndarray, str]:
    """Class ids for `x` by `user`'s head (production's head for a user without one),
    and the production version whose backbone computed the features."""
    from lifelong.personal import SHARED

    learner, version = _production(path)
    feats = _features(learner, x, columns)
    folder = _folder(path)
    if user in folder.stored_users():
        return folder.load([user]).predict(feats, user).numpy(), version
    return _shared(learner, "naive").predict(feats, SHARED).numpy(), version


def forget_user(path: PathArg, user: str) -> dict[str, Any]:
    """Delete `user`'s samples (bytes included, `erase.forget`) and head folder."""
    from lifelong.deploy.erase import forget

    out = forget(path, user)
    out["head_deleted"] = _folder(path).forget(user)
    return out
