"""`lifelong serve DIR`: a deployment's HTTP API (FastAPI on uvicorn; the `serve`
extra). Predictions from the production version held in memory, feedback committed
before it is acknowledged, updates in a separate updater process, API keys with scopes
(`lifelong deploy keys create DIR --scope predict|feedback|admin`), Prometheus metrics.
See `lifelong.serve.app` for the endpoints and `lifelong.client.Client` for Python.

Only the standard library at import: `lifelong --help` stays light."""

from __future__ import annotations

import argparse
import os


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `lifelong serve`."""
    p.add_argument("dir", help="a deployment folder (lifelong deploy create)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    p.add_argument("--max-body-mb", type=float, default=4.0, help="largest request body (4 MB)")
    p.add_argument(
        "--poll-s", type=float, default=0.25,
        help="how often each process reads the production alias (default 0.25 s)",
    )  # fmt: skip
    p.add_argument(
        "--check-every-s", type=float, default=10.0,
        help="how often, at most, the update policy is asked while data arrives (10 s)",
    )  # fmt: skip
    p.add_argument("--no-updater", action="store_true", help="never update from this server")
    p.add_argument("--torch-threads", type=int, default=1, help="torch threads per process (1)")


def main(args: argparse.Namespace) -> int:
    """Check the deployment, then run uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise ValueError(
            'lifelong serve needs the serve extra: pip install "lifelong[serve]"'
        ) from None
    from lifelong.deploy.deployment import Deployment

    for name in ("workers", "port", "torch_threads"):
        if getattr(args, name) < 1:
            raise ValueError(
                f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}"
            )
    for name in ("max_body_mb", "poll_s", "check_every_s"):
        if not getattr(args, name) > 0:
            raise ValueError(
                f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}"
            )
    with Deployment(args.dir):  # a clear error now rather than in every worker
        pass
    os.environ.update(
        LIFELONG_SERVE_DIR=os.path.abspath(args.dir),
        LIFELONG_SERVE_POLL_S=str(args.poll_s),
        LIFELONG_SERVE_CHECK_EVERY_S=str(args.check_every_s),
        LIFELONG_SERVE_MAX_BODY_MB=str(args.max_body_mb),
        LIFELONG_SERVE_UPDATER="0" if args.no_updater else "1",
        LIFELONG_SERVE_TORCH_THREADS=str(args.torch_threads),
    )
    uvicorn.run(
        "lifelong.serve.app:from_env", factory=True, host=args.host, port=args.port,
        workers=args.workers, timeout_graceful_shutdown=5,
    )  # fmt: skip
    return 0
