"""The HTTP service of a deployment (FastAPI): `create_app(DIR)` builds it; `lifelong
serve DIR` runs it on uvicorn. Predictions come from the production version held in
memory (`live`); feedback is committed to the deployment's store before it is
acknowledged; updates run in the updater process (`updater`), never in a request."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lifelong import deploy
from lifelong.deploy import store
from lifelong.deploy.deployment import Deployment
from lifelong.deploy.errors import DeployError, UpdateRunning
from lifelong.deploy.schema import check_batch
from lifelong.models.pretrained import TextEncoder, find_encoder
from lifelong.serve import schemas as s
from lifelong.serve.guard import Guard
from lifelong.serve.keys import Key, KeyRing
from lifelong.serve.live import LiveModel, LiveUsers
from lifelong.serve.metrics import DeploymentCollector, Metrics
from lifelong.serve.updater import Updater

log = logging.getLogger("lifelong.serve")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.Problem, "description": what}
    for code, what in (
        (401, "no key, or an unknown one"), (403, "the key's scope does not allow it"),
        (413, "body too large"), (415, "body not JSON"), (422, "refused input, with the reason"),
    )
}  # fmt: skip


class Service:
    """What the routes share: the deployment, keys, the live model, the updater, metrics."""

    def __init__(
        self, path: Path, *, poll_s: float, check_every_s: float, max_body: int, updater: bool
    ) -> None:
        self.path, self.max_body = path, max_body
        self.dep = Deployment(path)
        self.keys = KeyRing(self.dep.engine)
        self.live = LiveModel(self.dep, interval=poll_s)
        self.users = LiveUsers(self.dep)  # users' heads on the live learner
        self.updater = Updater(path, check_every=check_every_s, enabled=updater)
        self.metrics = Metrics()
        self.metrics.registry.register(DeploymentCollector(self.dep, self.live, self.updater))

    def audit(self, key: Key, request: str, **details: Any) -> None:
        """An admin action's entry in the audit log, with the key's name."""
        with store.transaction(self.dep.engine) as conn:
            self.dep.log(conn, "api", request=request, key=key.name, **details)

    def lock_owner(self) -> str | None:
        with self.dep.engine.connect() as conn:
            row = conn.execute(store.locks.select()).first()
        return None if row is None else f"{row.owner} since {row.since:.0f}"


def describe(errors: Any) -> str:
    """Pydantic's validation errors as one line naming each field and problem (never
    echoing the input, which may hold NaN or be large)."""
    parts = []
    for err in list(errors)[:10]:
        if err.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON: {err.get('ctx', {}).get('error', '')}")
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _key(request: Request) -> Key:
    key: Key = request.state.key  # set by the guard, which refused the request otherwise
    return key


def _served(svc: Service) -> Any:
    served = svc.live.current
    if served is None:
        why = svc.live.error or "no production version yet: send labelled feedback and update"
        raise HTTPException(503, why)
    return served


def _features(served: Any, body: s.PredictIn | s.FeedbackIn) -> np.ndarray:
    """The body's inputs as float32 rows; `texts` only for a text model (`text:...`)."""
    if body.texts is not None:
        try:
            text_model = isinstance(find_encoder(served.learner.model), TextEncoder)
        except ValueError:
            text_model = False
        if not text_model:
            raise DeployError("'texts' need a text model (--model text:...); send feature 'rows'")
    x: np.ndarray = body.features()
    return x


def _predict_users(svc: Service, body: s.PredictIn, users: str | list[str]) -> s.PredictOut:
    """Rows by their users' personal heads (production's for a user without one), with
    the learner this process serves and its cache of heads (`LiveUsers`); recorded with
    each row's user as subject (unless `subject` says otherwise), so `forget_user` covers
    them."""
    if body.task is not None:
        raise DeployError("'task' does not go with 'user' (personal heads have no tasks)")
    served = _served(svc)
    x = _features(served, body)
    classes = svc.users.predict(served, x, users)
    ids = None
    if body.record:
        subject = body.subject if body.subject is not None else users
        with store.transaction(svc.dep.engine) as conn:
            ids = deploy.record_predictions(
                svc.dep, conn, x, classes, served.version, subject, None, time.time()
            )
        svc.updater.activity()
    svc.metrics.rows.labels("predicted").inc(len(classes))
    return s.PredictOut(
        version=served.version, classes=[int(c) for c in classes], probabilities=None, ids=ids
    )


