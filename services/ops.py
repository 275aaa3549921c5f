"""Operations: the backlogs a scrape reports, and whether this process is ready for traffic."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from specwatch.exceptions import DatabaseNotReadyError, SeriesStoreError
from specwatch.store.alerts import AlertStore
from specwatch.store.database import check_schema
from specwatch.store.outbox import OutboxStore
from specwatch.store.series.base import TimeSeriesStore
from specwatch.store.work import WorkStore

from .regressions import DETECT

log = structlog.get_logger("specwatch.ops")

_DETAIL_CHARS = 300  # a check's reason is one line of a probe's log
CHECK_TIMEOUT_S = 5.0  # a readiness check that takes longer fails


@dataclass(frozen=True, slots=True)
class Backlog:
    """Work waiting, in every process (counted in the database)."""

    outbox_pending: int  # jobs whose points have not reached the series store
    outbox_oldest_age_s: float  # since the oldest of them was ingested; 0 when none waits
    alerts_unsent: int  # alert notifications neither delivered nor refused for good
    detection_pending: int  # series queued for change detection


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str  # one line: what was found, or why it fails


@dataclass(frozen=True, slots=True)
class Readiness:
    database: Check
    series_store: Check
    outbox: Check

    @property
    def ready(self) -> bool:
        return self.database.ok and self.series_store.ok and self.outbox.ok

    def checks(self) -> dict[str, Check]:
        return {
            "database": self.database,
            "series_store": self.series_store,
            "outbox": self.outbox,
        }


def _reason(error: BaseException) -> str:
    """An error as one short line (drivers write several, with SQL and hints)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:_DETAIL_CHARS]


async def _within(check: Coroutine[Any, Any, Check], timeout_s: float) -> Check:
    """The check's result, or a failure once ``timeout_s`` passed (a probe must not hang)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await check
    except TimeoutError:
        return Check(False, f"no answer within {timeout_s:g} s")


class OpsService:
    """Reads for ``/metrics`` and ``/readyz``: a few cheap queries and one ping, no writes."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        series: TimeSeriesStore,
        *,
        max_outbox: int,
        timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        self._engine = engine
        self._sessionmaker = sessionmaker
        self._series = series
        self._max_outbox = max_outbox
        self._timeout_s = timeout_s

    async def backlog(self) -> Backlog | None:
        """The backlogs, in one session; None when the database cannot say (logged), so that
        a scrape still shows the rest."""
        try:
            async with self._sessionmaker() as session:
                outbox = OutboxStore(session)
                pending = await outbox.pending()
                oldest = await outbox.oldest_ingest() if pending else None
                alerts = await AlertStore(session).undelivered()
                detection = await WorkStore(session).count(DETECT)
        except Exception as error:  # the database is down: the scrape must still answer
            log.warning("backlog not read", error=_reason(error))
            return None
        age_s = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
        return Backlog(pending, max(0.0, age_s), alerts, detection)

    async def readiness(self) -> Readiness:
        """Whether this process can do its work: the schema at the latest migration, the
        series store answering, the outbox under ``max_outbox`` jobs.  Never raises: each
        check says why it fails.  The checks run concurrently (the slowest one's time)."""
        database, series, outbox = await asyncio.gather(
            _within(self._check_database(), self._timeout_s),
            _within(self._check_series(), self._timeout_s),
            _within(self._check_outbox(), self._timeout_s),
        )
        return Readiness(database, series, outbox)

    async def _check_database(self) -> Check:
        try:
            await check_schema(self._engine)
        except DatabaseNotReadyError as error:
            return Check(False, _reason(error))
        except Exception as error:  # refused connection, timeout, authentication …
            return Check(False, f"cannot reach the database: {_reason(error)}")
        return Check(True, "at the latest migration")

    async def _check_series(self) -> Check:
        try:
            await self._series.ping()
        except SeriesStoreError as error:
            return Check(False, _reason(error))
        except Exception as error:  # a bug in a backend must not turn readiness into a 500
            return Check(False, f"{self._series.name}: {_reason(error)}")
        return Check(True, f"{self._series.name} answers")

    async def _check_outbox(self) -> Check:
        limit = self._max_outbox
        try:
            async with self._sessionmaker() as session:
                pending = await OutboxStore(session).pending(cap=limit + 1)
        except Exception as error:
            return Check(False, f"cannot count the outbox: {_reason(error)}")
        if pending > limit:
            return Check(
                False,
                f"more than {limit} jobs wait for the series store (SPECWATCH_READY_MAX_OUTBOX)",
            )
        return Check(True, f"{pending} jobs wait for the series store (limit {limit})")
