"""The ASGI middleware in front of every route: it times and counts each request, checks
the API key and its scope (401/403 before the body is read), and reads the body up to
the size limit (413) and only as JSON (415). A refused request reaches no route, so it
changes nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio

from lifelong.serve.keys import allows

Scope = dict[str, Any]

SCOPE_OF = {
    ("POST", "/v1/predict"): "predict",
    ("POST", "/v1/feedback"): "feedback",
    ("POST", "/v1/update"): "admin",
    ("POST", "/v1/promote"): "admin",
    ("POST", "/v1/rollback"): "admin",
    ("GET", "/v1/versions"): "predict",
    ("GET", "/v1/status"): "predict",
}


def needed_scope(method: str, path: str) -> str | None:
    """The scope a request needs; None for the open routes (health, metrics, schema)."""
    if (method, path) in SCOPE_OF:
        return SCOPE_OF[(method, path)]
    if path.startswith(("/v1/subjects/", "/v1/users/")) and method == "DELETE":
        return "admin"
    return "predict" if path.startswith("/v1/") else None


def _route_of(path: str) -> str:
    """The route template of a request refused before routing (a bounded label set)."""
    if any(path == p for _, p in SCOPE_OF):
        return path
    if path.startswith("/v1/users/"):
        return "/v1/users/{user}"
    return "/v1/subjects/{subject:path}" if path.startswith("/v1/subjects/") else "unmatched"


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if kind.lower() == "bearer" else None
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == name), None)


async def _reply(
    send: Any, status: int, detail: str, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + list(extra)})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: Any, service: Any) -> None:
        self.app, self.svc = app, service

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = time.perf_counter(), [500]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or _route_of(scope["path"])
            self.svc.metrics.observe(route, scope["method"], status[0], time.perf_counter() - t0)

    async def _guarded(self, scope: Scope, receive: Any, send: Any) -> None:
        need = needed_scope(scope["method"], scope["path"])
        if need is not None:
            token = _bearer(scope)
            key = self.svc.keys.cached(token) or await anyio.to_thread.run_sync(
                self.svc.keys.lookup, token
            )
            if key is None:
                what = "an unknown API key" if token else "no API key"
                await _reply(send, 401, f"{what}: send the header 'Authorization: Bearer <key>'",
                             ((b"www-authenticate", b"Bearer"),))  # fmt: skip
                return
            if not allows(key.scope, need):
                await _reply(
                    send, 403, f"key {key.name!r} has scope {key.scope!r}; this needs {need!r}"
                )
                return
            scope.setdefault("state", {})["key"] = key
        if scope["method"] in ("POST", "PUT", "PATCH"):
            receive = await self._body(scope, receive, send)
            if receive is None:
                return
        await self.app(scope, receive, send)

    async def _body(self, scope: Scope, receive: Any, send: Any) -> Any:
        """A `receive` replaying the body read whole, or None when refused (replied)."""
        limit = self.svc.max_body
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _reply(send, 413, f"request body of {length} bytes; the limit is {limit}")
            return None
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _reply(send, 413, f"request body over {limit} bytes (the limit)")
                return None
        kind = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if body.strip() and kind != "application/json":
            await _reply(
                send,
                415,
                f"send JSON with 'Content-Type: application/json', not {kind or 'no type'!r}",
            )
            return None
        done = False

        async def replay() -> dict[str, Any]:
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
