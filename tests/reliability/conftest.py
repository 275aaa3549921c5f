"""Fixtures of the reliability tests: a killable influxd, the shared PostgreSQL's databases."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from conftest import empty_postgres_database
from influxdb_server import ensure_influxd

from .harness import KillableInfluxDB

# How long each load runs (s); the full figure is bench/load.py's 60 s.
LOAD_S = float(os.environ.get("SPECWATCH_LOAD_S", "15"))


@pytest.fixture
def influxdb() -> Iterator[KillableInfluxDB]:
    """An influxd of this test only: a test may kill it."""
    server = KillableInfluxDB(ensure_influxd())
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A new, empty database on the shared PostgreSQL server (async URL), dropped after."""
    with empty_postgres_database() as url:
        yield url
