"""Handlers of verdicts and requirements."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from specwatch.api.deps import MAX_ID, Context, base_url, read_access, require_scope
from specwatch.api.responses import FastJSONResponse
from specwatch.api.views import iso, job_summary, number
from specwatch.metrics.verification import Verdict, highest_level
from specwatch.services.tokens import Principal

router = APIRouter(prefix="/api/v1", tags=["verification"])


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
        "requirements": list(verdict.requirements),
    }


@router.get(
    "/jobs/{job_id}/verdicts",
    summary="A job's verdicts: every measurement against every applicable specification",
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
    dependencies=[Depends(read_access)],
)
async def get_requirements(
    request: Request, context: Context, dataset: str | None = None, branch: str = "main"
) -> FastJSONResponse:
    status = await context.verification().requirements(dataset=dataset, branch=branch)
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


class RequirementsUpload(BaseModel):
    """A verification matrix (LDM-503 Appendix A style) as YAML or CSV text."""

    text: str = Field(description="YAML list of {id, title, method, specs} or CSV with a header")
    format: str = Field("yaml", pattern="^(yaml|csv)$")


@router.post("/requirements", summary="Import requirements (upsert)")
async def post_requirements(
    upload: RequirementsUpload,
    context: Context,
    principal: Annotated[Principal, Depends(require_scope("write:definitions"))],
) -> FastJSONResponse:
    counts = await context.verification().import_requirements(
        upload.text, source=f"upload.{upload.format}"
    )
    return FastJSONResponse(
        {"added": counts.added, "updated": counts.updated, "unchanged": counts.unchanged}
    )
