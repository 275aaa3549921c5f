"""Dependencies: the process context, and who may call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from specwatch.services.context import ProcessContext
from specwatch.services.tokens import Principal

MAX_ID = 2**63 - 1  # ids are 64-bit


async def get_context(request: Request) -> ProcessContext:
    """The process context (async: FastAPI would run a plain function in a thread)."""
    context: ProcessContext = request.app.state.context
    return context


Context = Annotated[ProcessContext, Depends(get_context)]
AuthorizationHeader = Annotated[
    str | None, Header(alias="Authorization", description="Bearer sw_… token")
]


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the bearer token and checks ``scope``."""

    async def dependency(context: Context, authorization: AuthorizationHeader = None) -> Principal:
        principal = await context.tokens().authenticate(authorization)
        principal.require(scope)
        return principal

    return dependency


async def read_access(context: Context, authorization: AuthorizationHeader = None) -> None:
    """Open unless ``SPECWATCH_READ_TOKEN_REQUIRED`` is set; then any valid token reads."""
    if context.settings.read_token_required:
        principal = await context.tokens().authenticate(authorization)
        principal.require("read")


def base_url(request: Request, context: ProcessContext) -> str:
    return (context.settings.public_url or str(request.base_url)).rstrip("/")
