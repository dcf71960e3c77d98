"""Prometheus metrics of one server process (`GET /metrics`, the text format of
prometheus-client): requests and latencies counted here, and the deployment's state
read from its database at scrape time (so every replica reports the same production
version, updates, gate verdicts and last trigger scores)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class DeploymentCollector(Collector):
    """Gauges computed from the database on each scrape."""

    def __init__(self, dep: Deployment, served: Any, updater: Any) -> None:
        self.dep, self.served, self.updater = dep, served, updater

    def _scores(self, conn: Any) -> dict[str, float]:
        """The latest decision's trigger scores (the `last_decision` setting, written by
        every update, even a no-op the audit log leaves out), else the last audited ones."""
        latest = store.get_setting(conn, "last_decision")
        scores = latest.get("scores") if isinstance(latest, dict) else None
        if not isinstance(scores, dict):
            a = store.audit
            q = a.select().where(a.c.details.like('%"scores"%')).order_by(a.c.id.desc()).limit(1)
            row = conn.execute(q).first()
            scores = json.loads(row.details).get("scores") if row is not None else None
        if not isinstance(scores, dict):
            return {}
        return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}

    def collect(self) -> Iterator[Metric]:
        v, s, L = store.versions, store.samples, store.locks
        with self.dep.engine.connect() as conn:
            prod = self.dep.alias(conn, "production")
            verdicts = conn.execute(select(v.c.verdict, func.count()).group_by(v.c.verdict)).all()
            kinds = conn.execute(select(v.c.kind, func.count()).group_by(v.c.kind)).all()
            n = conn.execute(select(func.count()).select_from(s)).scalar()
            running = conn.execute(select(func.count()).select_from(L)).scalar()
            scores = self._scores(conn)
        g = GaugeMetricFamily(
            "lifelong_production_version", "1 for the production version", labels=["version"]
        )
        if prod is not None:
            g.add_metric([prod], 1)
        yield g
        current = self.served.current
        g = GaugeMetricFamily(
            "lifelong_served_version", "1 for the version this process serves", labels=["version"]
        )
        if current is not None:
            g.add_metric([current.version], 1)
        yield g
        g = GaugeMetricFamily(
            "lifelong_versions", "model versions by gate verdict", labels=["verdict"]
        )
        for verdict, count in verdicts:
            g.add_metric([verdict], count)
        yield g
        g = GaugeMetricFamily(
            "lifelong_updates", "versions written by updates, by kind", labels=["kind"]
        )
        for kind, count in kinds:
            if kind != "from_run":
                g.add_metric([kind], count)
        yield g
        yield GaugeMetricFamily("lifelong_samples", "samples stored", value=int(n or 0))
        yield GaugeMetricFamily(
            "lifelong_update_running", "1 while an update holds the lock", value=int(bool(running))
        )
        g = GaugeMetricFamily("lifelong_trigger_score", "last trigger scores", labels=["trigger"])
        for name, value in scores.items():
            g.add_metric([name], value)
        yield g
        yield GaugeMetricFamily(
            "lifelong_update_requests", "update checks asked of the updater by this process",
            value=self.updater.requests,
        )  # fmt: skip


class Metrics:
    """This process's registry: request counts and latencies, rows predicted/stored."""

    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: less noise in the text format
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lifelong_requests", "HTTP requests", ["route", "method", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "lifelong_request_seconds", "request latency", ["route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.rows = Counter(
            "lifelong_rows", "rows predicted or stored", ["kind"], registry=self.registry
        )
        self.started = time.time()

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)
