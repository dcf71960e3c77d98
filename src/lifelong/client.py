"""A Python client of `lifelong serve` (needs httpx, in the `serve` extra).

    from lifelong.client import Client
    c = Client("http://127.0.0.1:8000", key)
    out = c.predict(rows)                      # {"version", "classes", "probabilities", "ids"}
    c.feedback(ids=out["ids"], labels=[3, 1])  # labels of those predictions, later
    c.feedback(rows=x, labels=y, subject="patient-17")  # new labelled samples
    c.versions(); c.promote("v1.2"); c.rollback(); c.forget("patient-17"); c.update()
    c.predict(texts=["a review"], user="ann")  # a text model; a user's personal head
    c.feedback(texts=docs, labels=y, users=owners)    # each row trains its owner's head
    c.forget_user("ann")

A refused request raises `ApiError` with the status code and the server's reason."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


class ApiError(Exception):
    """The server answered with an error status (`status`) and reason (`detail`)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


def _rows(x: Any) -> list[Any]:
    """Rows of numbers for JSON: numpy arrays and torch tensors flattened per row."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if hasattr(x, "reshape") and hasattr(x, "tolist"):
        return list(x.reshape(len(x), -1).tolist())
    return [list(r) for r in x]


def _plain(v: Any) -> Any:
    return v.tolist() if hasattr(v, "tolist") else v


def _inputs(rows: Any, texts: Any, user: Any, users: Any) -> dict[str, Any]:
    """The inputs of a body: `rows` or `texts`, and the users they belong to, if any."""
    if (rows is None) == (texts is None):
        raise ValueError("give rows (features) or texts (a text model's documents)")
    out: dict[str, Any] = {"rows": _rows(rows)} if rows is not None else {"texts": list(texts)}
    if user is not None:
        out["user"] = user
    if users is not None:
        out["users"] = [str(u) for u in users]
    return out


class Client:
    def __init__(self, url: str, key: str | None = None, timeout: float = 30.0) -> None:
        import httpx

        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, path, json=body)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ApiError(r.status_code, detail)
        return r.json() if r.content else None

    def predict(
        self,
        rows: Any = None,
        *,
        texts: list[str] | None = None,
        task: Any = None,
        subject: Any = None,
        record: bool = True,
        user: str | None = None,
        users: list[str] | None = None,
    ) -> dict[str, Any]:
        """Classes, probabilities, the version that answered and the prediction ids.
        Inputs: feature `rows`, or `texts` for a text model; `user` (every row) or
        `users` (one per row) answer with those users' personal heads."""
        body: dict[str, Any] = {"task": _plain(task), "subject": _plain(subject), "record": record}
        body.update(_inputs(rows, texts, user, users))
        return dict(self._call("POST", "/v1/predict", body))

    def feedback(
        self,
        labels: Any,
        *,
        ids: Any = None,
        rows: Any = None,
        texts: list[str] | None = None,
        subject: Any = None,
        task: Any = None,
        user: str | None = None,
        users: list[str] | None = None,
    ) -> dict[str, Any]:
        """Labels of earlier predictions (`ids`) or new labelled samples (`rows`, or
        `texts` for a text model; of `user`, or one user per row in `users`, to train
        their personal heads); returns once the server has committed them."""
        body: dict[str, Any] = {"labels": _plain(labels)}
        if ids is not None:
            body["ids"] = _plain(ids)
        if rows is not None or texts is not None:
            body.update(_inputs(rows, texts, user, users))
            if subject is not None or task is not None:
                body.update(subject=_plain(subject), task=_plain(task))
        return dict(self._call("POST", "/v1/feedback", body))

    def versions(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/versions"))

    def status(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/status"))

    def promote(self, version: str) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/promote", {"version": version}))

    def rollback(self, version: str | None = None) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/rollback", {"version": version}))

    def update(self) -> dict[str, Any]:
        """Ask for an update now (it runs in the updater process; see `status`)."""
        return dict(self._call("POST", "/v1/update"))

    def forget(self, subject: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/subjects/{quote(subject, safe='')}"))

    def forget_user(self, user: str) -> dict[str, Any]:
        """Delete a user's personal head, memory and samples (admin)."""
        return dict(self._call("DELETE", f"/v1/users/{quote(user, safe='')}"))
