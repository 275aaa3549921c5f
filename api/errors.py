"""Every error as an RFC 9457 problem body; no stack trace ever reaches a client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from specwatch.exceptions import ClientError, ServerError, is_connection_lost

from .responses import ProblemResponse

log = structlog.get_logger("specwatch.api")

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Permission denied",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(
    request: Request,
    status: int,
    code: str,
    detail: str,
    *,
    location: Sequence[str | int] | None = None,
    errors: list[dict[str, Any]] | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": f"urn:specwatch:problem:{code}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
    }
    if location is not None:
        body["location"] = list(location)
    if errors is not None:
        body["errors"] = errors
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return ProblemResponse(body, status_code=status, headers={**headers, **(extra_headers or {})})


async def _client_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, ClientError)
    # A 422 always lists its errors, as FastAPI's own validation errors do: one shape to read.
    errors = (
        [{"location": exc.location or [], "message": exc.message, "type": exc.code}]
        if exc.status == 422
        else None
    )
    return problem(request, exc.status, exc.code, exc.message, location=exc.location, errors=errors)


async def _validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"location": list(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type")}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"location": [], "message": "invalid request"}
    where = ".".join(str(part) for part in first["location"])
    return problem(
        request,
        422,
        "invalid_input",
        f"{where}: {first['message']}",
        location=first["location"],
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # RFC 9110: Allow lists every method of the resource
        headers["Allow"] = ", ".join(sorted(_methods_of(request)))
    return problem(request, exc.status_code, code, str(exc.detail), extra_headers=headers)


def _methods_of(request: Request) -> set[str]:
    """The methods any route answers at this path (Starlette's 405 names one route's)."""
    methods: set[str] = set()
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            methods.add(method)
    return methods | ({"HEAD"} if "GET" in methods else set())


async def _service_unavailable(request: Request, exc: Exception) -> ProblemResponse:
    """A backend Specwatch depends on failed (e.g. InfluxDB is down): 503, said plainly."""
    log.warning("service unavailable", path=request.url.path, error=str(exc))
    return problem(request, 503, "service_unavailable", str(exc))


async def _database_unavailable(request: Request, exc: Exception) -> ProblemResponse:
    """The database dropped or refused the connection: 503, so clients retry; its disk is
    full: 507.  Any other database error is a defect: raised again, answered 500."""
    if "database or disk is full" in str(exc) or "No space left on device" in str(exc):
        log.error("database disk full", path=request.url.path)
        return problem(
            request,
            507,
            "insufficient_storage",
            "the database's disk is full: nothing was stored; retry once space is freed",
        )
    lost = isinstance(exc, DisconnectionError | TimeoutError | ConnectionError) or (
        isinstance(exc, DBAPIError)
        and (exc.connection_invalidated or is_connection_lost(exc) or _is_operational(exc))
    )
    if not lost:
        raise exc
    log.warning("database unavailable", path=request.url.path, error=type(exc).__name__)
    return problem(
        request, 503, "database_unavailable", "the database is unavailable; retry shortly"
    )


def _is_operational(exc: DBAPIError) -> bool:
    """SQLAlchemy's classes for errors of the database's operation, not of the statement."""
    return isinstance(exc, OperationalError | InterfaceError)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ClientError, _client_error)
    app.add_exception_handler(ServerError, _service_unavailable)
    for error in (DBAPIError, DisconnectionError, TimeoutError, ConnectionError):
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Any other exception: ``edge.EdgeMiddleware`` logs it once and answers a 500 problem.
