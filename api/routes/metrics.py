"""Handlers of /api/v1/metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from specwatch.api import schemas
from specwatch.api.deps import Context, read_access
from specwatch.api.edge import EdgeRoute
from specwatch.api.openapi import problems
from specwatch.api.params import Instant, MetricName
from specwatch.api.responses import FastJSONResponse
from specwatch.api.views import metric_view, spec_view, utc_times
from specwatch.metrics.limits import INT32_MAX
from specwatch.services.metrics import MAX_SERIES_POINTS, SeriesFilter

router = APIRouter(
    route_class=EdgeRoute,
    prefix="/api/v1/metrics",
    tags=["metrics"],
    dependencies=[Depends(read_access)],
)


@router.get("", summary="List metrics by name", response_model=schemas.MetricList)
async def list_metrics(
    context: Context,
    package: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> FastJSONResponse:
    metrics = await context.metrics().list_metrics(package=package, after=cursor, limit=limit)
    return FastJSONResponse(
        {
            "metrics": [metric_view(m) for m in metrics],
            "next_cursor": metrics[-1].full_name if len(metrics) == limit else None,
        }
    )


@router.get(
    "/{name:path}/series",
    summary="A metric's values over time (from the series store)",
    response_model=schemas.Series,
    responses=problems(404),
)
async def get_series(
    context: Context,
    name: MetricName,
    dataset: str | None = None,
    branch: str | None = None,
    filter: str | None = None,
    instrument: str | None = None,
    pr: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
    pipeline: str | None = None,
    since: Instant = None,
    until: Instant = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SERIES_POINTS)] = 1000,
) -> FastJSONResponse:
    where = SeriesFilter(
        dataset=dataset,
        branch=branch,
        filter=filter,
        instrument=instrument,
        pr=pr,
        pipeline=pipeline,
        since=since,
        until=until,
        limit=limit,
    )
    metric, series = await context.metrics().series(name, where)
    return FastJSONResponse(
        {
            "metric": metric.full_name,
            "unit": metric.unit,
            "time": utc_times(series.time_ns),
            "value": series.value,
            "job_id": series.job_id,
            "commit": series.commit,
        }
    )


@router.get(
    "/{name:path}",
    summary="A metric with its specifications",
    response_model=schemas.MetricDetail,
    responses=problems(404),
)
async def get_metric(context: Context, name: MetricName) -> FastJSONResponse:
    metric, specs = await context.metrics().get(name)
    return FastJSONResponse({**metric_view(metric), "specs": [spec_view(s) for s in specs]})
