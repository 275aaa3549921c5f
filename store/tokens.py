"""API tokens in the SQL store: only a SHA-256 of each secret is kept.  Never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import SQLToken


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: int
    key: str
    secret_sha256: str
    name: str
    scopes: tuple[str, ...]
    packages: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def _record(row: SQLToken) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        key=row.key,
        secret_sha256=row.secret_sha256,
        name=row.name,
        scopes=tuple(row.scopes),
        packages=tuple(row.packages),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class TokenStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self,
        *,
        key: str,
        secret_sha256: str,
        name: str,
        scopes: list[str],
        packages: list[str],
        now: datetime,
        expires_at: datetime | None,
    ) -> TokenRecord:
        row = SQLToken(
            key=key,
            secret_sha256=secret_sha256,
            name=name,
            scopes=scopes,
            packages=packages,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
        )
        self._session.add(row)
        await self._session.flush()
        return _record(row)

    async def get_by_key(self, key: str) -> TokenRecord | None:
        row = await self._session.scalar(select(SQLToken).where(SQLToken.key == key))
        return _record(row) if row else None

    async def list_tokens(self, *, limit: int = 1000) -> list[TokenRecord]:
        rows = await self._session.scalars(select(SQLToken).order_by(SQLToken.id).limit(limit))
        return [_record(row) for row in rows]

    async def revoke(self, key: str, now: datetime) -> bool:
        result = await self._session.execute(
            update(SQLToken)
            .where(SQLToken.key == key, SQLToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]  # CursorResult has rowcount
