"""Both PostgreSQL drivers the settings accept work end to end (asyncpg is the default)."""

from __future__ import annotations

import json

import pytest
from conftest import truncate_all

from specwatch.config import Settings, normalize_database_url
from specwatch.services.context import ProcessContext
from specwatch.services.metrics import SeriesFilter


def test_plain_urls_get_async_drivers() -> None:
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalize_database_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalize_database_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalize_database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert Settings(database_url="postgresql://u@h/db").database_url.startswith(
        "postgresql+asyncpg"
    )


@pytest.mark.parametrize("driver", ["postgresql+asyncpg", "postgresql+psycopg"])
async def test_ingest_and_read_back_with_each_driver(postgres_url: str, driver: str) -> None:
    await truncate_all(postgres_url)
    url = driver + postgres_url.split("postgresql+asyncpg", 1)[1]
    context = await ProcessContext.open(Settings(database_url=url))
    try:
        await context.definitions().import_files({"metrics/drv.yaml": "PA1:\n  unit: mmag\n"})
        body = {
            "measurements": [{"metric": "drv.PA1", "value": 0.005, "unit": "mag"}],
            "meta": {"dataset": "d", "branch": "main", "time": "2026-02-01T00:00:00Z"},
        }
        result = await context.jobs().ingest(json.dumps(body).encode())
        assert result.created
        assert result.delivered
        job, _ = await context.jobs().get(result.id)
        assert job.measurements[0].value == pytest.approx(5.0)
        assert job.measurements[0].raw_unit == "mag"
        _, series = await context.metrics().series(
            "drv.PA1", SeriesFilter(dataset="d", branch="main")
        )
        assert series.job_id == [result.id]
    finally:
        await context.close()
