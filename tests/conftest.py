"""Fixtures: real SQLite and PostgreSQL databases, a real influxd, the app in process.

``stack`` parametrises the service tests over the supported deployments:
``sqlite`` (the zero set-up default: SQLite + embedded series store), ``postgresql``
(PostgreSQL + embedded) and ``postgresql+influxdb`` (production: PostgreSQL + InfluxDB).
PostgreSQL is reached at ``SPECWATCH_TEST_POSTGRES_URL`` (default: the local server, trust
auth); each test session works in a database of its own, dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
import pytest
from alembic import command
from asgi_lifespan import LifespanManager
from browser import CHROMEDRIVER, CHROMIUM, Browser, have_chromium
from fastapi import FastAPI
from influxdb_server import InfluxDBServer, ensure_influxd
from served import ServedSpecwatch
from sqlalchemy import text

from specwatch.api.app import create_app
from specwatch.config import Settings
from specwatch.services.context import ProcessContext
from specwatch.store.database import alembic_config, create_engine
from specwatch.store.models import Base

POSTGRES_ADMIN_URL = os.environ.get(
    "SPECWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SHARED = Path(__file__).resolve().parents[2] / "shared"
LSST_DATA = SHARED / "datasets" / "lsst"
T = TypeVar("T")
STACKS = ("sqlite", "postgresql", "postgresql+influxdb")


def _in_thread(function: Callable[[], T]) -> T:
    """Run blocking set-up that uses its own event loop, even when called from inside one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()


def _migrate(url: str) -> None:
    _in_thread(lambda: command.upgrade(alembic_config(url), "head"))


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "specwatch.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    _migrate(url)
    return url


@contextmanager
def empty_postgres_database() -> Iterator[str]:
    """A new, empty database on the PostgreSQL server (async URL), dropped afterwards."""
    name = f"specwatch_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = POSTGRES_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://")

    async def admin_sql(statement: str) -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    _in_thread(lambda: asyncio.run(admin_sql(f'CREATE DATABASE "{name}"')))
    try:
        yield admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    finally:
        _in_thread(lambda: asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this session on the PostgreSQL server, migrated to head."""
    with empty_postgres_database() as url:
        _migrate(url)
        yield url


@contextmanager
def running_influxdb() -> Iterator[InfluxDBServer]:
    """A real influxd on a temp dir and free loopback ports, removed afterwards."""
    server = InfluxDBServer(ensure_influxd())
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def influxdb_server() -> Iterator[InfluxDBServer]:
    with running_influxdb() as server:
        yield server


async def truncate_all(url: str) -> None:
    """Empty every table (a clean schema per test, without re-running migrations)."""
    engine = create_engine(url)
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as connection:
        if url.startswith("postgresql"):
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await connection.execute(text(f"DELETE FROM {table}"))
    await engine.dispose()


@dataclass
class Stack:
    name: str
    settings: Settings
    influxdb: InfluxDBServer | None


@pytest.fixture(params=STACKS)
async def stack(request: pytest.FixtureRequest) -> Stack:
    """Settings for one deployment, on empty databases."""
    name: str = request.param
    url = request.getfixturevalue("postgres_url" if name.startswith("postgresql") else "sqlite_url")
    await truncate_all(url)
    server = request.getfixturevalue("influxdb_server") if "influxdb" in name else None
    values: dict[str, object] = {
        "database_url": url,
        "series_write_wait_s": 5.0,
        "outbox_retry_initial_s": 0.05,
        "outbox_retry_max_s": 0.2,
        "influxdb_timeout_s": 2.0,
    }
    if server is not None:
        values["influxdb_url"] = server.url
        values["influxdb_database"] = f"test_{uuid.uuid4().hex[:12]}"
    return Stack(name, Settings(**values), server)  # type: ignore[arg-type]


@pytest.fixture
async def context(stack: Stack) -> AsyncIterator[ProcessContext]:
    """The process context (services) of the stack, with background delivery running."""
    ctx = await ProcessContext.open(stack.settings)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def app(stack: Stack) -> AsyncIterator[FastAPI]:
    application = create_app(stack.settings)
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://specwatch.test") as c:
        yield c


@pytest.fixture
async def write_token(app: FastAPI) -> str:
    context: ProcessContext = app.state.context
    plain, _ = await context.tokens().create(scopes=["write:jobs", "write:definitions"])
    return plain


@pytest.fixture
def auth(write_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {write_token}"}


def lsst_data(*parts: str) -> Path:
    path = LSST_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/datasets/lsst)")
    return path


# --- the dashboard in a real browser -------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium (``make browser`` installs it; the test command does)."""
    if not have_chromium():
        pytest.fail(f"no {CHROMIUM} / {CHROMEDRIVER}: run `make browser` (Debian chromium)")
    window = Browser()
    try:
        yield window
    finally:
        window.close()


@contextmanager
def served_demo(folder: Path) -> Iterator[ServedSpecwatch]:
    """``specwatch serve`` (uvicorn) on a SQLite file holding the demo history."""
    server = ServedSpecwatch(folder)
    server.cli("demo")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSpecwatch]:
    """The demo, served once for the session: tests that change data serve their own."""
    with served_demo(tmp_path_factory.mktemp("demo-server")) as server:
        yield server


@pytest.fixture
def demo_browser(browser: Browser, demo_server: ServedSpecwatch) -> Iterator[Browser]:
    """The browser pointed at the demo server; a test fails on any console error."""
    with browser.watching(demo_server.url) as watching:
        yield watching
