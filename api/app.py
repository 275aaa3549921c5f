"""The FastAPI application: ``create_app()`` and its lifespan.  Importing defines, never runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response

from specwatch import __version__
from specwatch.config import Settings
from specwatch.services.context import ProcessContext

from .deps import Context
from .errors import install_error_handlers
from .responses import FastJSONResponse
from .routes import definitions, jobs, metrics

log = structlog.get_logger("specwatch.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API; the lifespan opens the process context and refuses an outdated schema."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = await ProcessContext.open(settings)
        app.state.context = context
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

    @app.middleware("http")
    async def bind_request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.clear_contextvars()
        response.headers["X-Request-ID"] = request_id
        return response

    @app.get("/healthz", tags=["service"], summary="Liveness and backlog")
    async def healthz(context: Context) -> FastJSONResponse:
        return FastJSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "series_store": context.series.name,
                "outbox_pending": await context.deliverer.pending(),
            }
        )

    for router in (jobs.router, metrics.router, definitions.router):
        app.include_router(router)
    return app
