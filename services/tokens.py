"""API tokens: creation (shown once), listing, revocation, and checking a bearer token."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.exceptions import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from specwatch.store.tokens import TokenRecord, TokenStore

SCOPES = ("write:jobs", "write:definitions", "triage", "read")
_TOKEN = re.compile(r"^sw_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{20,})$")
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's key, scopes and allowed packages (empty: all)."""

    key: str
    scopes: tuple[str, ...]
    packages: tuple[str, ...]

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def require(self, scope: str) -> None:
        if scope not in self.scopes and not (scope == "read" and self.scopes):
            raise PermissionDeniedError(
                f"this token has scope(s) {', '.join(self.scopes)}; {scope} is needed"
            )


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``2w`` as a timedelta."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise InvalidInputError(f"duration {text!r} is not like 90d, 12h, 30m or 2w")
    return timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenCache:
    """Recently checked tokens, so that a busy client costs no query per request.

    A revoked token stops working within ``ttl_s`` in every process.
    """

    def __init__(self, ttl_s: float = 10.0, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self._size = size
        self._entries: dict[str, tuple[float, Principal, datetime | None]] = {}

    def get(self, token: str) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        checked_at, principal, expires_at = entry
        if time.monotonic() - checked_at > self.ttl_s or (
            expires_at is not None and expires_at <= datetime.now(UTC)
        ):
            del self._entries[token]
            return None
        return principal

    def put(self, token: str, principal: Principal, expires_at: datetime | None) -> None:
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[token] = (time.monotonic(), principal, expires_at)

    def clear(self) -> None:
        self._entries.clear()


class TokenService:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], cache: TokenCache | None = None
    ) -> None:
        self._sessionmaker = sessionmaker
        self._cache = cache or TokenCache(ttl_s=0.0)

    async def create(
        self,
        *,
        scopes: Sequence[str],
        packages: Sequence[str] = (),
        expires_in: timedelta | None = None,
        name: str = "",
    ) -> tuple[str, TokenRecord]:
        """A new token: its plain text (never stored, shown once) and its record."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if not scopes or unknown:
            raise InvalidInputError(
                f"scope(s) {', '.join(unknown) or '(none)'} unknown; "
                f"choose from {', '.join(SCOPES)}"
            )
        key = "".join(secrets.choice("abcdefghijkmnopqrstuvwxyz23456789") for _ in range(12))
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        async with self._sessionmaker() as session, session.begin():
            record = await TokenStore(session).add(
                key=key,
                secret_sha256=_digest(secret),
                name=name,
                scopes=sorted(set(scopes)),
                packages=sorted(set(packages)),
                now=now,
                expires_at=now + expires_in if expires_in else None,
            )
        return f"sw_{key}_{secret}", record

    async def list_tokens(self) -> list[TokenRecord]:
        async with self._sessionmaker() as session:
            return await TokenStore(session).list_tokens()

    async def revoke(self, key: str) -> None:
        key = _TOKEN.match(key).group(1) if _TOKEN.match(key) else key  # type: ignore[union-attr]
        async with self._sessionmaker() as session, session.begin():
            if not await TokenStore(session).revoke(key, datetime.now(UTC)):
                raise NotFoundError(f"no active token with key {key!r}")
        self._cache.clear()

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer sw_…`` header.

        Raises:
            AuthenticationError: no header, not a bearer token, unknown, revoked or expired.
        """
        if not authorization:
            raise AuthenticationError("this request needs 'Authorization: Bearer <token>'")
        cached = self._cache.get(authorization)
        if cached is not None:
            return cached
        scheme, _, token = authorization.partition(" ")
        match = _TOKEN.match(token.strip())
        if scheme.lower() != "bearer" or not match:
            raise AuthenticationError("the Authorization header is not 'Bearer sw_…'")
        async with self._sessionmaker() as session:
            record = await TokenStore(session).get_by_key(match.group(1))
        if record is None or not hmac.compare_digest(record.secret_sha256, _digest(match.group(2))):
            raise AuthenticationError("the token is not valid")
        if record.revoked_at is not None:
            raise AuthenticationError("the token was revoked")
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise AuthenticationError("the token has expired")
        principal = Principal(record.key, record.scopes, record.packages)
        self._cache.put(authorization, principal, record.expires_at)
        return principal
