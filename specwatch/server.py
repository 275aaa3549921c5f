"""The process ``specwatch serve`` runs: the API with the dashboard on the same server."""

from __future__ import annotations

from fastapi import FastAPI

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
    return app
