"""Schemathesis, driven by the OpenAPI schema the server serves, against a real server
(without an updater, so nothing changes the store behind the requests' backs): no
request gets a 5xx, and a refused request (4xx) changes nothing in the store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("CI") == "true":  # CI installs the dev extra: a missing fuzzer fails
    import schemathesis
else:
    schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from conftest import Server, auth, make_keys  # noqa: E402
from lifelong import deploy  # noqa: E402
from lifelong.deploy import store  # noqa: E402
from lifelong.deploy.deployment import Deployment  # noqa: E402


@pytest.fixture(scope="module")
def fuzzed(
    tmp_path_factory: pytest.TempPathFactory, run_dir: Path, data
) -> Iterator[dict[str, Any]]:
    x, y = data
    path = tmp_path_factory.mktemp("fuzz") / "dep"
    deploy.create(path, from_run=run_dir)
    deploy.ingest(path, x[:20], y[:20], "someone")
    keys = make_keys(path)
    server = Server(path, "--no-updater", "--max-body-mb", "0.25").start()
    try:
        yield {"path": path, "keys": keys, "url": server.url}
    finally:
        server.stop()


def state(path: Path) -> tuple[Any, ...]:
    """Everything a request could store: sample rows and labels, versions, aliases, keys."""
    s = store.samples
    with Deployment(path) as dep, dep.engine.connect() as conn:
        return (
            tuple(
                conn.execute(select(func.count(), func.count(s.c.label), func.max(s.c.id))).one()
            ),
            conn.execute(select(func.count()).select_from(store.versions)).scalar(),
            tuple(conn.execute(select(store.aliases.c.name, store.aliases.c.version)).all()),
            conn.execute(select(func.count()).select_from(store.keys)).scalar(),
        )


def test_no_5xx_and_nothing_stored_when_refused(fuzzed: dict[str, Any]) -> None:
    from schemathesis.generation.modes import GenerationMode

    api = schemathesis.openapi.from_url(fuzzed["url"] + "/openapi.json")
    cases = st.one_of(
        api.as_strategy(m) for m in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    )
    seen: dict[int, int] = {}

    @given(case=cases)
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True, database=None)  # fmt: skip
    def one(case: Any) -> None:
        before = state(fuzzed["path"])
        response = case.call(base_url=fuzzed["url"], headers=auth(fuzzed["keys"]["admin"]))
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (case.method, case.path, response.text[:500])
        if response.status_code >= 400:
            assert state(fuzzed["path"]) == before, (case.method, case.path, response.text[:300])

    one()
    print("status codes seen:", dict(sorted(seen.items())))
    assert any(code < 300 for code in seen) and any(400 <= code < 500 for code in seen)
