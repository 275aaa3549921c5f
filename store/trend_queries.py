"""Job queries of the metric trend page: series contexts, the builds of a window, exclusions.
Never commits; every list query is bounded.

A series tag is ``''`` when unset; the job's column is then NULL (or ``''``): ``_tag`` maps
one to the other, so the series and the jobs of one context are the same set.  The builds of
a window come back as columns of plain values (tens of thousands of rows: no ORM objects).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import SQLExclusion, SQLJob, table

_JOB = table(SQLJob)
_CHUNK = 5000  # ids per IN list


def _tag(column: ColumnElement[str | None], value: str) -> ColumnElement[bool]:
    if value == "":
        return or_(column.is_(None), column == "")
    return column == value


@dataclass(slots=True)
class WindowBuilds:
    """Builds as columns, newest first: what the trend page shows of each build."""

    id: list[int] = field(default_factory=list)
    time_ns: list[int] = field(default_factory=list)
    commit: list[str | None] = field(default_factory=list)
    branch: list[str | None] = field(default_factory=list)
    pr: list[int | None] = field(default_factory=list)
    ci_name: list[str | None] = field(default_factory=list)
    ci_id: list[str | None] = field(default_factory=list)
    ci_url: list[str | None] = field(default_factory=list)  # else the build URL

    def __len__(self) -> int:
        return len(self.id)


def _columns() -> Select[
    tuple[int, int, str | None, str | None, int | None, str | None, str | None, str | None]
]:
    return select(
        _JOB.c.id,
        _JOB.c.time_ns,
        _JOB.c.commit,
        _JOB.c.branch,
        _JOB.c.pr,
        _JOB.c.ci_name,
        _JOB.c.ci_id,
        func.coalesce(_JOB.c.ci_url, _JOB.c.build_url),
    )


class TrendQueries:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _builds(
        self,
        query: Select[
            tuple[int, int, str | None, str | None, int | None, str | None, str | None, str | None]
        ],
    ) -> WindowBuilds:
        connection = await self._session.connection()
        rows = (await connection.execute(query)).all()
        found = WindowBuilds()
        if rows:
            columns = list(zip(*rows, strict=True))
            found.id, found.time_ns, found.commit, found.branch = (list(c) for c in columns[:4])
            found.pr, found.ci_name, found.ci_id, found.ci_url = (list(c) for c in columns[4:])
        return found

    async def recent_contexts(self, *, jobs: int) -> list[tuple[str, str, str, str]]:
        """Distinct ``(branch, dataset, filter, instrument)`` of the last ``jobs`` branch
        builds (pull-request builds left out), ``''`` for unset values."""
        recent = (
            select(_JOB.c.branch, _JOB.c.dataset, _JOB.c.filter, _JOB.c.instrument)
            .where(_JOB.c.pr.is_(None), _JOB.c.branch.is_not(None))
            .order_by(_JOB.c.time.desc(), _JOB.c.id.desc())
            .limit(jobs)
            .subquery()
        )
        rows = await self._session.execute(select(recent).distinct())
        return sorted({(b or "", d or "", f or "", i or "") for b, d, f, i in rows})

    async def window_builds(
        self,
        *,
        dataset: str,
        filter: str,
        instrument: str,
        branch: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> WindowBuilds:
        """A context's builds with ``since <= time <= until``, newest first: those of
        ``branch`` (pull requests left out), or with ``branch=None`` the pull-request builds."""
        query = _columns().where(
            _tag(_JOB.c.dataset, dataset),
            _tag(_JOB.c.filter, filter),
            _tag(_JOB.c.instrument, instrument),
        )
        if branch is None:
            query = query.where(_JOB.c.pr.is_not(None))
        else:
            query = query.where(_JOB.c.branch == branch, _JOB.c.pr.is_(None))
        if since is not None:
            query = query.where(_JOB.c.time >= since)
        if until is not None:
            query = query.where(_JOB.c.time <= until)
        return await self._builds(query.order_by(_JOB.c.time.desc(), _JOB.c.id.desc()).limit(limit))

    async def builds(self, job_ids: Sequence[int]) -> WindowBuilds:
        """Builds by id (missing ids left out), in id order."""
        found = WindowBuilds()
        ids = sorted(set(job_ids))
        for start in range(0, len(ids), _CHUNK):
            chunk = await self._builds(
                _columns().where(_JOB.c.id.in_(ids[start : start + _CHUNK])).order_by(_JOB.c.id)
            )
            for name in WindowBuilds.__slots__:
                getattr(found, name).extend(getattr(chunk, name))
        return found

    async def excluded_between(self, first_id: int, last_id: int, *, limit: int) -> set[int]:
        """Excluded jobs with ids in ``first_id … last_id`` (a range scan of the key: the
        exclusions are few, the window's builds many)."""
        query = (
            select(SQLExclusion.job_id)
            .where(SQLExclusion.job_id >= first_id, SQLExclusion.job_id <= last_id)
            .limit(limit)
        )
        return set(await self._session.scalars(query))

    async def context_of(self, job_id: int) -> tuple[str, str, str] | None:
        """``(dataset, filter, instrument)`` of a job, ``''`` for unset values."""
        row = (
            await self._session.execute(
                select(_JOB.c.dataset, _JOB.c.filter, _JOB.c.instrument).where(_JOB.c.id == job_id)
            )
        ).first()
        return None if row is None else (row[0] or "", row[1] or "", row[2] or "")
