"""Dependencies: the process context, and who may call.

The route class (``edge.EdgeRoute``) authenticates before the body is read, finding the scope
a route needs on these dependencies; they hand its principal to the handler and declare the
bearer scheme in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from specwatch.metrics.limits import INT64_MAX
from specwatch.services.context import ProcessContext
from specwatch.services.tokens import Principal

from .edge import SCOPE_ATTRIBUTE, authenticate_request

MAX_ID = INT64_MAX  # ids are 64-bit

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="sw_<key>_<secret>",
    description="A token from `specwatch token create` (scopes write:jobs, write:definitions, "
    "triage, read).",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


async def get_context(request: Request) -> ProcessContext:
    """The process context (async: FastAPI would run a plain function in a thread)."""
    context: ProcessContext = request.app.state.context
    return context


Context = Annotated[ProcessContext, Depends(get_context)]


async def _principal(request: Request, context: ProcessContext, scope: str) -> Principal | None:
    if not hasattr(request.state, "principal"):  # a route outside EdgeRoute
        await authenticate_request(request, context, scope)
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that gives the principal of a bearer token holding ``scope``."""

    async def dependency(request: Request, context: Context, _: Credentials) -> Principal:
        principal = await _principal(request, context, scope)
        assert principal is not None  # authenticate_request raised otherwise
        return principal

    setattr(dependency, SCOPE_ATTRIBUTE, scope)
    return dependency


async def read_access(request: Request, context: Context, _: Credentials) -> None:
    """Open unless ``SPECWATCH_READ_TOKEN_REQUIRED`` is set; then any valid token reads."""
    await _principal(request, context, "read")


setattr(read_access, SCOPE_ATTRIBUTE, "read")


def base_url(request: Request, context: ProcessContext) -> str:
    return (context.settings.public_url or str(request.base_url)).rstrip("/")
