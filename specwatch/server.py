"""The process ``specwatch serve`` runs: the API with the dashboard on the same server."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from specwatch.api.app import create_app
from specwatch.config import Settings
from specwatch.dashboard.app import create_dashboard
from specwatch.logging import configure_logging


def create_server(settings: Settings | None = None) -> FastAPI:
    """The API (``/api/v1``, ``/docs``, ``/healthz``) and the dashboard (``/dashboard/``,
    where ``/`` leads).

    Without ``settings`` (uvicorn's factory): the environment's, and logging configured as
    the CLI does, since each worker of ``--workers N`` is a fresh interpreter.
    """
    if settings is None:
        settings = Settings()
        configure_logging(settings.log_format, settings.log_level)
    app = create_app(settings)
    create_dashboard(app, root_path=settings.effective_root_path)
    if settings.effective_root_path:
        app.add_middleware(RootPath, root_path=settings.effective_root_path)  # the outermost
    return app


class RootPath:
    """Serve under a proxy's path prefix, whether the proxy strips it or passes it on: every
    request gets it as its ``root_path`` (the docs, the OpenAPI servers and the dashboard build
    their URLs on it; routing takes it off the path when the proxy passed it on).  Uvicorn's
    own ``--root-path`` assumes the proxy strips the prefix, and would double it otherwise."""

    def __init__(self, app: ASGIApp, *, root_path: str) -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "root_path": self.root_path}
        await self.app(scope, receive, send)
