"""The FastAPI application: ``create_app()`` and its lifespan.  Importing defines, never runs."""

from __future__ import annotations

import gc
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from specwatch import __version__
from specwatch.config import Settings
from specwatch.services.context import ProcessContext

from .deps import Context
from .errors import install_error_handlers
from .responses import FastJSONResponse
from .routes import definitions, jobs, metrics, regressions, verification

log = structlog.get_logger("specwatch.api")


class RequestIdMiddleware:
    """Bind a request id to the logs of a request and echo it (pure ASGI: no extra task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = (
            next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
            or uuid.uuid4().hex
        )

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.clear_contextvars()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API; the lifespan opens the process context and refuses an outdated schema."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = await ProcessContext.open(settings)
        app.state.context = context
        # Everything allocated so far lives as long as the process: keep the collector from
        # walking it again and again (full collections paused requests for 50-70 ms).
        gc.collect()
        gc.freeze()
        log.info(
            "specwatch api started",
            series=context.series.name,
            database=settings.database_url.split("://")[0],
        )
        try:
            yield
        finally:
            await context.close()

    app = FastAPI(
        title="Specwatch",
        version=__version__,
        description="Continuous metric verification: lsst.verify jobs in, verdicts out.",
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
    )
    install_error_handlers(app)

    app.add_middleware(RequestIdMiddleware)

    @app.get("/healthz", tags=["service"], summary="Liveness and backlog")
    async def healthz(context: Context) -> FastJSONResponse:
        return FastJSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "series_store": context.series.name,
                "outbox_pending": await context.deliverer.pending(),
                # Series waiting for change detection (after ingests or a definition change).
                "detection_pending": context.detection.pending if context.detection else 0,
            }
        )

    routers = (jobs, metrics, definitions, verification, regressions)
    for module in routers:
        app.include_router(module.router)
    return app
