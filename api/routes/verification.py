"""Handlers of verdicts and requirements."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from specwatch.api import schemas
from specwatch.api.deps import MAX_ID, Context, base_url, read_access, require_scope
from specwatch.api.edge import EdgeRoute
from specwatch.api.openapi import problems
from specwatch.api.responses import FastJSONResponse
from specwatch.api.views import iso, job_summary, number
from specwatch.metrics.model import Level
from specwatch.metrics.verification import Verdict, highest_level
from specwatch.services.compare import BUILD_REF
from specwatch.services.tokens import Principal

router = APIRouter(route_class=EdgeRoute, prefix="/api/v1", tags=["verification"])


def verdict_view(verdict: Verdict) -> dict[str, Any]:
    return {
        "metric": verdict.metric,
        "spec": verdict.spec,
        "level": verdict.level.value if verdict.level else None,
        "status": verdict.status.value,
        "value": number(verdict.value),
        "operator": verdict.operator,
        "threshold": verdict.threshold,
        "unit": verdict.unit,
        "measured": verdict.measured,
        "requirements": list(verdict.requirements),
    }


@router.get(
    "/jobs/{job_id}/verdicts",
    summary="A job's verdicts: every measurement against every applicable specification",
    response_model=schemas.JobVerdicts,
    responses=problems(404),
    dependencies=[Depends(read_access)],
)
async def get_verdicts(
    request: Request, context: Context, job_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> FastJSONResponse:
    job, verdicts = await context.verification().verdicts(job_id)
    by_metric: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        by_metric.setdefault(verdict.metric, []).append(verdict)
    levels = {}
    for metric, metric_verdicts in sorted(by_metric.items()):
        level = highest_level(metric_verdicts)
        levels[metric] = level.value if level else None
    counts = Counter(v.status.value for v in verdicts)
    return FastJSONResponse(
        {
            "job": job_summary(job, base_url(request, context)),
            "summary": {s: counts.get(s, 0) for s in ("pass", "fail", "not_tested")},
            "highest_level": levels,
            "verdicts": [verdict_view(v) for v in verdicts],
        }
    )


@router.get(
    "/requirements",
    summary="Each requirement's verification status on the latest build (LDM-503)",
    response_model=schemas.Requirements,
    responses=problems(404),
    dependencies=[Depends(read_access)],
)
async def get_requirements(
    request: Request, context: Context, dataset: str | None = None, branch: str = "main"
) -> FastJSONResponse:
    status = await context.verification().requirements(
        dataset=dataset, branch=branch, known_dataset=True
    )
    root = base_url(request, context)
    build = None
    if status.jobs:
        first = status.jobs[0]
        build = {
            "commit": first.context.commit,
            "branch": branch,
            "dataset": dataset,
            "time": iso(max(job.time for job in status.jobs)),
            "jobs": [job_summary(job, root) for job in status.jobs],
        }
    return FastJSONResponse(
        {
            "build": build,
            "requirements": [
                {
                    "id": s.requirement.id,
                    "title": s.requirement.title,
                    "method": s.requirement.method.value,
                    "status": s.fraction,
                    "levels": {level: c.as_dict() for level, c in s.levels.items()},
                    "specs": list(s.specs),
                }
                for s in status.requirements
            ],
        }
    )


@router.get(
    "/compare",
    summary="Compare a build (job, commit or pr:N) with its baseline, worst first",
    response_model=schemas.Comparison,
    responses=problems(404),
    dependencies=[Depends(read_access)],
)
async def get_compare(
    request: Request,
    context: Context,
    head: Annotated[
        str,
        Query(pattern=BUILD_REF, description="job id, commit, or pr:N (its latest build)"),
    ],
    base: Annotated[
        str, Query(pattern=f"{BUILD_REF}|^auto$", description="job id, commit, or auto")
    ] = "auto",
    branch: Annotated[str, Query(min_length=1, description="target branch of base=auto")] = "main",
    n: Annotated[int, Query(ge=1, le=100, description="baseline builds (base=auto)")] = 10,
) -> FastJSONResponse:
    result = await context.compare().compare(head, base, branch=branch, n=n)
    root = base_url(request, context)

    def level(value: Level | None) -> str | None:
        return value.value if value else None

    return FastJSONResponse(
        {
            "head": {"ref": head, "jobs": [job_summary(j, root) for j in result.head_jobs]},
            "base": {
                "ref": base,
                "branch": branch,
                "how": result.baseline,
                "jobs": [job_summary(j, root) for j in result.base_jobs],
            },
            "metrics": [
                {
                    "metric": m.metric,
                    "dataset": m.dataset,
                    "filter": m.filter,
                    "verdict": m.comparison.outcome.value,
                    "base_mean": m.comparison.base_mean,
                    "base_std": m.comparison.base_std,
                    "base_n": m.comparison.base_n,
                    "head_value": number(m.comparison.head_value),
                    "delta": m.comparison.delta,
                    "delta_pct": m.comparison.delta_pct,
                    "delta_sigma": m.comparison.delta_sigma,
                    "unit": m.unit,
                    "head_job": m.head_job,
                    "level": {
                        "base": level(m.base_level),
                        "head": level(m.head_level),
                        "crossed": m.base_level != m.head_level,
                    },
                    "specs": [verdict_view(v) for v in m.specs],
                }
                for m in result.metrics
            ],
        }
    )


@router.post(
    "/requirements", summary="Import requirements (upsert)", response_model=schemas.UpsertCounts
)
async def post_requirements(
    upload: schemas.RequirementsUpload,
    context: Context,
    principal: Annotated[Principal, Depends(require_scope("write:definitions"))],
) -> FastJSONResponse:
    counts = await context.verification().import_requirements(
        upload.text, source=f"upload.{upload.format}", allowed_packages=principal.packages
    )
    return FastJSONResponse(
        {"added": counts.added, "updated": counts.updated, "unchanged": counts.unchanged}
    )
