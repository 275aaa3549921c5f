"""The process context: what one API, dashboard or CLI process opens once and closes at exit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from specwatch.config import Settings
from specwatch.exceptions import SeriesStoreError
from specwatch.metrics.model import Metric
from specwatch.store.database import check_schema, create_engine, create_sessionmaker
from specwatch.store.series.base import TimeSeriesStore
from specwatch.store.series.embedded import EmbeddedSeriesStore
from specwatch.store.series.influxdb import InfluxDBSeriesStore
from specwatch.store.work import WorkStore

from .alert_delivery import AlertDispatcher, notifiers_of
from .alerts import AlertService, load_rules
from .builds import BuildService
from .compare import CompareService
from .definitions import DefinitionService
from .delivery import OutboxDeliverer
from .jobs import GroupCommit, JobService
from .metrics import MetricService
from .ops import OpsService
from .overview import OverviewService
from .regressions import (
    DETECT,
    DetectionScheduler,
    RegressionService,
    request_detection,
    work_of_points,
)
from .report import ReportService
from .tokens import TokenCache, TokenService
from .trends import TrendService
from .triage import TriageService
from .verification import VerificationService

log = structlog.get_logger("specwatch.context")


@dataclass
class ProcessContext:
    """Engine, HTTP client, series store and background delivery of one process."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    series: TimeSeriesStore
    deliverer: OutboxDeliverer
    detection: DetectionScheduler | None = None
    regression_service: RegressionService | None = None
    alert_service: AlertService | None = None
    dispatcher: AlertDispatcher | None = None
    group_commit: GroupCommit | None = None
    metric_cache: dict[str, Metric] = field(default_factory=dict)
    token_cache: TokenCache = field(default_factory=TokenCache)

    @classmethod
    async def open(
        cls, settings: Settings, *, background: bool = True, serve: bool = True
    ) -> ProcessContext:
        """Open everything; refuse (``DatabaseNotReadyError``) unless the schema is at head.

        ``background``: run the background work (outbox sweep, detection, alert delivery)
        here, unless ``SPECWATCH_BACKGROUND=off``; ``serve``: this process ingests (its
        points go to the series store as they come).
        """
        rules = load_rules(settings)  # a bad rules file stops the start, before anything opens
        engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
        try:
            await check_schema(engine)
        except BaseException:
            await engine.dispose()
            raise
        sessionmaker = create_sessionmaker(engine)
        http = httpx.AsyncClient(timeout=settings.influxdb_timeout_s)
        series: TimeSeriesStore
        if settings.influxdb_url:
            influx = InfluxDBSeriesStore(
                settings.influxdb_url,
                settings.influxdb_database,
                username=settings.influxdb_username,
                password=settings.influxdb_password.get_secret_value()
                if settings.influxdb_password
                else None,
                token=settings.influxdb_token.get_secret_value()
                if settings.influxdb_token
                else None,
                client=http,
            )
            series = influx
            try:
                await influx.create_database()
            except SeriesStoreError as error:  # the outbox keeps points until it answers
                log.warning("InfluxDB not reachable at start", error=str(error))
        else:
            series = EmbeddedSeriesStore(sessionmaker)
        # One per process: it holds the locks that keep detections of a series in turn.
        regressions = RegressionService(sessionmaker, series)
        notifiers, links = notifiers_of(settings, http)
        alerts = AlertService(
            sessionmaker, rules, channels=notifiers, group_wait_s=settings.alert_group_wait_s
        )
        regressions.alerts = alerts
        dispatcher = AlertDispatcher(
            sessionmaker,
            notifiers,
            links,
            retry_initial_s=settings.alert_retry_initial_s,
            retry_max_s=settings.alert_retry_max_s,
            lease_s=settings.alert_lease_s,
        )
        alerts.wake = dispatcher.wake
        background = background and settings.background == "inline"
        detection = None
        if background and settings.detect_on_ingest:
            detection = DetectionScheduler(
                regressions, sessionmaker, debounce_s=settings.detect_debounce_s
            )
        deliverer = OutboxDeliverer(
            sessionmaker,
            series,
            retry_initial_s=settings.outbox_retry_initial_s,
            retry_max_s=settings.outbox_retry_max_s,
            batch_jobs=settings.outbox_batch_jobs,
            work_of=work_of_points if settings.detect_on_ingest else None,
            work_delay_s=settings.detect_debounce_s,
        )
        if detection is not None:
            detection.before_flush = deliverer.settle
        group = GroupCommit(sessionmaker, outbox_due=deliverer.outbox_due)
        context = cls(
            settings,
            engine,
            sessionmaker,
            http,
            series,
            deliverer,
            detection,
            regressions,
            alert_service=alerts,
            dispatcher=dispatcher,
            group_commit=group,
        )
        if serve or background:
            # Every serving process writes its own ingests' points (the fast path); the
            # sweep of what is left in the outbox is background work.
            deliverer.start(sweep=background)
            group.start()
        if background:
            if detection:
                detection.start()
            if settings.alert_delivery and notifiers:
                dispatcher.start()
        return context

    async def close(self) -> None:
        """Close in reverse order of opening."""
        if self.group_commit is not None:
            await self.group_commit.stop()
        await self.deliverer.stop()
        if self.detection is not None:
            await self.detection.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.series.close()
        await self.http.aclose()
        await self.engine.dispose()

    def jobs(self) -> JobService:
        return JobService(
            self.sessionmaker,
            self.deliverer,
            max_job_bytes=self.settings.max_job_bytes,
            series_write_wait_s=self.settings.series_write_wait_s,
            limits=self.settings.document_limits,
            metric_cache=self.metric_cache,
            group=self.group_commit,
        )

    def definitions(self) -> DefinitionService:
        return DefinitionService(
            self.sessionmaker,
            redetect=self._redetect_metrics,
            limits=self.settings.document_limits,
        )

    async def _redetect_metrics(self, metrics: Sequence[str]) -> int:
        """Detect the series of ``metrics`` again: queued for the background when detection
        runs after ingests (``/healthz`` counts what is pending), else now.  Returns how many."""
        regressions = self.regressions()
        wanted = set(metrics)
        keys = [key for key in await regressions.all_keys() if key.metric in wanted]
        if self.settings.detect_on_ingest:
            due = datetime.now(UTC) + timedelta(seconds=self.settings.detect_debounce_s)
            await request_detection(self.sessionmaker, keys, due)
        else:
            await regressions.detect_many(keys)
        return len(keys)

    async def detection_pending(self) -> int:
        """Series queued for detection, in any process."""
        async with self.sessionmaker() as session:
            return await WorkStore(session).count(DETECT)

    def ops(self) -> OpsService:
        return OpsService(
            self.engine, self.sessionmaker, self.series, max_outbox=self.settings.ready_max_outbox
        )

    def metrics(self) -> MetricService:
        return MetricService(self.sessionmaker, self.series)

    def regressions(self) -> RegressionService:
        if self.regression_service is None:
            self.regression_service = RegressionService(self.sessionmaker, self.series)
        return self.regression_service

    def alerts(self) -> AlertService:
        if self.alert_service is None:
            raise RuntimeError("the process context has no alert service")
        return self.alert_service

    def report(self) -> ReportService:
        return ReportService(self.sessionmaker, self.series)

    def compare(self) -> CompareService:
        return CompareService(self.sessionmaker)

    def verification(self) -> VerificationService:
        return VerificationService(self.sessionmaker, limits=self.settings.document_limits)

    def tokens(self) -> TokenService:
        return TokenService(self.sessionmaker, self.token_cache)

    # The dashboard's views: each reads what one page shows, in one session where it can.
    def overview(self) -> OverviewService:
        return OverviewService(self.sessionmaker)

    def trends(self) -> TrendService:
        return TrendService(self.sessionmaker, self.series)

    def builds(self) -> BuildService:
        return BuildService(self.sessionmaker)

    def triage(self) -> TriageService:
        return TriageService(self.tokens(), self.regressions())
