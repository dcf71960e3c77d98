"""A Python client of `lifelong serve` (needs httpx, in the `serve` extra).

    from lifelong.client import Client
    c = Client("http://127.0.0.1:8000", key)
    out = c.predict(rows)                      # {"version", "classes", "probabilities", "ids"}
    c.feedback(ids=out["ids"], labels=[3, 1])  # labels of those predictions, later
    c.feedback(rows=x, labels=y, subject="patient-17")  # new labelled samples
    c.versions(); c.promote("v1.2"); c.rollback(); c.forget("patient-17"); c.update()

A refused request raises `ApiError` with the status code and the server's reason."""

from __future__ import annotations

from typing import Any


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
        self, rows: Any, *, task: Any = None, subject: Any = None, record: bool = True
    ) -> dict[str, Any]:
        """Classes, probabilities, the version that answered and the prediction ids."""
        body = {
            "rows": _rows(rows),
            "task": _plain(task),
            "subject": _plain(subject),
            "record": record,
        }
        return dict(self._call("POST", "/v1/predict", body))

    def feedback(
        self,
        labels: Any,
        *,
        ids: Any = None,
        rows: Any = None,
        subject: Any = None,
        task: Any = None,
    ) -> dict[str, Any]:
        """Labels of earlier predictions (`ids`) or new labelled samples (`rows`);
        returns once the server has committed them."""
        body: dict[str, Any] = {"labels": _plain(labels)}
        if ids is not None:
            body["ids"] = _plain(ids)
        if rows is not None:
            body.update(rows=_rows(rows), subject=_plain(subject), task=_plain(task))
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
        from urllib.parse import quote

        return dict(self._call("DELETE", f"/v1/subjects/{quote(subject, safe='')}"))