def _predict(svc: Service, body: s.PredictIn) -> s.PredictOut:
    users = body.users if body.users is not None else body.user
    if users is not None:
        return _predict_users(svc, body, users)
    served = _served(svc)
    learner = served.learner
    x = _features(served, body)
    batch = check_batch(x, None, body.subject, body.task, shape=learner.input_shape)
    task = batch.task if learner.scenario == "task" else None
    if learner.scenario != "task" and body.task is not None:
        raise DeployError(f"task ids are for the task scenario; this model is {learner.scenario!r}")
    with served.lock:
        try:
            probs: np.ndarray | None = learner.predict_proba(batch.x, task=task).numpy()
        except ValueError:  # a strategy replaces prediction (no probabilities)
            probs = None
        classes = (
            probs.argmax(1) if probs is not None else learner.predict(batch.x, task=task).numpy()
        )
    ids = None
    if body.record:
        with store.transaction(svc.dep.engine) as conn:
            ids = deploy.record_predictions(
                svc.dep,
                conn,
                batch.x,
                classes,
                served.version,
                batch.subject,
                batch.task,
                time.time(),
            )
        svc.updater.activity()
    svc.metrics.rows.labels("predicted").inc(len(classes))
    return s.PredictOut(
        version=served.version, classes=[int(c) for c in classes],
        probabilities=None if probs is None else probs.astype(np.float64).round(6).tolist(), ids=ids,
    )  # fmt: skip


def _feedback(svc: Service, body: s.FeedbackIn) -> s.FeedbackOut:
    users = body.users if body.users is not None else body.user
    if users is not None:
        served = _served(svc)
        details = svc.users.learn(served, _features(served, body), np.asarray(body.labels), users)
        if isinstance(users, str):
            details["new_user"] = details["new_users"] == 1
        n, form = int(details["ingested"]), "samples"
    elif body.ids is not None:
        out = deploy.label(svc.path, body.ids, body.labels)
        details = out if isinstance(out, dict) else {"labelled": out}
        n, form = len(body.ids), "labels"
    else:
        x = body.features() if body.texts is None else _features(_served(svc), body)
        details = deploy.ingest(svc.path, x, body.labels, body.subject, task=body.task)
        n, form = int(details["ingested"]), "samples"
    svc.updater.activity()
    svc.metrics.rows.labels(f"feedback_{form}").inc(n)
    return s.FeedbackOut(stored=n, form=form, details=details)


