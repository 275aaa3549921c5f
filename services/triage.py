"""Triage from a page: a pasted token authenticated as the API does, then accept or exclude.

The API authenticates a bearer header before its handler runs (``api.edge``); a dashboard
callback has no header, only the token a person pasted into the page.  This checks that token
exactly as the API would (same token service, same scope, same package limits) and calls the
same regression use cases.  The token is never stored, logged or returned; only its public
key is logged with the action.
"""

from __future__ import annotations

import re

import structlog

from specwatch.exceptions import AuthenticationError
from specwatch.metrics.limits import check_text
from specwatch.metrics.records import ChangeRecord

from .regressions import RegressionService
from .tokens import Principal, TokenService

log = structlog.get_logger("specwatch.triage")

SCOPE = "triage"
TOKEN_SHAPE = re.compile(r"sw_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{20,}")  # as ``tokens`` parses
MAX_NOTE_CHARS = 2000  # as the API's TriageNote and Exclusion bodies


class TriageService:
    def __init__(self, tokens: TokenService, regressions: RegressionService) -> None:
        self._tokens = tokens
        self._regressions = regressions

    async def principal(self, token: str | None) -> Principal:
        """Who holds ``token`` (the bare ``sw_…`` text, no ``Bearer``), if it may triage.

        Raises:
            AuthenticationError: no token, not a Specwatch token, unknown, revoked, expired.
            PermissionDeniedError: the token lacks the ``triage`` scope.
        """
        text = (token or "").strip()
        if not text:
            raise AuthenticationError("paste a token with the triage scope first")
        if not TOKEN_SHAPE.fullmatch(text):
            raise AuthenticationError("that is not a Specwatch token (they look like sw_…)")
        principal = await self._tokens.authenticate("Bearer " + text)
        principal.require(SCOPE)
        return principal

    async def accept(self, token: str | None, change_id: int, note: str) -> ChangeRecord:
        """Accept a change as expected, with a note.

        Raises:
            AuthenticationError, PermissionDeniedError: see ``principal``; also a change of a
                package outside the token's allowed packages.
            NotFoundError: no such change.
            InvalidInputError: the note is too long or holds a NUL character.
        """
        check_text(note, MAX_NOTE_CHARS, ["note"], "the note")
        principal = await self.principal(token)
        change = await self._regressions.set_status(
            change_id, "accepted", note.strip(), allowed_packages=principal.packages
        )
        log.info("change accepted", change_id=change_id, token_key=principal.key)
        return change

    async def exclude(self, token: str | None, job_id: int, reason: str) -> int:
        """Exclude a job's points as bad data; returns how many series were detected again.

        Raises:
            AuthenticationError, PermissionDeniedError: see ``principal``; also a job that
                measures a package outside the token's allowed packages.
            NotFoundError: no such job.
            InvalidInputError: the reason is too long or holds a NUL character.
        """
        check_text(reason, MAX_NOTE_CHARS, ["reason"], "the reason")
        principal = await self.principal(token)
        series = await self._regressions.exclude(
            job_id, reason.strip(), allowed_packages=principal.packages
        )
        log.info("job excluded", job_id=job_id, token_key=principal.key, series=series)
        return series
