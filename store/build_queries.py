"""Queries of the dashboard's job and pull-request pages.

Never commits; every query is bounded by a limit and served by an index: blobs by their
``(job_id, identifier)`` unique constraint, a pull request's jobs by ``(pr, time, id)``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from specwatch.metrics.records import StoredJob

from .jobs import JobStore
from .models import SQLBlob, SQLJob


async def blob_identifiers(session: AsyncSession, job_id: int, *, limit: int = 1000) -> set[str]:
    """The identifiers of a job's blobs (not their arrays, which can be large)."""
    query = select(SQLBlob.identifier).where(SQLBlob.job_id == job_id).limit(limit)
    return set(await session.scalars(query))


async def pull_request_jobs(session: AsyncSession, pr: int, *, limit: int = 60) -> list[StoredJob]:
    """Full jobs of a pull request (every build, every dataset), the newest ``limit``,
    oldest first."""
    query = (
        select(SQLJob.id)
        .where(SQLJob.pr == pr)
        .order_by(SQLJob.time.desc(), SQLJob.id.desc())
        .limit(limit)
    )
    jobs = await JobStore(session).get_many(list(await session.scalars(query)))
    return sorted(jobs, key=lambda job: (job.time, job.id))