def routes(svc: Service) -> APIRouter:
    """The `/v1` endpoints (the guard has checked key, scope and body size already)."""
    r = APIRouter(
        prefix="/v1", dependencies=[Depends(HTTPBearer(auto_error=False))], responses=ERRORS
    )

    @r.post(
        "/predict", response_model=s.PredictOut, summary="predict with production (scope predict)"
    )
    def predict(body: s.PredictIn) -> s.PredictOut:
        return _predict(svc, body)

    @r.post(
        "/feedback",
        response_model=s.FeedbackOut,
        summary="labels or labelled samples (scope feedback)",
    )
    def feedback(body: s.FeedbackIn) -> s.FeedbackOut:
        return _feedback(svc, body)

    @r.post(
        "/update", status_code=202, response_model=s.UpdateOut, summary="run an update now (admin)"
    )
    def update(request: Request) -> s.UpdateOut:
        if not svc.updater.enabled:
            raise HTTPException(409, "this server runs no updater (lifelong serve --no-updater)")
        owner = svc.lock_owner()  # the forced update waits for it
        pid = svc.updater.send("force")
        svc.audit(_key(request), "update", updater_pid=pid)
        return s.UpdateOut(accepted=True, updater_pid=pid, waiting_for=owner)

    @r.get("/versions", summary="versions and aliases (scope predict)")
    def versions() -> dict[str, Any]:
        with svc.dep.engine.connect() as conn:
            return {
                "production": svc.dep.alias(conn, "production"),
                "candidate": svc.dep.alias(conn, "candidate"),
                "versions": svc.dep.versions(conn),
            }

    def switch(request: Request, what: str, version: str | None) -> s.AliasOut:
        if version is not None:
            v = store.versions
            with svc.dep.engine.connect() as conn:
                known = conn.execute(v.select().where(v.c.id == version)).first()
            if known is None:
                raise HTTPException(404, f"no version {version!r}")
        if what == "promote" and version is not None:
            out = deploy.promote(svc.path, version)
        else:
            out = deploy.rollback(svc.path, version)
        svc.audit(_key(request), what, **out)
        try:
            svc.live.refresh()  # this replica serves it now; the others within a poll
        except Exception as e:
            svc.live.error = f"{type(e).__name__}: {e}"
        return s.AliasOut(**out)

    @r.post("/promote", response_model=s.AliasOut, summary="make a version production (admin)")
    def promote(body: s.VersionIn, request: Request) -> s.AliasOut:
        return switch(request, "promote", body.version)

    @r.post(
        "/rollback", response_model=s.AliasOut, summary="back to the previous production (admin)"
    )
    def rollback(request: Request, body: s.RollbackIn | None = None) -> s.AliasOut:
        return switch(request, "rollback", None if body is None else body.version)

    @r.delete(
        "/subjects/{subject:path}", response_model=s.ForgetOut, summary="forget a subject (admin)"
    )
    def forget(subject: str, request: Request) -> s.ForgetOut:
        try:
            s.clean_text(subject)
        except ValueError as e:
            raise HTTPException(422, f"subject id: {e}") from None
        out = deploy.forget(svc.path, subject)
        svc.audit(_key(request), "forget", subject_hash=out["subject_hash"], deleted=out["deleted"])
        return s.ForgetOut(**{k: out[k] for k in ("subject_hash", "deleted", "versions_holding")})

    @r.delete("/users/{user}", response_model=s.UserForgetOut, summary="forget a user (admin)")
    def forget_a_user(user: str, request: Request) -> s.UserForgetOut:
        from lifelong.deploy.users import forget_user
        from lifelong.personal import check_user_id

        try:
            check_user_id(user)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        out = forget_user(svc.path, user)
        svc.users.drop(user)
        svc.audit(_key(request), "forget_user", subject_hash=out["subject_hash"],
                  deleted=out["deleted"], head_deleted=out["head_deleted"])  # fmt: skip
        keep = ("subject_hash", "deleted", "versions_holding", "head_deleted")
        return s.UserForgetOut(**{k: out[k] for k in keep})

    @r.get("/status", summary="versions, pending data, decisions, this process (scope predict)")
    def status() -> dict[str, Any]:
        current = svc.live.current
        return {
            **deploy.status(svc.path),
            "serving": None if current is None else current.version,
            "pid": os.getpid(),
            "updater_pid": svc.updater.pid,
            "update_running": svc.lock_owner(),
            "load_error": svc.live.error,
        }

    return r


def create_app(
    path: str | os.PathLike[str],
    *,
    poll_s: float = 0.25,
    check_every_s: float = 10.0,
    max_body: int = 4 << 20,
    updater: bool = True,
) -> FastAPI:
    """The service of the deployment at `path`; `poll_s`: how often the production
    alias is read; `check_every_s`: how often, at most, the update policy is asked
    while data arrives; `max_body`: the largest request body in bytes."""
    svc = Service(
        Path(path), poll_s=poll_s, check_every_s=check_every_s, max_body=max_body, updater=updater
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        svc.live.start()
        svc.updater.start()
        try:
            yield
        finally:
            svc.live.stop()
            svc.updater.stop()
            svc.dep.engine.dispose()

    app = FastAPI(title="lifelong", version="1", lifespan=lifespan, description=__doc__)
    app.state.service = svc
    app.include_router(routes(svc))

    @app.get("/healthz", summary="liveness, and the version this process serves (no key)")
    def healthz() -> dict[str, Any]:
        current = svc.live.current
        return {"ok": True, "serving": None if current is None else current.version}

    @app.get("/metrics", summary="Prometheus metrics (no key)", response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(UpdateRunning)
    async def _running(_: Request, e: UpdateRunning) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=409)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe(e.errors())}, status_code=422)

    @app.exception_handler(DeployError)
    async def _refused(_: Request, e: DeployError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=422)

    app.add_middleware(Guard, service=svc)
    return app


def from_env() -> FastAPI:
    """The app of `lifelong serve` (a factory, so that uvicorn's workers each build one)."""
    import torch

    torch.set_num_threads(int(os.environ.get("LIFELONG_SERVE_TORCH_THREADS", "1")))
    return create_app(
        os.environ["LIFELONG_SERVE_DIR"],
        poll_s=float(os.environ.get("LIFELONG_SERVE_POLL_S", "0.25")),
        check_every_s=float(os.environ.get("LIFELONG_SERVE_CHECK_EVERY_S", "10")),
        max_body=int(float(os.environ.get("LIFELONG_SERVE_MAX_BODY_MB", "4")) * (1 << 20)),
        updater=os.environ.get("LIFELONG_SERVE_UPDATER", "1") != "0",
    )
