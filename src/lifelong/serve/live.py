"""The production model held in memory by one server process, swapped atomically when
the deployment's `production` alias changes (a promotion, a rollback, or an update that
passed the gate, made by any replica or the command line).

A background thread reads the alias every `interval` seconds (one small query); when it
names another version, the thread loads that version and then replaces the reference
to the served model in one assignment. Requests read the reference once, so each is
answered wholly by the old or wholly by the new version, and never waits for a load."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lifelong.deploy.deployment import Deployment

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
