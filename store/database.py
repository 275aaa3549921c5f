"""Engine, sessions and the schema check against Alembic's head."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from specwatch.config import normalize_database_url
from specwatch.exceptions import DatabaseNotReadyError, is_connection_lost


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout."""
    url = normalize_database_url(database_url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, json_serializer=_json_dumps, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_async_engine(
        url,
        json_serializer=_json_dumps,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping per checkout (three round trips per request); connections are recycled, and
        # a request on a connection the server dropped fails once with a 503 to retry.
        pool_recycle=1800,
    )

    @event.listens_for(engine.sync_engine, "handle_error")
    def _connection_lost(context: Any) -> None:
        # PostgreSQL terminated or restarting: asyncpg reports some of these in ways SQLAlchemy
        # does not take for a lost connection, and would hand the broken one out again.
        if is_connection_lost(context.original_exception):
            context.is_disconnect = True

    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def migrations_path() -> Path:
    """Folder of the Alembic environment shipped in the package."""
    return Path(str(resources.files("specwatch.store") / "migrations"))


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for ``database_url`` that needs no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    config.set_main_option(
        "sqlalchemy.url", normalize_database_url(database_url).replace("%", "%%")
    )
    return config


@functools.cache  # the shipped migrations do not change while the process runs
def head_revision() -> str:
    """The latest migration of the package (read from its files once per process)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None, "the package ships no migration"
    return head


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def check_schema(engine: AsyncEngine) -> None:
    """Raise ``DatabaseNotReadyError`` unless the database is at the latest migration."""
    async with engine.connect() as connection:
        current = await connection.run_sync(_current_revision)
    head = head_revision()
    if current != head:
        raise DatabaseNotReadyError(
            f"the database is at migration {current or 'none (empty)'}, this version needs "
            f"{head}: run `specwatch db upgrade`"
        )
