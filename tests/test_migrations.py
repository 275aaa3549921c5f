"""`specwatch db upgrade` is the upgrade path: a database filled under the previous migration
head is upgraded by the CLI and read back, whole, through the services.

The previous head is found, not named (the ``down_revision`` of the current head), and only
the tables and columns that exist at it are filled (reflected from the database), so that the
test follows new migrations.  Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from conftest import empty_postgres_database
from sqlalchemy import MetaData, Table, func, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from specwatch.config import Settings
from specwatch.metrics.alerts import AlertItem, AlertKind, AlertState, Silence, item_evidence
from specwatch.metrics.model import (
    Direction,
    JobContext,
    Level,
    Measurement,
    Metric,
    Reference,
    Specification,
)
from specwatch.metrics.records import ChangeFilter, ChangeRecord, JobFilter, SeriesKey
from specwatch.metrics.verification import Status
from specwatch.services.context import ProcessContext
from specwatch.services.metrics import SeriesFilter
from specwatch.store.database import alembic_config, create_engine
from specwatch.store.jobs import encode_measurements

T = TypeVar("T")
BACKENDS = ("sqlite", "postgresql")
REPO = "https://github.com/lsst/validate_drp"
DATASET, INSTRUMENT, FILTER = "HSC RC2", "HSC", "r"
TOKEN_KEY, TOKEN_SECRET = "mgr8test2key", "migration-test_secret-0123456789"


def _in_thread(function: Callable[[], T]) -> T:
    """Alembic's env.py runs its own event loop: keep it off the test's."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()


def revisions(url: str) -> tuple[str, str]:
    """(head, previous head): the previous head is the head's ``down_revision``."""
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str), f"migration {head} has no single parent ({previous!r})"
    return head, previous


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema at all)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'specwatch.sqlite3'}"
    else:
        with empty_postgres_database() as url:
            yield url


async def specwatch(url: str, *args: str) -> tuple[int, str]:
    """Run the installed ``specwatch`` command on ``url``: (exit status, output)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPECWATCH_")}
    environment |= {"SPECWATCH_DATABASE_URL": url, "SPECWATCH_LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("specwatch")),
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


# --- the data, as the product writes it at the previous head ------------------------------------


def _utc_now() -> datetime:
    # Whole milliseconds: every backend stores them exactly.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


NOW = _utc_now()
COMMITS = ("1a2b3c4d" * 5, "5e6f7a8b" * 5, "9c0d1e2f" * 5, "3f4e5d6c" * 5)

METRICS = (
    Metric(
        "validate_drp",
        "PA1",
        unit="mmag",
        description="Photometric repeatability: rms of the magnitudes of bright stars.",
        tags=("photometry", "kpm"),
        reference=Reference("LPM-17", "https://ls.st/LPM-17", 21),
        direction=Direction.LOWER,
        floor_abs=0.25,
        floor_pct=2.0,
    ),
    Metric("validate_drp", "AM1", unit="mas", description="Astrometric repeatability, 5 arcmin."),
    Metric(
        "pipe_tasks",
        "completeness",
        unit="",
        description="Fraction of injected sources recovered.",
        direction=Direction.HIGHER,
    ),
)
SPECS = (
    Specification(
        "validate_drp",
        "PA1",
        "design_r",
        5.0,
        "mmag",
        "<=",
        metadata_query={"filter_name": "r"},
        tags=("photometry",),
        level=Level.DESIGN,
        requirements=("OSS-REQ-0387",),
        description="Design PA1 in r.",
    ),
    # A threshold in another unit than the metric's: verdicts convert it.
    Specification(
        "validate_drp",
        "PA1",
        "minimum_r",
        0.008,
        "mag",
        "<=",
        metadata_query={"filter_name": "r"},
        level=Level.MINIMUM,
        requirements=("OSS-REQ-0387",),
    ),
)
RETIRED_SPEC = Specification("validate_drp", "PA1", "old_r", 9.0, "mmag", "<=")


def _measurements(build: int) -> tuple[Measurement, ...]:
    """A build's measurements: one converted from the unit sent, one NaN, one with refs."""
    pa1 = (4.0, 4.125, 6.0, 4.5)[build]
    return (
        Measurement(
            "validate_drp.PA1",
            pa1,
            "mmag",
            identifier=f"pa1-{build}",
            raw_value=pa1 / 1000,
            raw_unit="mag",
            blob_refs=("matched",) if build == 0 else (),
            extras={"n_stars": 1234 + build, "rms_ref": [1.5, 2.25]},
            notes={"comment": "bright stars only"} if build == 0 else {},
        ),
        Measurement("validate_drp.AM1", math.nan if build == 1 else 9.5 + build, "mas"),
        Measurement("pipe_tasks.completeness", 0.9375, ""),
    )


