"""Queries of the dashboard's overview: the contexts of a branch and their recent jobs.

Never commits; every query is bounded by a limit.  They read the job table through its
``(branch, time, id)`` and ``(dataset, branch, time)`` indexes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from specwatch.metrics.records import StoredJob

from .jobs import JobStore
from .models import SQLJob


@dataclass(frozen=True, slots=True)
class BranchContext:
    """One dataset × instrument × filter seen on a branch: its number of jobs and newest one."""

    dataset: str | None
    instrument: str | None
    filter: str | None
    jobs: int
    last_time: datetime


def _equals(column: InstrumentedAttribute[str | None], value: str | None) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


async def branch_contexts(
    session: AsyncSession, *, branch: str, limit: int = 200
) -> list[BranchContext]:
    """The dataset × instrument × filter contexts of ``branch`` (pull requests left out),
    the most recently built first."""
    last = func.max(SQLJob.time)
    query = (
        select(SQLJob.dataset, SQLJob.instrument, SQLJob.filter, func.count(), last)
        .where(SQLJob.branch == branch, SQLJob.pr.is_(None))
        .group_by(SQLJob.dataset, SQLJob.instrument, SQLJob.filter)
        .order_by(last.desc(), SQLJob.dataset, SQLJob.instrument, SQLJob.filter)
        .limit(limit)
    )
    rows = await session.execute(query)
    return [BranchContext(d, i, f, int(n), t) for d, i, f, n, t in rows]


async def recent_context_jobs(
    session: AsyncSession,
    *,
    branch: str,
    dataset: str | None,
    contexts: Sequence[tuple[str | None, str | None]],
    per_context: int = 30,
) -> list[StoredJob]:
    """Full jobs: the last ``per_context`` (by build time) of each ``(instrument, filter)`` of
    a dataset on ``branch`` (pull requests left out), oldest first.

    One small query per context, each a walk down the ``(dataset, branch, time)`` index.
    """
    ids: list[int] = []
    for instrument, filter_ in contexts:
        query = (
            select(SQLJob.id)
            .where(
                SQLJob.branch == branch,
                SQLJob.pr.is_(None),
                _equals(SQLJob.dataset, dataset),
                _equals(SQLJob.instrument, instrument),
                _equals(SQLJob.filter, filter_),
            )
            .order_by(SQLJob.time.desc(), SQLJob.id.desc())
            .limit(per_context)
        )
        ids += await session.scalars(query)
    jobs = await JobStore(session).get_many(ids)
    return sorted(jobs, key=lambda job: (job.time, job.id))
