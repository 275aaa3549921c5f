"""Handlers of change points: regressions, a metric's changes, triage, excluded jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from specwatch.api import schemas
from specwatch.api.cursor import Cursor, decode_cursor, encode_cursor
from specwatch.api.deps import MAX_ID, Context, base_url, read_access, require_scope
from specwatch.api.edge import EdgeRoute
from specwatch.api.openapi import problems
from specwatch.api.params import Instant, MetricName
from specwatch.api.responses import FastJSONResponse
from specwatch.api.views import iso
from specwatch.metrics.records import ChangeFilter, ChangeRecord
from specwatch.services.metrics import as_utc
from specwatch.services.tokens import Principal

router = APIRouter(route_class=EdgeRoute, prefix="/api/v1", tags=["regressions"])
_VERDICTS = {"worse": ("worse",), "better": ("better",), "changed": ("changed",), "any": ()}
Triage = Annotated[Principal, Depends(require_scope("triage"))]


def change_view(change: ChangeRecord, root: str) -> dict[str, Any]:
    key = change.key
    return {
        "id": change.id,
        "metric": key.metric,
        "unit": change.unit,
        "dataset": key.dataset or None,
        "filter": key.filter or None,
        "instrument": key.instrument or None,
        "branch": key.branch or None,
        "time": iso(change.time),
        "job_id": change.job_id,
        "job_url": f"{root}/api/v1/jobs/{change.job_id}",
        "previous_job_id": change.previous_job_id,
        "commits": {"before": change.commit_before, "after": change.commit_after},
        "before": change.before,
        "after": change.after,
        "delta": change.delta,
        "delta_pct": change.delta_pct,
        "delta_sigma": change.delta_sigma,
        "sigma": change.sigma,
        "verdict": change.verdict,
        "status": change.status,
        "note": change.note,
    }


async def _list(
    request: Request, context: Context, where: ChangeFilter, cursor: str | None, limit: int
) -> FastJSONResponse:
    after = decode_cursor(cursor)
    changes = await context.regressions().changes(where, after=after, limit=limit)
    root = base_url(request, context)
    last = changes[-1] if len(changes) == limit else None
    return FastJSONResponse(
        {
            "changes": [change_view(c, root) for c in changes],
            # Stored changes have ids; a page ends at the last one's time and id.
            "next_cursor": encode_cursor(last.time, last.id or 0) if last else None,
        }
    )


Status = Literal["open", "accepted", "all"]
Verdict = Literal["worse", "better", "changed", "any"]


@router.get(
    "/regressions",
    summary="Changes for the worse (by default), newest first",
    response_model=schemas.ChangeList,
    dependencies=[Depends(read_access)],
)
async def get_regressions(
    request: Request,
    context: Context,
    since: Instant = None,
    dataset: str | None = None,
    branch: str | None = None,
    status: Status = "open",
    verdict: Verdict = "worse",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> FastJSONResponse:
    where = ChangeFilter(
        dataset=dataset,
        branch=branch,
        status=None if status == "all" else status,
        verdicts=_VERDICTS[verdict],
        since=as_utc(since),
    )
    return await _list(request, context, where, cursor, limit)


@router.get(
    "/metrics/{name:path}/changes",
    summary="Every change point of a metric's series",
    response_model=schemas.ChangeList,
    responses=problems(404),
    dependencies=[Depends(read_access)],
)
async def get_metric_changes(
    request: Request,
    context: Context,
    name: MetricName,
    dataset: str | None = None,
    branch: str | None = None,
    since: Instant = None,
    status: Status = "all",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> FastJSONResponse:
    await context.metrics().get(name)  # 404 for an unknown metric
    where = ChangeFilter(
        metric=name,
        dataset=dataset,
        branch=branch,
        status=None if status == "all" else status,
        since=as_utc(since),
    )
    return await _list(request, context, where, cursor, limit)


@router.post(
    "/changes/{change_id}/accept",
    summary="Mark a change as expected",
    response_model=schemas.Change,
    responses=problems(404),
)
async def accept_change(
    request: Request,
    context: Context,
    principal: Triage,
    change_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: schemas.TriageNote | None = None,
) -> FastJSONResponse:
    change = await context.regressions().set_status(
        change_id, "accepted", body.note if body else "", allowed_packages=principal.packages
    )
    return FastJSONResponse(change_view(change, base_url(request, context)))


@router.post(
    "/changes/{change_id}/reopen",
    summary="Undo an acceptance",
    response_model=schemas.Change,
    responses=problems(404),
)
async def reopen_change(
    request: Request,
    context: Context,
    principal: Triage,
    change_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> FastJSONResponse:
    change = await context.regressions().set_status(
        change_id, "open", "", allowed_packages=principal.packages
    )
    return FastJSONResponse(change_view(change, base_url(request, context)))


@router.put(
    "/jobs/{job_id}/exclusion",
    summary="Exclude a job's points from detection",
    response_model=schemas.ExclusionResult,
    responses=problems(404),
)
async def exclude_job(
    context: Context,
    principal: Triage,
    job_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: schemas.Exclusion | None = None,
) -> FastJSONResponse:
    series = await context.regressions().exclude(
        job_id, body.reason if body else "", allowed_packages=principal.packages
    )
    return FastJSONResponse({"job_id": job_id, "excluded": True, "series_redetected": series})


@router.delete(
    "/jobs/{job_id}/exclusion",
    summary="Count a job's points again",
    response_model=schemas.ExclusionResult,
    responses=problems(404),
)
async def include_job(
    context: Context, principal: Triage, job_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> FastJSONResponse:
    series = await context.regressions().exclude(
        job_id, "", excluded=False, allowed_packages=principal.packages
    )
    return FastJSONResponse({"job_id": job_id, "excluded": False, "series_redetected": series})