def _context(build: int) -> JobContext:
    """Builds 0–2 on main; build 3 a pull request's, still in the outbox."""
    pr = build == 3
    return JobContext(
        time=NOW - timedelta(days=3 - build),
        ci_name="jenkins",
        ci_id=str(1000 + build),
        ci_url=f"https://ci.example.org/job/{1000 + build}",
        build_url=f"https://ci.example.org/job/{1000 + build}/artifacts",
        repository=REPO,
        commit=COMMITS[build],
        branch="tickets/DM-4242" if pr else "main",
        pr=42 if pr else None,
        pr_url=f"{REPO}/pull/42" if pr else None,
        base_commit=COMMITS[1] if pr else None,
        dataset=DATASET,
        instrument=INSTRUMENT,
        filter=FILTER,
        status=0,
    )


def _meta(build: int) -> dict[str, Any]:
    return {"filter_name": "r", "instrument": INSTRUMENT, "packages": _packages(build)}


def _packages(build: int) -> dict[str, Any]:
    return {
        "validate_drp": {"eups_version": f"g{COMMITS[build][:7]}", "git_sha": COMMITS[build]},
        "pipe_tasks": "w.2026.48",
    }


BLOB = {"mag": [20.125, 21.5, 22.0], "snr": [100.0, 40.5, 12.25], "units": {"mag": "mag"}}


