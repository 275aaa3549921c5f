"""SQLAlchemy models of the SQL store.  Alembic migrations are generated from these.

Rows never leave the store: repositories map them to ``specwatch.metrics.model`` objects or to
the small records of ``store.records``.  Names are prefixed ``SQL`` so the two never mix.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from specwatch.metrics.limits import (
    BLOB_ID_CHARS,
    BLOB_NAME_CHARS,
    CI_CHARS,
    COMMIT_CHARS,
    LABEL_CHARS,
    METRIC_CHARS,
    NAME_CHARS,
    PACKAGE_CHARS,
    REQUIREMENT_ID_CHARS,
    SPEC_CHARS,
    UNIT_CHARS,
    URL_CHARS,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants 64-bit ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Plain JSON (text) on PostgreSQL too: documents are read whole, never queried inside, and
# JSON is cheaper to write than JSONB.
Json = JSON()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: Json}


def table(model: type[Base]) -> Table:
    """The Core table of a model: inserts on it skip the ORM's slower bulk path."""
    return cast(Table, model.__table__)


class SQLMetric(Base):
    __tablename__ = "metric"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    full_name: Mapped[str] = mapped_column(String(METRIC_CHARS), unique=True)
    package: Mapped[str] = mapped_column(String(PACKAGE_CHARS))
    name: Mapped[str] = mapped_column(String(NAME_CHARS))
    unit: Mapped[str] = mapped_column(String(UNIT_CHARS), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(Json, default=list)
    reference: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    direction: Mapped[str] = mapped_column(String(16), default="lower")
    floor_abs: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    floor_pct: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SQLSpecification(Base):
    __tablename__ = "specification"
    __table_args__ = (
        Index("ix_specification_metric", "metric_full_name", "retired_at"),
        Index("ix_specification_package", "package", "retired_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    full_name: Mapped[str] = mapped_column(String(SPEC_CHARS), unique=True)
    metric_full_name: Mapped[str] = mapped_column(String(METRIC_CHARS))
    package: Mapped[str] = mapped_column(String(PACKAGE_CHARS))
    metric: Mapped[str] = mapped_column(String(NAME_CHARS))
    name: Mapped[str] = mapped_column(String(NAME_CHARS))
    threshold: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(UNIT_CHARS), default="")
    operator: Mapped[str] = mapped_column(String(2))
    level: Mapped[str | None] = mapped_column(String(16))
    metadata_query: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    tags: Mapped[list[str]] = mapped_column(Json, default=list)
    requirements: Mapped[list[str]] = mapped_column(Json, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16), default="import")  # import | job
    retired_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SQLRequirement(Base):
    """A requirement of the verification matrix (its status is derived, never stored)."""

    __tablename__ = "requirement"

    id: Mapped[str] = mapped_column(String(REQUIREMENT_ID_CHARS), primary_key=True)
    title: Mapped[str] = mapped_column(Text, default="")
    method: Mapped[str] = mapped_column(String(20), default="Test")
    spec_patterns: Mapped[list[str]] = mapped_column(Json, default=list)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SQLChange(Base):
    """A change point found in a series (metric × dataset × filter × instrument × branch)."""

    __tablename__ = "change"
    __table_args__ = (
        UniqueConstraint(
            "metric", "dataset", "filter", "instrument", "branch", "job_id", name="uq_change_key"
        ),
        Index("ix_change_time", "time"),
        Index("ix_change_metric_time", "metric", "time"),
        Index("ix_change_series", "metric", "dataset", "filter", "instrument", "branch"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    metric: Mapped[str] = mapped_column(String(METRIC_CHARS))
    # Series tags: '' when unset, as in the series store.
    dataset: Mapped[str] = mapped_column(String(LABEL_CHARS), default="")
    filter: Mapped[str] = mapped_column(String(LABEL_CHARS), default="")
    instrument: Mapped[str] = mapped_column(String(LABEL_CHARS), default="")
    branch: Mapped[str] = mapped_column(String(LABEL_CHARS), default="")
    job_id: Mapped[int] = mapped_column(BigInteger)  # first build after the change
    previous_job_id: Mapped[int | None] = mapped_column(BigInteger)  # last build before it
    time: Mapped[datetime]
    commit_before: Mapped[str | None] = mapped_column(String(COMMIT_CHARS))
    commit_after: Mapped[str | None] = mapped_column(String(COMMIT_CHARS))
    before: Mapped[float] = mapped_column(Float)
    after: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    delta_pct: Mapped[float | None] = mapped_column(Float)
    delta_sigma: Mapped[float] = mapped_column(Float)
    sigma: Mapped[float] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(16))  # worse | better | changed
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | accepted
    note: Mapped[str] = mapped_column(Text, default="")
    detected_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SQLExclusion(Base):
    """A job whose points are bad data: left out of detection."""

    __tablename__ = "exclusion"

    job_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("job.id", ondelete="CASCADE"), primary_key=True
    )
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class SQLReportRun(Base):
    """When a verification report was made, so the next one lists what changed since."""

    __tablename__ = "report_run"
    __table_args__ = (Index("ix_report_run_key", "dataset", "branch", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(LABEL_CHARS), default="")
    branch: Mapped[str] = mapped_column(String(LABEL_CHARS), default="main")
    build_time: Mapped[datetime | None]
    created_at: Mapped[datetime]


class SQLDefinitionDigest(Base):
    """Digests of definition sets already registered, so a job re-sending them costs nothing."""

    __tablename__ = "definition_digest"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]


class SQLJob(Base):
    __tablename__ = "job"
    __table_args__ = (
        # Lists are newest first by build time (then id): keyset pages on (time, id).
        Index("ix_job_branch_time", "branch", "time", "id"),
        Index("ix_job_dataset_time", "dataset", "time", "id"),
        Index("ix_job_pr_time", "pr", "time", "id"),
        Index("ix_job_commit", "commit"),
        Index("ix_job_time_id", "time", "id"),
        Index("ix_job_dataset_branch_time", "dataset", "branch", "time"),
        Index("ix_job_body_sha256", "body_sha256"),  # the same body again is the same job
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(256), unique=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    time: Mapped[datetime]
    time_ns: Mapped[int] = mapped_column(BigInteger)
    ci_name: Mapped[str | None] = mapped_column(String(CI_CHARS))
    ci_id: Mapped[str | None] = mapped_column(String(CI_CHARS))
    ci_url: Mapped[str | None] = mapped_column(String(URL_CHARS))
    build_url: Mapped[str | None] = mapped_column(String(URL_CHARS))
    repository: Mapped[str | None] = mapped_column(String(URL_CHARS))
    commit: Mapped[str | None] = mapped_column(String(COMMIT_CHARS))
    branch: Mapped[str | None] = mapped_column(String(LABEL_CHARS))
    pr: Mapped[int | None] = mapped_column(Integer)
    pr_url: Mapped[str | None] = mapped_column(String(URL_CHARS))
    base_commit: Mapped[str | None] = mapped_column(String(COMMIT_CHARS))
    dataset: Mapped[str | None] = mapped_column(String(LABEL_CHARS))
    instrument: Mapped[str | None] = mapped_column(String(LABEL_CHARS))
    filter: Mapped[str | None] = mapped_column(String(LABEL_CHARS))
    status: Mapped[int | None] = mapped_column(Integer)
    meta: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    packages: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    # The measurements, in their metrics' units, as one document: a job is read whole, and one
    # row per job keeps ingest to a couple of rows whatever the number of measurements.
    measurements: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)  # columnar
    n_measurements: Mapped[int] = mapped_column(Integer, default=0)


class SQLBlob(Base):
    __tablename__ = "blob"
    __table_args__ = (UniqueConstraint("job_id", "identifier", name="uq_blob_job_identifier"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(BigId, ForeignKey("job.id", ondelete="CASCADE"))
    identifier: Mapped[str] = mapped_column(String(BLOB_ID_CHARS))
    name: Mapped[str] = mapped_column(String(BLOB_NAME_CHARS))
    data: Mapped[dict[str, Any]] = mapped_column(Json)


class SQLOutbox(Base):
    """Jobs whose points have not reached the time-series store yet."""

    __tablename__ = "outbox"

    job_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("job.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    last_error: Mapped[str | None] = mapped_column(Text)


class SQLWorkItem(Base):
    """Background work waiting for a worker: durable, claimed with ``FOR UPDATE SKIP LOCKED``.

    ``kind`` "detect": ``payload`` is a series (package, context and metric); "alert-job": a
    job id whose build rules (pull request, stale metrics) run after its detection.  A
    second request for the same work before it runs is the same row (its due time kept);
    ``version`` counts the requests, so work requested again while it ran is not lost.
    """

    __tablename__ = "work_item"

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the payload
    payload: Mapped[str] = mapped_column(Text)  # what to work on (JSON)
    size: Mapped[int] = mapped_column(Integer, default=1)  # how many things (series) it holds
    due_at: Mapped[datetime] = mapped_column(index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)


class SQLToken(Base):
    __tablename__ = "token"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)  # public part of the token
    secret_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    scopes: Mapped[list[str]] = mapped_column(Json, default=list)
    packages: Mapped[list[str]] = mapped_column(Json, default=list)  # empty: every package
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SQLSeriesPoint(Base):
    """The embedded time-series store: one row per (job, metric)."""

    __tablename__ = "series_point"
    __table_args__ = (
        UniqueConstraint("job_id", "package", "metric", name="uq_series_point_job_metric"),
        Index("ix_series_point_metric_time", "package", "metric", "time_ns"),
        Index(
            "ix_series_point_metric_dataset_branch_time",
            "package",
            "metric",
            "dataset",
            "branch",
            "time_ns",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    package: Mapped[str] = mapped_column(String(PACKAGE_CHARS))
    metric: Mapped[str] = mapped_column(String(NAME_CHARS))
    time_ns: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float)  # None: NaN or infinite
    commit: Mapped[str | None] = mapped_column(String(COMMIT_CHARS))
    # Tags: '' when unset, so that equality filters and unique keys behave the same everywhere.
    dataset: Mapped[str] = mapped_column(String(LABEL_CHARS), default="")
    instrument: Mapped[str] = mapped_column(String(LABEL_CHARS), default="")
    filter: Mapped[str] = mapped_column(String(LABEL_CHARS), default="")
    branch: Mapped[str] = mapped_column(String(LABEL_CHARS), default="")
    pr: Mapped[str] = mapped_column(String(32), default="")
    pipeline: Mapped[str] = mapped_column(String(CI_CHARS), default="")
    is_nan: Mapped[bool] = mapped_column(Boolean, default=False)


class SQLAlert(Base):
    """An alert: one rule's finding on one build (or pull-request build), with its items."""

    __tablename__ = "alert"
    __table_args__ = (
        Index("ix_alert_group", "group_key", "state"),
        Index("ix_alert_created", "created_at", "id"),
        Index("ix_alert_state_created", "state", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20))  # open | acknowledged | invalid | resolved
    # rule|branch|commit, or rule|pr:N|commit: the items of one build share one alert.
    group_key: Mapped[str] = mapped_column(String(1000))
    title: Mapped[str] = mapped_column(String(300))
    branch: Mapped[str | None] = mapped_column(String(LABEL_CHARS))
    pr: Mapped[int | None] = mapped_column(Integer)
    commit: Mapped[str | None] = mapped_column(String(COMMIT_CHARS))
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    repository: Mapped[str | None] = mapped_column(String(URL_CHARS))
    ci_url: Mapped[str | None] = mapped_column(String(URL_CHARS))
    pr_url: Mapped[str | None] = mapped_column(String(URL_CHARS))
    silenced: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class SQLAlertItem(Base):
    """One series of an alert; ``dedup_key`` open at most once among active alerts."""

    __tablename__ = "alert_item"
    __table_args__ = (
        Index("ix_alert_item_alert", "alert_id"),
        Index("ix_alert_item_dedup", "dedup_key", "state"),
        Index("ix_alert_item_cooldown", "cooldown_key", "resolved_at"),
        Index("ix_alert_item_change", "change_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alert_id: Mapped[int] = mapped_column(BigId, ForeignKey("alert.id", ondelete="CASCADE"))
    dedup_key: Mapped[str] = mapped_column(String(2000))
    cooldown_key: Mapped[str] = mapped_column(String(2000))  # the rule and the series
    metric: Mapped[str] = mapped_column(String(METRIC_CHARS))
    state: Mapped[str] = mapped_column(String(20))  # open | resolved
    change_id: Mapped[int | None] = mapped_column(BigInteger)
    evidence: Mapped[dict[str, Any]] = mapped_column(Json)
    opened_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class SQLAlertNotification(Base):
    """The alert outbox: one message to one channel, written with what raised it."""

    __tablename__ = "alert_notification"
    __table_args__ = (
        Index("ix_alert_notification_due", "delivered_at", "failed_at", "due_at"),
        Index("ix_alert_notification_alert", "alert_id", "channel"),
        Index("ix_alert_notification_key", "dedup_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alert_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("alert.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    event: Mapped[str] = mapped_column(String(20))
    payload: Mapped[dict[str, Any] | None] = mapped_column(Json)  # a summary, a rerun request
    dedup_key: Mapped[str | None] = mapped_column(String(2000))  # a request made only once
    created_at: Mapped[datetime]
    due_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]  # a permanent refusal (a revoked webhook): not retried
    last_error: Mapped[str | None] = mapped_column(Text)


class SQLSilence(Base):
    """Alerts matching a silence are recorded but not sent until it ends."""

    __tablename__ = "silence"
    __table_args__ = (Index("ix_silence_ends", "ends_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule: Mapped[str | None] = mapped_column(String(100))
    metric: Mapped[str | None] = mapped_column(String(METRIC_CHARS))  # name or pattern
    dataset: Mapped[str | None] = mapped_column(String(LABEL_CHARS))
    branch: Mapped[str | None] = mapped_column(String(LABEL_CHARS))
    pr: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    ends_at: Mapped[datetime]
