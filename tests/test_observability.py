"""Operations: ``/metrics`` (Prometheus), ``/readyz`` and JSON logs carrying the request id.

The request counters of the in-process tests live in the default registry of the test process
(shared by every app a session creates), so they are read as differences between two scrapes.
The served tests run ``specwatch serve --workers 2`` with ``PROMETHEUS_MULTIPROC_DIR``, as an
operator would.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from api_helpers import (
    DEMO_FILES,
    app_client,
    assert_problem,
    bearer,
    context_of,
    import_demo,
    job_body,
    measurement,
    new_token,
)
from conftest import running_influxdb, truncate_all
from fastapi import FastAPI
from influxdb_server import InfluxDBServer
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from served import SPECWATCH, ServedSpecwatch
from sqlalchemy import text

from specwatch.api.schemas import Readiness
from specwatch.config import Settings
from specwatch.services.ops import OpsService
from specwatch.store.database import (
    alembic_config,
    create_engine,
    create_sessionmaker,
    head_revision,
)
from specwatch.store.series.embedded import EmbeddedSeriesStore
from specwatch.telemetry import exposition, observe_request, record_ingest

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
REQUESTS = "specwatch_http_requests_total"


def parse(exposition: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.1)


# --- /metrics ----------------------------------------------------------------------------------


async def test_requests_are_counted_under_their_route_template(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await import_demo(client, auth)
    before = await scrape(client)
    job = job_body(measurement("demo.PA1", 5.0, "mmag"), measurement("demo.WALL", 2.0, "s"))
    created = await client.post("/api/v1/jobs", json=job, headers=auth)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert (await client.get(f"/api/v1/jobs/{job_id}")).status_code == 200
    assert (await client.get(f"/no/such/{job_id}")).status_code == 404
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(REQUESTS, method="POST", route="/api/v1/jobs", status="201") == 1
    assert delta(REQUESTS, method="GET", route="/api/v1/jobs/{job_id}", status="200") == 1
    assert delta(REQUESTS, method="GET", route="unmatched", status="404") == 1
    duration = "specwatch_http_request_duration_seconds"
    assert delta(f"{duration}_count", method="POST", route="/api/v1/jobs") == 1
    assert delta(f"{duration}_bucket", method="POST", route="/api/v1/jobs", le="+Inf") == 1
    # Only templates are labels: a raw path would make a time series per job.  (The counters
    # are the process's: other tests' apps count their own routes; look at this test's.)
    templates = set(app.openapi()["paths"]) | {"/metrics", "unmatched"}
    routes = {
        dict(labels)["route"]
        for (name, labels), count in after.items()
        if name == REQUESTS and count != before.get((name, labels), 0.0)
    }
    assert "/api/v1/jobs/{job_id}" in routes
    assert routes <= templates, routes - templates

    backend = context_of(app).series.name
    writes = "specwatch_series_write_seconds_count"

    async def written() -> bool:
        return value(await scrape(client), writes, backend=backend) > value(
            before, writes, backend=backend
        )

    await eventually(written, what="the job's points written to the series store")

    async def delivered() -> bool:  # its outbox row goes once the points are stored
        samples = await scrape(client)
        return (
            value(samples, "specwatch_outbox_pending_jobs") == 0
            and value(samples, "specwatch_outbox_oldest_age_seconds") == 0
        )

    await eventually(delivered, what="an empty outbox")
    names = {name for name, _ in after}
    assert {"specwatch_alert_notifications_pending", "specwatch_detection_pending"} <= names


def test_record_ingest_counts_jobs_and_measurements() -> None:
    def now() -> tuple[float, float]:
        samples = parse(_default_exposition())
        return (
            value(samples, "specwatch_jobs_ingested_total"),
            value(samples, "specwatch_measurements_ingested_total"),
        )

    jobs, measurements = now()
    record_ingest(1, 7)
    assert now() == (jobs + 1, measurements + 7)


def test_request_labels_stay_few_whatever_the_client_sends() -> None:
    route = "/api/v1/jobs/{job_id}"
    before = parse(_default_exposition())
    observe_request("BREW", route, 405, 0.001)  # a method of the client's choosing
    after = parse(_default_exposition())
    labels = {"method": "other", "route": route, "status": "405"}
    assert value(after, REQUESTS, **labels) - value(before, REQUESTS, **labels) == 1
    assert not any(dict(key).get("method") == "BREW" for _, key in after)


async def test_metrics_need_a_token_when_reads_do_and_probes_never(sqlite_url: str) -> None:
    await truncate_all(sqlite_url)
    settings = Settings(database_url=sqlite_url, read_token_required=True)
    async with app_client(settings) as (app, client):
        assert_problem(await client.get("/metrics"), 401, "not_authenticated")
        token = await new_token(context_of(app), "read")
        assert (await client.get("/metrics", headers=bearer(token))).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/healthz")).status_code == 200


def _default_exposition() -> str:
    body, _ = exposition("")
    return body.decode()


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_ingested_jobs_and_measurements_are_counted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await import_demo(client, auth)
    before = await scrape(client)
    job = job_body(measurement("demo.PA1", 5.0, "mmag"), measurement("demo.WALL", 2.0, "s"))
    assert (await client.post("/api/v1/jobs", json=job, headers=auth)).status_code == 201
    assert (await client.post("/api/v1/jobs", json=job, headers=auth)).status_code == 200
    after = await scrape(client)
    for name, added in (
        ("specwatch_jobs_ingested_total", 1),
        ("specwatch_measurements_ingested_total", 2),
    ):
        assert value(after, name) - value(before, name) == added, name


# --- /readyz -----------------------------------------------------------------------------------


async def test_readyz_is_ready_on_a_healthy_stack(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    ready = Readiness.model_validate(response.json())
    checks = ready.checks
    assert checks.database.ok and checks.series_store.ok and checks.outbox.ok
    assert "0 jobs wait" in checks.outbox.detail


@pytest.fixture
def private_influxdb() -> Iterator[InfluxDBServer]:
    """An influxd of this test alone: it is stopped and started again."""
    with running_influxdb() as server:
        yield server


async def test_readyz_names_the_series_store_then_the_outbox_while_influxdb_is_down(
    private_influxdb: InfluxDBServer, postgres_url: str
) -> None:
    await truncate_all(postgres_url)
    settings = Settings(
        database_url=postgres_url,
        influxdb_url=private_influxdb.url,
        influxdb_database="readiness",
        influxdb_timeout_s=2.0,
        series_write_wait_s=2.0,
        outbox_retry_initial_s=0.05,
        outbox_retry_max_s=0.2,
        ready_max_outbox=1,
    )
    async with app_client(settings) as (app, client):
        auth = bearer(await new_token(context_of(app), "write:jobs", "write:definitions"))
        await import_demo(client, auth)
        assert (await client.get("/readyz")).status_code == 200

        await asyncio.to_thread(private_influxdb.stop)
        body = assert_problem(await client.get("/readyz"), 503, "not_ready")
        assert [error["location"] for error in body["errors"]] == [["checks", "series_store"]]
        assert "InfluxDB ping failed" in body["errors"][0]["message"]
        assert body["detail"].startswith("not ready: series_store: InfluxDB ping failed")

        before = await scrape(client)
        for commit in ("a1", "b2"):  # stored; their points wait in the outbox
            job = job_body(measurement("demo.PA1", 5.0, "mmag"), commit=commit)
            assert (await client.post("/api/v1/jobs", json=job, headers=auth)).status_code == 201
        body = assert_problem(await client.get("/readyz"), 503, "not_ready")
        failed = {error["location"][1]: error["message"] for error in body["errors"]}
        assert failed.keys() == {"series_store", "outbox"}
        assert "more than 1 jobs wait" in failed["outbox"]
        after = await scrape(client)
        assert value(after, "specwatch_outbox_pending_jobs") == 2
        assert value(after, "specwatch_outbox_oldest_age_seconds") > 0
        errors = "specwatch_series_write_errors_total"
        assert value(after, errors, backend="influxdb") > value(before, errors, backend="influxdb")

        await asyncio.to_thread(private_influxdb.start)

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready, what="ready once InfluxDB is back and the outbox delivered")
        assert value(await scrape(client), "specwatch_outbox_pending_jobs") == 0


def _previous_revision(config: Any) -> str:
    """The migration before the head (the head's ``down_revision``), found, not named."""
    down = ScriptDirectory.from_config(config).get_revision(head_revision()).down_revision
    assert isinstance(down, str), down
    return down


async def test_readiness_names_a_database_one_migration_behind(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'behind.sqlite3'}"
    config = alembic_config(url)
    previous = _previous_revision(config)
    await asyncio.to_thread(command.upgrade, config, previous)  # env.py runs its own loop
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    try:
        ops = OpsService(engine, sessionmaker, EmbeddedSeriesStore(sessionmaker), max_outbox=10)
        readiness = await ops.readiness()
    finally:
        await engine.dispose()
    assert not readiness.ready
    assert not readiness.database.ok
    assert f"at migration {previous}" in readiness.database.detail
    assert head_revision() in readiness.database.detail
    assert readiness.series_store.ok and readiness.outbox.ok


async def test_readyz_answers_503_naming_the_database_when_its_schema_falls_behind(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'stamped.sqlite3'}"
    config = alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, "head")
    async with app_client(Settings(database_url=url)) as (app, client):
        assert (await client.get("/readyz")).status_code == 200
        # What a database restored from an older backup says (the app started before).
        async with context_of(app).engine.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :previous"),
                {"previous": _previous_revision(config)},
            )
        body = assert_problem(await client.get("/readyz"), 503, "not_ready")
        assert [error["location"] for error in body["errors"]] == [["checks", "database"]]
        assert "run `specwatch db upgrade`" in body["errors"][0]["message"]


