"""Report runs: which build of a dataset and branch was last reported (never commits)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import SQLReportRun


class ReportRunStore:
    """The runs of the verification report, newest first on ``ix_report_run_key``."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def latest_build_time(
        self, dataset: str, branch: str, *, before: datetime | None = None
    ) -> datetime | None:
        """The build time of the latest run (of a build before ``before``, when given)."""
        query = select(SQLReportRun.build_time).where(
            SQLReportRun.dataset == dataset, SQLReportRun.branch == branch
        )
        if before is not None:
            query = query.where(SQLReportRun.build_time < before)
        return await self._session.scalar(query.order_by(SQLReportRun.created_at.desc()).limit(1))

    async def add(self, dataset: str, branch: str, build_time: datetime, now: datetime) -> None:
        self._session.add(
            SQLReportRun(dataset=dataset, branch=branch, build_time=build_time, created_at=now)
        )
        await self._session.flush()
