"""A folder of users: one state directory per user, so that a user is saved, loaded and
forgotten alone. (Deployments kept their users as one in `DIR/users/` before the store's
`users` table; `lifelong.deploy.users` moves such a folder into the table.)

    ROOT/config.json          dim, classes, default rule, training settings, seed
    ROOT/shared/              the shared head (when there is one), a `save_user` folder
    ROOT/u/<user id>/         each user's head, rule, memory and EWC state

User ids are checked (`check_user_id`: letters, digits, `_.@-`), so an id is a safe file
name. Writes are atomic per user (`serialize.write_state_dir`); `forget` deletes the
user's folder and their slot in the model.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from lifelong.personal.persist import load_user, save_user
from lifelong.personal.train import HeadTraining
from lifelong.personal.users import SHARED, PersonalHeads, check_user_id
from lifelong.serialize import CheckpointError, PathLike, find_state_dir

CONFIG = "config.json"


class UserFolder:
    """Users of a `PersonalHeads` kept one folder each under `root`."""

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)

    def user_dir(self, uid: str) -> Path:
        return self.root / "u" / check_user_id(uid)

    def write_config(self, model: PersonalHeads) -> None:
        cfg = {
            "dim": model.dim,
            "n_classes": model.n_classes,
            "strategy": model.default_rule.spec,
            "train": asdict(model.train),
            "seed": model.seed,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{CONFIG}.tmp"
        tmp.write_text(json.dumps(cfg, indent=1))
        tmp.replace(self.root / CONFIG)

    def save(self, model: PersonalHeads, users: list[str] | None = None) -> None:
        """Write the config, the shared head and `users` (default: every user)."""
        self.write_config(model)
        if model.shared:
            save_user(model, SHARED, self.root / "shared")
        for uid in model.users if users is None else users:
            save_user(model, uid, self.user_dir(uid))

    def load(self, users: list[str] | None = None) -> PersonalHeads:
        """A model with the shared head and `users` (default: every user in the folder)."""
        try:
            cfg = json.loads((self.root / CONFIG).read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{self.root / CONFIG}: cannot be read: {e}") from None
        model = PersonalHeads(
            cfg["dim"],
            cfg["n_classes"],
            strategy=cfg["strategy"],
            shared=False,
            train=HeadTraining(**cfg["train"]),
            seed=cfg["seed"],
        )
        if find_state_dir(self.root / "shared") is not None:
            load_user(model, self.root / "shared")
            model.shared = True
        for uid in self.stored_users() if users is None else users:
            path = find_state_dir(self.user_dir(uid))
            if path is None:
                raise KeyError(f"user {uid!r} is not stored in {self.root}")
            load_user(model, path)
        return model

    def stored_users(self) -> list[str]:
        folder = self.root / "u"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    def forget(self, uid: str, model: PersonalHeads | None = None) -> bool:
        """Delete `uid`'s folder (and their head and state in `model`, if given); return
        whether anything was stored."""
        path = self.user_dir(uid)
        found = path.exists()
        shutil.rmtree(path, ignore_errors=True)
        for stale in (path.with_name(f".{uid}.old"), path.with_name(f".{uid}.tmp")):
            shutil.rmtree(stale, ignore_errors=True)
        if model is not None and uid in model:
            model.forget(uid)
            found = True
        return found