# --- served: JSON logs with the request id, metrics of every worker ----------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedSpecwatch, Path]]:
    """``specwatch serve --workers 2`` with JSON logs and Prometheus' multi-process mode."""
    folder = tmp_path_factory.mktemp("observability")
    multiproc = folder / "prometheus"
    multiproc.mkdir()
    server = ServedSpecwatch(folder, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    argv = [str(SPECWATCH), "serve", "--host", "127.0.0.1", "--port", str(server.port)]
    with server.log.open("ab") as sink:
        server.process = subprocess.Popen(
            [*argv, "--workers", "2"], env=server.env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.process.poll() is not None:
                raise RuntimeError(f"specwatch serve did not start:\n{server.log.read_text()}")
            time.sleep(0.1)
        yield server, multiproc
    finally:
        server.stop()


def _log_lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_log_lines_of_a_request_carry_its_request_id(
    served: tuple[ServedSpecwatch, Path],
) -> None:
    server, _ = served
    token = server.token("write:definitions")
    response = httpx.post(
        f"{server.url}/api/v1/definitions", json={"files": DEMO_FILES}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while True:
        events = {e["event"] for e in _log_lines(server.log) if e.get("request_id") == request_id}
        if {"definitions imported", "request"} <= events or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # The service's own line inside the handler, and the access line.
    assert {"definitions imported", "request"} <= events, events


def test_every_worker_answers_the_requests_of_all(served: tuple[ServedSpecwatch, Path]) -> None:
    server, multiproc = served

    def healthz_count() -> float:
        scraped = httpx.get(f"{server.url}/metrics", timeout=10)
        assert scraped.status_code == 200
        return value(parse(scraped.text), REQUESTS, method="GET", route="/healthz", status="200")

    start = healthz_count()
    sent = 40
    with ThreadPoolExecutor(max_workers=8) as pool:  # new connections: both workers answer
        statuses = list(pool.map(lambda _: server.get("/healthz").status_code, range(sent)))
    assert statuses == [200] * sent
    deadline = time.monotonic() + 10
    while healthz_count() < start + sent and time.monotonic() < deadline:
        time.sleep(0.1)  # a request is counted just after its answer
    # Any worker answers the scrape, and each answers the sum of all of them.
    assert [healthz_count() for _ in range(6)] == [start + sent] * 6
    # Each process writes its own file: more than one of them answered.
    answered = [path.name for path in multiproc.glob("counter_*.db") if _healthz_in(path)]
    assert len(answered) >= 2, answered
    # Backlog gauges come from the database, once per scrape, not from the workers' files.
    scraped = parse(httpx.get(f"{server.url}/metrics", timeout=10).text)
    assert value(scraped, "specwatch_outbox_pending_jobs") == 0


def _healthz_in(path: Path) -> float:
    """The /healthz requests counted in one process's file."""
    merged = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
    return sum(
        float(sample.value)
        for family in merged
        for sample in family.samples
        if sample.name == REQUESTS and sample.labels.get("route") == "/healthz"
    )