def _time_ns(time: datetime) -> int:
    return (time - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _expected_item(change_id: int, job_id: int) -> AlertItem:
    return AlertItem(
        dedup_key=f"regression|validate_drp.PA1|{DATASET}|{FILTER}|{INSTRUMENT}|main|{change_id}",
        metric="validate_drp.PA1",
        unit="mmag",
        dataset=DATASET,
        filter=FILTER,
        instrument=INSTRUMENT,
        branch="main",
        value=6.0,
        before=4.0625,
        after=6.0,
        delta=1.9375,
        delta_pct=47.69230769230769,
        delta_sigma=7.75,
        sigma=0.25,
        confidence="high",
        commit_before=COMMITS[1],
        commit_after=COMMITS[2],
        change_id=change_id,
        job_id=job_id,
        summary="validate_drp.PA1 4.06 → 6 mmag (+47.7%)",
    )


@dataclass
class Filled:
    """What was written at the previous head: ids, and the row count of each table."""

    tables: set[str]
    jobs: list[int] = field(default_factory=list)
    change: int | None = None
    alert: int | None = None
    counts: dict[str, int] = field(default_factory=dict)


class _Writer:
    """Plain INSERTs on the tables as reflected from the database (its revision's schema)."""

    def __init__(self, connection: AsyncConnection, metadata: MetaData, revision: str) -> None:
        self.connection, self.tables, self.revision = connection, metadata.tables, revision

    def has(self, name: str) -> bool:
        return name in self.tables

    async def insert(self, name: str, row: dict[str, Any]) -> int | None:
        table: Table = self.tables[name]
        unknown = set(row) - set(table.c.keys())
        assert not unknown, f"table {name} at {self.revision} has no column {sorted(unknown)}"
        required = {
            c.name
            for c in table.c
            if not c.nullable
            and c.server_default is None
            and not (c.primary_key and c.name == "id")
        }
        missing = required - set(row)
        assert not missing, (
            f"table {name} at {self.revision} needs {sorted(missing)}: fill them in this test"
        )
        if "id" in table.c and "id" not in row:  # a generated id
            result = await self.connection.execute(table.insert().values(row).returning(table.c.id))
            return int(result.scalar_one())
        await self.connection.execute(table.insert().values(row))
        return None


async def fill(url: str, revision: str) -> Filled:
    """Metrics, specs, requirements, jobs with measurements and blobs, series points, an outbox
    row, a change, an exclusion, a report run, a token, an alert with an item, a notification
    and a silence: what exists at ``revision``."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            metadata = MetaData()
            await connection.run_sync(lambda sync: metadata.reflect(sync))
            db = _Writer(connection, metadata, revision)
            filled = Filled(set(metadata.tables) - {"alembic_version"})
            await _fill(db, filled)
            for name in sorted(filled.tables):
                filled.counts[name] = await _count(connection, metadata.tables[name])
    finally:
        await engine.dispose()
    return filled


async def _count(connection: AsyncConnection, table: Table) -> int:
    return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def _fill(db: _Writer, filled: Filled) -> None:
    created = NOW - timedelta(days=10)
    for metric in METRICS:
        await db.insert(
            "metric",
            {
                "full_name": metric.full_name,
                "package": metric.package,
                "name": metric.name,
                "unit": metric.unit,
                "description": metric.description,
                "tags": list(metric.tags),
                "reference": {
                    "doc": metric.reference.doc,
                    "url": metric.reference.url,
                    "page": metric.reference.page,
                },
                "direction": metric.direction.value,
                "floor_abs": metric.floor_abs,
                "floor_pct": metric.floor_pct,
                "created_at": created,
                "updated_at": created,
            },
        )
    for spec, retired_at in zip((*SPECS, RETIRED_SPEC), (None, None, created), strict=True):
        await db.insert(
            "specification",
            {
                "full_name": spec.full_name,
                "metric_full_name": spec.metric_full_name,
                "package": spec.package,
                "metric": spec.metric,
                "name": spec.name,
                "threshold": spec.threshold,
                "unit": spec.unit,
                "operator": spec.operator,
                "level": spec.level.value if spec.level else None,
                "metadata_query": dict(spec.metadata_query),
                "tags": list(spec.tags),
                "requirements": list(spec.requirements),
                "description": spec.description,
                "source": "import",
                "retired_at": retired_at,
                "created_at": created,
                "updated_at": created,
            },
        )
    if db.has("requirement"):
        await db.insert(
            "requirement",
            {
                "id": "OSS-REQ-0387",
                "title": "Photometric repeatability",
                "method": "Test",
                "spec_patterns": ["validate_drp.PA1.*"],
                "created_at": created,
                "updated_at": created,
            },
        )
    await db.insert(
        "definition_digest",
        {"digest": hashlib.sha256(b"definitions").hexdigest(), "created_at": created},
    )
    await db.insert(
        "token",
        {
            "key": TOKEN_KEY,
            "secret_sha256": hashlib.sha256(TOKEN_SECRET.encode()).hexdigest(),
            "name": "jenkins upload",
            "scopes": ["read", "write:jobs"],
            "packages": ["validate_drp"],
            "created_at": created,
            "expires_at": NOW + timedelta(days=365),
            "revoked_at": None,
        },
    )
    for build in range(4):
        context = _context(build)
        assert context.time is not None
        measurements = _measurements(build)
        job_id = await db.insert(
            "job",
            {
                "idempotency_key": f"jenkins-{1000 + build}-{DATASET}",
                "body_sha256": hashlib.sha256(f"body {build}".encode()).hexdigest(),
                "created_at": context.time + timedelta(minutes=5),
                "time": context.time,
                "time_ns": _time_ns(context.time),
                **{name: getattr(context, name) for name in _CONTEXT_COLUMNS},
                "meta": _meta(build),
                "packages": _packages(build),
                "measurements": encode_measurements(measurements),
                "n_measurements": len(measurements),
            },
        )
        assert job_id is not None
        filled.jobs.append(job_id)
        if build == 0:
            await db.insert(
                "blob", {"job_id": job_id, "identifier": "matched", "name": "Matched", "data": BLOB}
            )
        if build == 3:  # not delivered to the series store yet
            await db.insert(
                "outbox",
                {
                    "job_id": job_id,
                    "created_at": context.time,
                    "attempts": 3,
                    "next_attempt_at": NOW - timedelta(minutes=1),
                    "last_error": "embedded series store: database is locked",
                },
            )
            continue
        for measurement in measurements:
            package, _, name = measurement.metric.partition(".")
            finite = math.isfinite(measurement.value)
            await db.insert(
                "series_point",
                {
                    "package": package,
                    "metric": name,
                    "time_ns": _time_ns(context.time) + job_id % 1000,
                    "job_id": job_id,
                    "value": measurement.value if finite else None,
                    "is_nan": not finite,
                    "commit": context.commit,
                    "dataset": DATASET,
                    "instrument": INSTRUMENT,
                    "filter": FILTER,
                    "branch": "main",
                    "pr": "",
                    "pipeline": "jenkins",
                },
            )
    if db.has("exclusion"):
        await db.insert(
            "exclusion",
            {"job_id": filled.jobs[0], "reason": "bad calibration (DM-9999)", "created_at": NOW},
        )
    if db.has("report_run"):
        await db.insert(
            "report_run",
            {
                "dataset": DATASET,
                "branch": "main",
                "build_time": _context(2).time,
                "created_at": NOW,
            },
        )
    if db.has("change"):
        filled.change = await db.insert("change", _change_row(filled.jobs))
    if db.has("alert") and filled.change is not None:
        await _fill_alerts(db, filled)


# The tables this test fills when they exist at the previous head (others stay empty: a
# table added later, e.g. the work queue, holds transient state).
FILLED = {
    "metric",
    "specification",
    "requirement",
    "definition_digest",
    "token",
    "job",
    "blob",
    "outbox",
    "series_point",
    "exclusion",
    "report_run",
    "change",
    "alert",
    "alert_item",
    "alert_notification",
    "silence",
}

# The job table's context columns at the previous head, written out on purpose: the code's
# CONTEXT_FIELDS follow the newest schema, this list the one being upgraded from.
_CONTEXT_COLUMNS = (
    "ci_name",
    "ci_id",
    "ci_url",
    "build_url",
    "repository",
    "commit",
    "branch",
    "pr",
    "pr_url",
    "base_commit",
    "dataset",
    "instrument",
    "filter",
    "status",
)


def _expected_change(jobs: list[int], change_id: int | None) -> ChangeRecord:
    return ChangeRecord(
        key=SeriesKey("validate_drp.PA1", DATASET, FILTER, INSTRUMENT, "main"),
        job_id=jobs[2],
        previous_job_id=jobs[1],
        time=_context(2).time or NOW,
        commit_before=COMMITS[1],
        commit_after=COMMITS[2],
        before=4.0625,
        after=6.0,
        delta=1.9375,
        delta_pct=47.69230769230769,
        delta_sigma=7.75,
        sigma=0.25,
        verdict="worse",
        status="open",
        note="",
        id=change_id,
        unit="mmag",
    )


def _change_row(jobs: list[int]) -> dict[str, Any]:
    change = _expected_change(jobs, None)
    return {
        "metric": change.key.metric,
        "dataset": change.key.dataset,
        "filter": change.key.filter,
        "instrument": change.key.instrument,
        "branch": change.key.branch,
        **{
            name: getattr(change, name)
            for name in (
                "job_id",
                "previous_job_id",
                "time",
                "commit_before",
                "commit_after",
                "before",
                "after",
                "delta",
                "delta_pct",
                "delta_sigma",
                "sigma",
                "verdict",
                "status",
                "note",
            )
        },
        "detected_at": NOW,
        "updated_at": NOW,
    }


async def _fill_alerts(db: _Writer, filled: Filled) -> None:
    assert filled.change is not None
    job = _context(2)
    filled.alert = await db.insert(
        "alert",
        {
            "rule": "regression",
            "kind": AlertKind.REGRESSION.value,
            "state": AlertState.OPEN.value,
            "group_key": f"regression|main|{COMMITS[2]}",
            "title": "validate_drp.PA1 regressed on main",
            "branch": "main",
            "pr": None,
            "commit": COMMITS[2],
            "job_id": filled.jobs[2],
            "repository": REPO,
            "ci_url": job.ci_url,
            "pr_url": None,
            "silenced": False,
            "note": "",
            "created_at": NOW,
            "updated_at": NOW,
            "resolved_at": None,
        },
    )
    item = _expected_item(filled.change, filled.jobs[2])
    await db.insert(
        "alert_item",
        {
            "alert_id": filled.alert,
            "dedup_key": item.dedup_key,
            "cooldown_key": f"regression|validate_drp.PA1|{DATASET}|{FILTER}|{INSTRUMENT}|main",
            "metric": item.metric,
            "state": "open",
            "change_id": filled.change,
            "evidence": item_evidence(item),
            "opened_at": NOW,
            "resolved_at": None,
        },
    )
    if db.has("alert_notification"):
        await db.insert(
            "alert_notification",
            {
                "alert_id": filled.alert,
                "channel": "slack",
                "event": "opened",
                "payload": None,
                "dedup_key": None,
                "created_at": NOW,
                "due_at": NOW,
                "attempts": 1,
                "claimed_until": None,
                "delivered_at": NOW + timedelta(seconds=1),
                "failed_at": None,
                "last_error": None,
            },
        )
    if db.has("silence"):
        await db.insert("silence", _silence_row())


def _silence_row() -> dict[str, Any]:
    return {
        "rule": "stale",
        "metric": "pipe_tasks.*",
        "dataset": None,
        "branch": "main",
        "pr": None,
        "reason": "pipe_tasks is being rewritten",
        "created_by": "ops",
        "created_at": NOW,
        "ends_at": NOW + timedelta(days=7),
    }


# --- the tests -----------------------------------------------------------------------------------


def _comparable(measurement: Measurement) -> tuple[Any, ...]:
    """A measurement with NaN spelled out (NaN is not equal to itself)."""
    return tuple(
        "NaN"
        if isinstance(v, float) and math.isnan(v)
        else (dict(v) if k in ("extras", "notes") else v)
        for k, v in measurement._asdict().items()
    )


async def test_upgrade_from_the_previous_head_keeps_every_row(database_url: str) -> None:
    head, previous = revisions(database_url)
    status, output = await specwatch(database_url, "db", "upgrade", "--revision", previous)
    assert status == 0, output
    status, output = await specwatch(database_url, "db", "check")
    assert status != 0 and "specwatch db upgrade" in output, output

    filled = await fill(database_url, previous)
    assert {"metric", "specification", "job", "blob", "outbox", "series_point"} <= filled.tables
    empty = sorted(name for name in FILLED & filled.tables if not filled.counts[name])
    assert not empty, f"tables left empty at {previous}: {empty}"

    status, output = await specwatch(database_url, "db", "upgrade")
    assert status == 0, output
    status, output = await specwatch(database_url, "db", "check")
    assert status == 0, output

    # Nothing lost on the way: every table filled at the previous head has its rows.
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            metadata = MetaData()
            await connection.run_sync(lambda sync: metadata.reflect(sync))
            counts = {
                name: await _count(connection, metadata.tables[name]) for name in filled.counts
            }
            current = await connection.run_sync(_current_revision)
    finally:
        await engine.dispose()
    assert counts == filled.counts
    assert current == head

    context = await ProcessContext.open(Settings(database_url=database_url), background=False)
    try:
        await _read_back(context, filled)
    finally:
        await context.close()


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def _read_back(context: ProcessContext, filled: Filled) -> None:
    jobs = filled.jobs
    # Jobs: context, measurements (units, converted values, NaN, extras), meta, blobs.
    for build, job_id in enumerate(jobs):
        job, blobs = await context.jobs().get(job_id)
        expected = _context(build)
        assert job.context == expected
        assert (job.time, job.time_ns) == (expected.time, _time_ns(job.time))
        assert job.idempotency_key == f"jenkins-{1000 + build}-{DATASET}"
        assert [_comparable(m) for m in job.measurements] == [
            _comparable(m) for m in _measurements(build)
        ]
        assert job.n_measurements == 3
        assert (job.meta, job.packages) == (_meta(build), _packages(build))
        assert [(b.identifier, b.name, b.data) for b in blobs] == (
            [("matched", "Matched", BLOB)] if build == 0 else []
        )
    listed = await context.jobs().list_jobs(JobFilter(branch="main"), before=None, limit=10)
    assert [job.id for job in listed] == jobs[2::-1]
    listed = await context.jobs().list_jobs(JobFilter(pr=42), before=None, limit=10)
    assert [job.id for job in listed] == [jobs[3]]

    # Definitions: metrics and their active specifications, exactly as stored.
    for metric in METRICS:
        stored, specs = await context.metrics().get(metric.full_name)
        assert stored == metric
        assert specs == [
            s
            for s in sorted(SPECS, key=lambda s: s.full_name)
            if s.metric_full_name == metric.full_name
        ]
    names = [
        m.full_name
        for m in await context.metrics().list_metrics(package=None, after=None, limit=10)
    ]
    assert sorted(names) == sorted(m.full_name for m in METRICS)

    # Verdicts: the spec in mag is compared in the metric's mmag.
    _, verdicts = await context.verification().verdicts(jobs[2])
    assert sorted((v.spec, v.status, v.value, v.threshold, v.unit) for v in verdicts) == [
        ("validate_drp.PA1.design_r", Status.FAIL, 6.0, 5.0, "mmag"),
        ("validate_drp.PA1.minimum_r", Status.PASS, 6.0, pytest.approx(8.0), "mmag"),
    ]
    if "requirement" in filled.tables:
        status = await context.verification().requirements(dataset=DATASET, branch="main")
        [requirement] = status.requirements
        assert (requirement.requirement.id, requirement.requirement.title) == (
            "OSS-REQ-0387",
            "Photometric repeatability",
        )
        assert [job.id for job in status.jobs] == [jobs[2]]

    # Series: the embedded store's points, and the outbox row delivered now.
    _, series = await context.metrics().series(
        "validate_drp.PA1", SeriesFilter(dataset=DATASET, branch="main")
    )
    assert (series.value, series.job_id, series.commit) == (
        [4.0, 4.125, 6.0],
        jobs[:3],
        list(COMMITS[:3]),
    )
    _, series = await context.metrics().series("validate_drp.AM1", SeriesFilter(branch="main"))
    assert series.value == [9.5, None, 11.5]
    assert await context.deliverer.pending() == 1
    assert await context.deliverer.drain() == 1
    assert await context.deliverer.pending() == 0
    _, series = await context.metrics().series("validate_drp.PA1", SeriesFilter(pr=42))
    assert (series.value, series.job_id) == ([4.5], [jobs[3]])

    # Changes, with their metric's unit.
    if filled.change is not None:
        changes = await context.regressions().changes(ChangeFilter(), after=None, limit=10)
        assert changes == [_expected_change(jobs, filled.change)]

    # Alerts: the alert, its item (evidence read back as the item), its delivery record.
    if filled.alert is not None:
        assert filled.change is not None
        alert, notifications = await context.alerts().get(filled.alert)
        assert (alert.rule, alert.kind, alert.state, alert.title) == (
            "regression",
            AlertKind.REGRESSION,
            AlertState.OPEN,
            "validate_drp.PA1 regressed on main",
        )
        assert (alert.branch, alert.commit, alert.job_id, alert.repository) == (
            "main",
            COMMITS[2],
            jobs[2],
            REPO,
        )
        assert (alert.created_at, alert.silenced, alert.resolved_at) == (NOW, False, None)
        assert alert.items == (_expected_item(filled.change, jobs[2]),)
        if "alert_notification" in filled.tables:
            assert [
                (n["channel"], n["event"], n["attempts"], n["delivered_at"]) for n in notifications
            ] == [("slack", "opened", 1, NOW + timedelta(seconds=1))]
        if "silence" in filled.tables:
            [silence] = await context.alerts().silences(active=True)
            row = _silence_row()
            assert silence == Silence(id=silence.id, **row)

    # Tokens: the stored one authenticates; a new one can be written next to it.
    principal = await context.tokens().authenticate(f"Bearer sw_{TOKEN_KEY}_{TOKEN_SECRET}")
    assert (principal.key, tuple(principal.scopes), tuple(principal.packages)) == (
        TOKEN_KEY,
        ("read", "write:jobs"),
        ("validate_drp",),
    )
    plain, _ = await context.tokens().create(scopes=["read"], name="after the upgrade")
    assert (await context.tokens().authenticate(f"Bearer {plain}")).scopes == ("read",)


def _schema(url: str) -> dict[str, Any]:
    """Tables, their columns (name, nullable) and indexes (name, columns): what a downgrade
    must give back."""

    async def read() -> dict[str, Any]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(_inspect)
        finally:
            await engine.dispose()

    return _in_thread(lambda: asyncio.run(read()))


def _inspect(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    return {
        name: (
            sorted((c["name"], c["nullable"]) for c in inspector.get_columns(name)),
            sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(name)),
        )
        for name in inspector.get_table_names()
        if name != "alembic_version"
    }


def test_downgrade_to_the_previous_head_and_upgrade_again(database_url: str) -> None:
    head, previous = revisions(database_url)
    config = alembic_config(database_url)
    _in_thread(lambda: command.upgrade(config, previous))
    at_previous = _schema(database_url)
    _in_thread(lambda: command.upgrade(config, head))
    at_head = _schema(database_url)
    try:
        _in_thread(lambda: command.downgrade(config, previous))
    except NotImplementedError:
        pytest.skip(f"migration {head} has no downgrade")
    assert _schema(database_url) == at_previous
    _in_thread(lambda: command.upgrade(config, head))
    assert _schema(database_url) == at_head
