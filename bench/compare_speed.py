"""Benchmark: GET /api/v1/compare for a PR with 1,000 metrics on PostgreSQL + InfluxDB.

Creates a fresh PostgreSQL database and a real influxd, loads 1,000 metrics, 12 builds of main
and 2 builds of a pull request (1,000 measurements each), then times the comparison of the PR
with ``base=auto`` (10 baseline builds) through the API in process (ASGI, lifespan, JSON
included; no network), and through the service alone.  Prints medians of 3 runs of 20 calls.

    .venv/bin/python bench/compare_speed.py
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
from alembic import command
from asgi_lifespan import LifespanManager

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from influxdb_server import InfluxDBServer, ensure_influxd  # noqa: E402

from specwatch.api.app import create_app  # noqa: E402
from specwatch.config import Settings  # noqa: E402
from specwatch.services.context import ProcessContext  # noqa: E402
from specwatch.store.database import alembic_config  # noqa: E402

N_METRICS = 1000
ADMIN = os.environ.get("SPECWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_MS = 300.0


async def admin(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN.replace("+asyncpg", ""))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def job_body(n: int, *, pr: int | None = None) -> bytes:
    values = [
        5.0 + (i % 7) * 0.1 + ((n * 7919 + i * 104729) % 1000) / 10000 for i in range(N_METRICS)
    ]
    if pr is not None:
        values[0] *= 1.5  # one regression
    return json.dumps(
        {
            "measurements": [
                {"metric": f"cmpbench.m{i:04d}", "value": v, "unit": "mmag"}
                for i, v in enumerate(values)
            ],
            "meta": {
                "dataset": "D",
                "filter": "r",
                "branch": "main" if pr is None else "pr-branch",
                "pr": pr,
                "commit": f"{n:040x}",
                "time": f"2026-07-{n:02d}T00:00:00Z",
                "base_commit": f"{12:040x}" if pr else None,
            },
        }
    ).encode()


async def load(context: ProcessContext) -> None:
    metrics = "".join(f"m{i:04d}:\n  unit: mmag\n" for i in range(N_METRICS))
    specs = "".join(
        f"---\nname: design\nmetric: m{i:04d}\nlevel: design\n"
        "threshold: {value: 6.0, unit: mmag, operator: '<='}\n"
        for i in range(N_METRICS)
    )
    await context.definitions().import_files(
        {"metrics/cmpbench.yaml": metrics, "specs/cmpbench/all.yaml": specs}
    )
    for n in range(1, 13):
        await context.jobs().ingest(job_body(n))
    for n in (20, 21):
        await context.jobs().ingest(job_body(n, pr=1))


async def timed(call: Callable[[], Awaitable[object]], runs: int = 20) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


async def main() -> int:
    name = f"specwatch_cmpbench_{os.getpid()}"
    await admin(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    server = InfluxDBServer(ensure_influxd())
    server.start()
    try:
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        settings = Settings(
            database_url=url,
            influxdb_url=server.url,
            influxdb_database=f"cmp_{uuid.uuid4().hex[:8]}",
        )
        app = create_app(settings)
        api_ms, service_ms = [], []
        async with LifespanManager(app):
            context: ProcessContext = app.state.context
            await load(context)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                first = (await client.get("/api/v1/compare", params={"head": "pr:1"})).json()
                assert len(first["metrics"]) == N_METRICS, len(first["metrics"])
                assert first["metrics"][0]["verdict"] == "regressed"
                assert len(first["base"]["jobs"]) == 10
                for run in range(3):
                    api_ms.append(
                        await timed(lambda: client.get("/api/v1/compare", params={"head": "pr:1"}))
                    )
                    service_ms.append(await timed(lambda: context.compare().compare("pr:1")))
                    print(
                        f"run {run + 1}: API {api_ms[-1]:.1f} ms, service {service_ms[-1]:.1f} ms"
                    )
        api, service = statistics.median(api_ms), statistics.median(service_ms)
        print(f"\ncompare, {N_METRICS} metrics, 10 baseline builds (median of 3 × 20 calls)")
        print(
            f"  API (in process, JSON included): {api:7.1f} ms   target < {TARGET_MS:.0f} ms  "
            f"{'ok' if api < TARGET_MS else 'MISS'}"
        )
        print(f"  service alone:                   {service:7.1f} ms")
        return 0
    finally:
        server.cleanup()
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
