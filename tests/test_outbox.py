"""Nothing is lost when InfluxDB is down: the outbox delivers every point exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from conftest import running_influxdb, truncate_all
from fastapi import FastAPI
from influxdb_server import InfluxDBServer

from specwatch.api.app import create_app
from specwatch.config import Settings
from specwatch.services.context import ProcessContext
from specwatch.store.series.base import SeriesQuery
from specwatch.store.series.influxdb import InfluxDBSeriesStore

DEFINITIONS = {"metrics/outbox.yaml": "PA1:\n  unit: mmag\nAM1:\n  unit: marcsec\n"}


def body(n: int) -> bytes:
    """A job as lsst.verify writes it (json.dumps writes NaN as a bare token)."""
    return json.dumps(job(n)).encode()


def job(n: int) -> dict[str, object]:
    return {
        "measurements": [
            {"metric": "outbox.PA1", "value": 5.0 + n / 100, "unit": "mmag"},
            {"metric": "outbox.AM1", "value": float("nan") if n == 3 else 7.0, "unit": "marcsec"},
        ],
        "meta": {
            "dataset": "HSC-RC2",
            "branch": "main",
            "commit": f"c{n:03d}",
            "time": f"2026-03-01T00:{n:02d}:00Z",
        },
    }


@pytest.fixture
def own_influxdb() -> Iterator[InfluxDBServer]:
    """An influxd of this test's own, so that stopping it disturbs no other test."""
    with running_influxdb() as server:
        yield server


@pytest.fixture
async def settings(postgres_url: str, own_influxdb: InfluxDBServer) -> Settings:
    await truncate_all(postgres_url)
    return Settings(
        database_url=postgres_url,
        influxdb_url=own_influxdb.url,
        influxdb_database=f"outbox_{uuid.uuid4().hex[:8]}",
        influxdb_timeout_s=1.0,
        series_write_wait_s=1.0,
        outbox_retry_initial_s=0.05,
        outbox_retry_max_s=0.3,
    )


async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield app, client


async def wait_until_delivered(client: httpx.AsyncClient, timeout_s: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (await client.get("/healthz")).json()["outbox_pending"]:
        assert loop.time() < deadline, "the outbox was not delivered in time"
        await asyncio.sleep(0.05)


async def test_points_written_while_influxdb_is_down_arrive_exactly_once(
    settings: Settings, own_influxdb: InfluxDBServer
) -> None:
    assert settings.influxdb_url
    influx = InfluxDBSeriesStore(settings.influxdb_url, settings.influxdb_database)
    async for app, client in running_app(settings):
        context: ProcessContext = app.state.context
        await context.definitions().import_files(DEFINITIONS)
        token, _ = await context.tokens().create(scopes=["write:jobs"])
        auth = {"Authorization": f"Bearer {token}"}
        first = await client.post("/api/v1/jobs", content=body(0), headers=auth)
        assert first.status_code == 201

        own_influxdb.stop()
        ids = []
        for n in range(1, 11):
            response = await client.post("/api/v1/jobs", content=body(n), headers=auth)
            assert response.status_code == 201, response.text  # acknowledged once in SQL
            ids.append(response.json()["id"])
        assert (await client.get("/healthz")).json()["outbox_pending"] == 10
        # Reads of the series fail cleanly while the store is down: a 503 problem, no trace.
        down = await client.get("/api/v1/metrics/outbox.PA1/series")
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert "Traceback" not in down.text

        own_influxdb.start()
        await wait_until_delivered(client)
        series = await influx.query(SeriesQuery("outbox", "PA1", limit=100))
        assert series.job_id == [first.json()["id"], *ids]
        assert series.value == [5.0 + n / 100 for n in range(11)]
        assert series.commit == [f"c{n:03d}" for n in range(11)]
        am1 = await influx.query(SeriesQuery("outbox", "AM1", limit=100))
        assert am1.value[3] is None  # the NaN build is there, as null
        assert len(am1) == 11
        assert await influx.count_points("outbox") == 11
    await influx.close()


async def test_a_restarted_process_delivers_what_another_left_in_the_outbox(
    settings: Settings, own_influxdb: InfluxDBServer
) -> None:
    """A process that stops with undelivered points leaves them to the next one."""
    assert settings.influxdb_url
    own_influxdb.stop()
    async for app, client in running_app(settings):
        context: ProcessContext = app.state.context
        await context.definitions().import_files(DEFINITIONS)
        token, _ = await context.tokens().create(scopes=["write:jobs"])
        for n in range(5):
            response = await client.post(
                "/api/v1/jobs", content=body(n), headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 201
        assert (await client.get("/healthz")).json()["outbox_pending"] == 5
    # The first process is gone; InfluxDB comes back; a new process drains the outbox.
    own_influxdb.start()
    context = await ProcessContext.open(settings, background=False)
    try:
        assert await context.deliverer.drain() == 5
        assert await context.deliverer.pending() == 0
        assert await context.deliverer.drain() == 0
        series = await context.series.query(SeriesQuery("outbox", "PA1", limit=100))
        assert series.value == [5.0 + n / 100 for n in range(5)]
        assert await context.series.count_points("outbox") == 5
    finally:
        await context.close()
