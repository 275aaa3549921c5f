"""Handlers of /api/v1/jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request

from specwatch.api import schemas
from specwatch.api.cursor import Cursor, decode_cursor, encode_cursor
from specwatch.api.deps import MAX_ID, Context, base_url, read_access, require_scope
from specwatch.api.edge import EdgeRoute, large_body
from specwatch.api.openapi import problems
from specwatch.api.params import Instant
from specwatch.api.responses import FastJSONResponse
from specwatch.api.views import job_detail, job_summary
from specwatch.metrics.limits import INT32_MAX
from specwatch.metrics.records import JobFilter
from specwatch.services.tokens import Principal

router = APIRouter(route_class=EdgeRoute, prefix="/api/v1/jobs", tags=["jobs"])

_JOB_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An lsst.verify job JSON (as Job.write() writes it; bare NaN allowed), "
        "with the build's context in `meta`.",
        "content": {"application/json": {"schema": schemas.JOB_SCHEMA}},
    }
}


@router.post(
    "",
    status_code=201,
    openapi_extra=_JOB_BODY_DOC,
    summary="Ingest a verification job",
    response_model=schemas.JobCreated,
    responses={
        200: {
            "description": "The same job was already stored; nothing changed.",
            "model": schemas.JobCreated,
        },
        **problems(409),
    },
)
@large_body
async def post_job(
    request: Request,
    context: Context,
    principal: Annotated[Principal, Depends(require_scope("write:jobs"))],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> FastJSONResponse:
    body = await request.body()  # EdgeRoute bounds it by SPECWATCH_MAX_JOB_BYTES
    result = await context.jobs().ingest(
        body,
        idempotency_key=idempotency_key,
        allowed_packages=principal.packages,
        may_define=principal.has("write:definitions"),
    )
    url = f"{base_url(request, context)}/api/v1/jobs/{result.id}"
    return FastJSONResponse(
        {
            "id": result.id,
            "url": url,
            "created": result.created,
            "specs_ignored": result.specs_ignored,
        },
        status_code=201 if result.created else 200,
        headers={"Location": url},
    )


@router.get(
    "",
    summary="List jobs, newest build first",
    dependencies=[Depends(read_access)],
    response_model=schemas.JobList,
)
async def list_jobs(
    request: Request,
    context: Context,
    branch: str | None = None,
    pr: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
    commit: str | None = None,
    dataset: str | None = None,
    since: Instant = None,
    until: Instant = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> FastJSONResponse:
    where = JobFilter(
        branch=branch, pr=pr, commit=commit, dataset=dataset, since=since, until=until
    )
    jobs = await context.jobs().list_jobs(where, before=decode_cursor(cursor), limit=limit)
    root = base_url(request, context)
    return FastJSONResponse(
        {
            "jobs": [job_summary(job, root) for job in jobs],
            "next_cursor": encode_cursor(jobs[-1].time, jobs[-1].id)
            if len(jobs) == limit
            else None,
        }
    )


@router.get(
    "/{job_id}",
    summary="One job: context, measurements, blobs",
    response_model=schemas.JobDetail,
    responses=problems(404),
    dependencies=[Depends(read_access)],
)
async def get_job(
    request: Request, context: Context, job_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> FastJSONResponse:
    job, blobs = await context.jobs().get(job_id)
    return FastJSONResponse(job_detail(job, blobs, base_url(request, context)))
