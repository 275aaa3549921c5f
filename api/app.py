"""The FastAPI application: ``create_app()`` and its lifespan.  Importing defines, never runs."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from specwatch import __version__
from specwatch.config import Settings
from specwatch.services.context import ProcessContext

from .deps import Context
from .edge import EdgeMiddleware, EdgeRoute
from .errors import install_error_handlers
from .openapi import install_openapi
from .responses import FastJSONResponse
from .routes import alerts, definitions, jobs, metrics, ops, regressions, verification
from .schemas import Health

log = structlog.get_logger("specwatch.api")


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

    # Swagger UI and ReDoc from assets the package ships: no CDN (offline observatory networks).
    app = FastAPIOffline(
        title="Specwatch",
        version=__version__,
        description="Continuous metric verification: lsst.verify jobs in, verdicts out.",
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
    )
    app.router.route_class = EdgeRoute
    install_error_handlers(app)
    app.add_middleware(EdgeMiddleware, access_log=settings.access_log)

    @app.get("/healthz", tags=["service"], summary="Liveness and backlog", response_model=Health)
    async def healthz(context: Context) -> FastJSONResponse:
        return FastJSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "series_store": context.series.name,
                "outbox_pending": await context.deliverer.pending(),
                # Series waiting for change detection (after ingests or a definition change).
                "detection_pending": await context.detection_pending(),
                "alerts_unsent": await context.dispatcher.pending() if context.dispatcher else 0,
            }
        )

    # /metrics/{name:path}/changes (regressions) before /metrics/{name:path} (metrics).
    routers = (ops, jobs, regressions, metrics, definitions, verification, alerts)
    for module in routers:
        app.include_router(module.router)
    install_openapi(
        app,
        read_token_required=settings.read_token_required,
        max_param_chars=settings.max_param_chars,
    )
    return app
