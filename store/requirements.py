"""Requirements of the verification matrix in the SQL store.  Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from specwatch.metrics.requirements import Method, Requirement

from .definitions import UpsertCounts
from .models import SQLRequirement


def _requirement(row: SQLRequirement) -> Requirement:
    return Requirement(row.id, row.title, Method(row.method), tuple(row.spec_patterns))


class RequirementStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def upsert(self, requirements: Sequence[Requirement], now: datetime) -> UpsertCounts:
        rows = {
            row.id: row
            for row in await self._session.scalars(
                select(SQLRequirement).where(SQLRequirement.id.in_([r.id for r in requirements]))
            )
        }
        added = updated = unchanged = 0
        for requirement in requirements:
            row = rows.get(requirement.id)
            if row is None:
                self._session.add(
                    SQLRequirement(
                        id=requirement.id,
                        title=requirement.title,
                        method=requirement.method.value,
                        spec_patterns=list(requirement.specs),
                        created_at=now,
                        updated_at=now,
                    )
                )
                added += 1
            elif _requirement(row) == requirement:
                unchanged += 1
            else:
                row.title, row.method = requirement.title, requirement.method.value
                row.spec_patterns, row.updated_at = list(requirement.specs), now
                updated += 1
        await self._session.flush()
        return UpsertCounts(added, updated, unchanged)

    async def all(self, *, limit: int = 10_000) -> list[Requirement]:
        """Every requirement, by ID (a verification matrix has hundreds, not millions)."""
        rows = await self._session.scalars(
            select(SQLRequirement).order_by(SQLRequirement.id).limit(limit)
        )
        return [_requirement(row) for row in rows]
