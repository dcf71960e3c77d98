"""Personalization: per-user continual heads on one shared frozen backbone's features.

`PersonalHeads` holds a head per user (stacked, `HeadBank`), each user's rule (`HeadRule`:
naive, replay with a memory quota, EWC, LwF) and memory, and an optional shared head that
new users start from; many users' updates train in one batched step and a batch mixing
users is predicted in one pass. `save` / `load` (and `save_user` / `load_user`) keep them
as tensors + JSON; `UserFolder` keeps one folder per user. See docs/architecture.md, "Personalization".
"""

from lifelong.personal.folder import UserFolder
from lifelong.personal.heads import HeadBank
from lifelong.personal.persist import load, load_user, save, save_user
from lifelong.personal.train import HeadRule, HeadTraining
from lifelong.personal.users import SHARED, PersonalHeads, check_user_id

__all__ = [
    "SHARED",
    "HeadBank",
    "HeadRule",
    "HeadTraining",
    "PersonalHeads",
    "UserFolder",
    "check_user_id",
    "load",
    "load_user",
    "save",
    "save_user",
]
