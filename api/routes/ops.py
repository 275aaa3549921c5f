"""Handlers for operators: ``/readyz`` (may this process take traffic?) and ``/metrics``
(Prometheus).  ``/healthz`` (is it alive?) sits in ``app``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from specwatch.api import schemas
from specwatch.api.deps import Context, read_access
from specwatch.api.edge import EdgeRoute
from specwatch.api.errors import problem
from specwatch.api.responses import FastJSONResponse
from specwatch.telemetry import backlog_gauges, exposition

router = APIRouter(route_class=EdgeRoute, tags=["service"])


@router.get(
    "/readyz",
    summary="Readiness: database schema, series store, outbox backlog",
    response_model=schemas.Readiness,
    description="200 when the database is at the latest migration, the series store answers "
    "and at most `SPECWATCH_READY_MAX_OUTBOX` jobs wait for it; otherwise a 503 problem "
    "whose `errors` name each failed check (`location: ['checks', <name>]`) and why.",
)
async def readyz(request: Request, context: Context) -> Response:
    readiness = await context.ops().readiness()
    checks = readiness.checks()
    if readiness.ready:
        views = {name: {"ok": True, "detail": check.detail} for name, check in checks.items()}
        return FastJSONResponse({"status": "ready", "checks": views})
    failed = [(name, check.detail) for name, check in checks.items() if not check.ok]
    return problem(
        request,
        503,
        "not_ready",
        "not ready: " + "; ".join(f"{name}: {detail}" for name, detail in failed),
        errors=[
            {"location": ["checks", name], "message": detail, "type": "not_ready"}
            for name, detail in failed
        ],
    )


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(read_access)])
async def prometheus_metrics(request: Request, context: Context) -> Response:
    """Prometheus exposition: request and work metrics, and the backlogs read now."""
    backlog = await context.ops().backlog()
    extra = (
        backlog_gauges(
            outbox_pending=backlog.outbox_pending,
            outbox_oldest_age_s=backlog.outbox_oldest_age_s,
            alerts_unsent=backlog.alerts_unsent,
            detection_pending=backlog.detection_pending,
        )
        if backlog is not None
        else []
    )
    body, content_type = exposition(request.headers.get("accept", ""), extra)
    return Response(body, media_type=content_type)
