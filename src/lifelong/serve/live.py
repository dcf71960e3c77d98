"""The production model held in memory by one server process, swapped atomically when
the deployment's `production` alias changes (a promotion, a rollback, or an update that
passed the gate, made by any replica or the command line).

A background thread reads the alias every `interval` seconds (one small query); when it
names another version, the thread loads that version and then replaces the reference
to the served model in one assignment. Requests read the reference once, so each is
answered wholly by the old or wholly by the new version, and never waits for a load.

`LiveUsers` answers and trains users (`lifelong.deploy.users`) with that same learner in
memory: it keeps the heads of the users it has seen (`UserHeads`, a `PersonalHeads` whose
shared head is production's), and each request reads its users' row revisions (one
SELECT) and reloads only the heads whose row changed (an update by any replica, or a
forget). A new production version starts a new cache (its head is the shared head)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lifelong.deploy.deployment import Deployment
from lifelong.deploy.users import Production, UserHeads, features, learn_users, open_users

log = logging.getLogger("lifelong.serve")


@dataclass
class Served:
    version: str
    learner: Any
    loaded_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)  # one forward at a time


class LiveModel:
    def __init__(self, dep: Deployment, interval: float = 0.25) -> None:
        self.dep, self.interval = dep, interval
        self.current: Served | None = None
        self.error: str | None = None  # the last failed load, shown by /v1/status
        self.checked_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load the production version if it is not the one served; True if swapped."""
        with self.dep.engine.connect() as conn:
            version = self.dep.alias(conn, "production")
            self.checked_at = time.time()
            if version is None or (self.current and self.current.version == version):
                return False
            learner = self.dep.load_learner(conn, version)
        self.current = Served(version, learner, time.time())  # the atomic swap
        self.error = None
        log.info("serving %s", version)
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception as e:  # keep serving the old version; say why in /v1/status
                self.error = f"{type(e).__name__}: {e}"
                log.warning("could not load the production version: %s", self.error)

    def start(self) -> None:
        try:
            self.refresh()
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
            log.warning("could not load the production version: %s", self.error)
        self._thread = threading.Thread(target=self._loop, name="lifelong-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class LiveUsers:
    """Users' heads on the served learner, cached across requests (see the module
    docstring); at most `max_users` heads are kept (then the cache starts afresh)."""

    def __init__(self, dep: Deployment, max_users: int = 100_000) -> None:
        self.dep, self.max_users = dep, max_users
        self._heads: UserHeads | None = None
        self._lock = threading.Lock()
        self._opened = False

    def drop(self, user: str) -> None:
        """Forget `user`'s cached head now (their row is gone)."""
        h = self._heads
        if h is not None:
            with h.lock:
                h.drop(user)

    def heads(self, served: Served) -> UserHeads:
        """The cache for `served` (a new one when production changed)."""
        with self._lock:
            if not self._opened:  # the users table (a deployment older than it gets it)
                open_users(self.dep)
                self._opened = True
            h = self._heads
            if (
                h is None
                or h.prod.learner is not served.learner
                or len(h.revisions) > self.max_users
            ):
                prod = Production(served.learner, served.version, served.lock)
                h = self._heads = UserHeads(prod)
            return h

    def predict(self, served: Served, x: Any, users: str | list[str]) -> np.ndarray:
        """Class ids, row `i` by the head of its user (production's for a user without one)."""
        heads = self.heads(served)
        xs, feats = features(heads.prod, x)
        ids = [users] * len(xs) if isinstance(users, str) else list(users)
        with heads.lock:
            with self.dep.engine.connect() as conn:
                heads.sync(conn, ids)
            return heads.predict(feats, ids)

    def learn(self, served: Served, x: Any, y: Any, users: str | list[str]) -> dict[str, Any]:
        """Store the users' rows and train their heads (`learn_users`) on the served learner."""
        return learn_users(self.dep, x, y, users, production=self.heads(served).prod)
