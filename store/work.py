"""The durable queue of background work (``work_item``).  Never commits.

Several processes share it on PostgreSQL with no coordination of their own: a worker claims
due items with ``SELECT … FOR UPDATE SKIP LOCKED`` in a transaction it keeps open while it does
the work, and deletes them in that transaction; a crashed worker's transaction rolls back, so
its items go to another.  Asking for work already queued keeps its due time (a burst costs one
run) and bumps ``version``; an item asked for again while it ran keeps the newer request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .models import SQLWorkItem, table


@dataclass(frozen=True, slots=True)
class WorkItem:
    kind: str
    payload: str
    key: str = ""
    version: int = 1


def _key(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


def _upsert(dialect: str) -> postgresql.Insert | sqlite.Insert:
    """Insert, or keep the earlier due time and count the request (SQLite's two-argument
    ``min`` is PostgreSQL's ``least``); one statement per dialect, run with many rows."""
    if dialect == "postgresql":
        pg = postgresql.insert(table(SQLWorkItem))
        return pg.on_conflict_do_update(
            index_elements=["kind", "key"],
            set_={
                "due_at": func.least(pg.excluded.due_at, SQLWorkItem.due_at),
                "version": SQLWorkItem.version + 1,
            },
        )
    lite = sqlite.insert(table(SQLWorkItem))
    return lite.on_conflict_do_update(
        index_elements=["kind", "key"],
        set_={
            "due_at": func.min(lite.excluded.due_at, SQLWorkItem.due_at),
            "version": SQLWorkItem.version + 1,
        },
    )


_UPSERT = {dialect: _upsert(dialect) for dialect in ("postgresql", "sqlite")}


class WorkStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, kind: str, payloads: Mapping[str, int], due: datetime) -> None:
        """Ask for work: payloads and how many things (series, jobs) each holds, what
        ``count`` adds up.  Rows sorted by key, so that concurrent writers lock in one order."""
        rows: list[dict[str, object]] = sorted(
            (
                {"kind": kind, "key": _key(payload), "payload": payload, "due_at": due}
                | {"version": 1, "size": size}
                for payload, size in payloads.items()
            ),
            key=lambda row: str(row["key"]),
        )
        if rows:
            statement = _UPSERT[self._session.get_bind().dialect.name]
            await self._session.execute(statement, rows)

    async def claim(self, kind: str, now: datetime | None, limit: int) -> list[WorkItem]:
        """Items of ``kind`` due at ``now`` (every one if None), oldest first, locked for this
        transaction (PostgreSQL; items another transaction holds are skipped)."""
        query = select(SQLWorkItem.payload, SQLWorkItem.key, SQLWorkItem.version).where(
            SQLWorkItem.kind == kind
        )
        if now is not None:
            query = query.where(SQLWorkItem.due_at <= now)
        query = query.order_by(SQLWorkItem.due_at, SQLWorkItem.key).limit(limit)
        rows = await self._session.execute(query.with_for_update(skip_locked=True))
        return [WorkItem(kind, payload, key, version) for payload, key, version in rows]

    async def done(self, items: Sequence[WorkItem]) -> None:
        """Delete claimed items, unless asked for again since their claim (newer version)."""
        for start in range(0, len(items), 500):
            chunk = items[start : start + 500]
            await self._session.execute(
                delete(SQLWorkItem).where(
                    or_(
                        *(
                            and_(
                                SQLWorkItem.kind == item.kind,
                                SQLWorkItem.key == item.key,
                                SQLWorkItem.version == item.version,
                            )
                            for item in chunk
                        )
                    )
                )
            )

    async def postpone(self, items: Sequence[WorkItem], due: datetime) -> None:
        """Try claimed items again at ``due`` (their work failed)."""
        for item in items:
            await self._session.execute(
                update(SQLWorkItem)
                .where(SQLWorkItem.kind == item.kind, SQLWorkItem.key == item.key)
                .values(due_at=due)
            )

    async def clear(self, kind: str | None = None) -> None:
        statement = delete(SQLWorkItem)
        if kind is not None:
            statement = statement.where(SQLWorkItem.kind == kind)
        await self._session.execute(statement)

    async def count(self, kind: str) -> int:
        """How many things (series, jobs) wait, over the items of ``kind``."""
        query = select(func.coalesce(func.sum(SQLWorkItem.size), 0)).where(SQLWorkItem.kind == kind)
        return int(await self._session.scalar(query) or 0)
