"""The edge of the API: what every request passes before a handler sees it.

``EdgeMiddleware`` (pure ASGI, around every route): a checked ``X-Request-ID`` (bound to
every log line of the request), security headers, one access-log line, the request's count and
duration under its route template (``/metrics``), and the one place an unexpected error is
logged (once) and answered with a 500 problem.

``EdgeRoute`` (the route class of every API router), in this order, before FastAPI reads a
byte of the body: authentication and scope of the route (so a client without a token gets 401,
not a 422 about its body, and a 200 MB upload without a token is never read); path and query
parameters (length, NUL characters, which PostgreSQL refuses and SQLite would store); the body's
size (the declared ``Content-Length`` at once, then as it streams); a JSON body parsed within
the document limits (depth, integers, strings).  Each refusal is a problem with its location.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import structlog
from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from specwatch.exceptions import PayloadTooLargeError
from specwatch.metrics.limits import check_text, decode_json
from specwatch.services.context import ProcessContext
from specwatch.telemetry import observe_request

from .responses import dumps

log = structlog.get_logger("specwatch.api")
access_log = structlog.get_logger("specwatch.access")

# A client's request id is echoed only if it is a plain token (no markup, no header injection).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
SCOPE_ATTRIBUTE = "__specwatch_scope__"  # set on the auth dependencies of ``deps``
LARGE_BODY_ATTRIBUTE = "__specwatch_large_body__"  # set by ``large_body``
SCOPES_KEY = "x-required-scopes"  # in the OpenAPI operation of a route that needs a token


F = TypeVar("F", bound=Callable[..., Any])


def large_body(endpoint: F) -> F:
    """Mark an endpoint whose body may reach ``SPECWATCH_MAX_JOB_BYTES`` (not the default)."""
    setattr(endpoint, LARGE_BODY_ATTRIBUTE, True)
    return endpoint


class EdgeMiddleware:
    """Request id, security headers, access log, request metrics, and the last word on
    unexpected errors."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        request_id = sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        status = 500
        responding = False
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status, responding
            if message["type"] == "http.response.start":
                status, responding = message["status"], True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                    *_SECURITY_HEADERS,
                ]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as error:  # every expected error became a problem before this
            # Logged here, once, and not re-raised: the server would log the traceback again.
            log.exception("unhandled error", path=scope["path"], error_type=type(error).__name__)
            if not responding:
                await _send_server_error(scope, send_with_headers)
        finally:
            elapsed_s = time.perf_counter() - started
            route = route_template(scope)
            observe_request(scope["method"], route, status, elapsed_s)
            if self.access_log:
                access_log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    route=route,
                    status=status,
                    duration_ms=round(elapsed_s * 1000, 2),
                    client=scope["client"][0] if scope.get("client") else None,
                )
            structlog.contextvars.clear_contextvars()


def route_template(scope: Scope) -> str:
    """The template of the route that answered (``/api/v1/jobs/{job_id}``), never the raw
    path (each distinct label value is a time series); "unmatched" when no route did."""
    route = scope.get("route")  # set by the router on the scope this middleware passed on
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    return "unmatched"


async def _send_server_error(scope: Scope, send: Send) -> None:
    body = dumps(
        {
            "type": "urn:specwatch:problem:server_error",
            "title": "Internal server error",
            "status": 500,
            "detail": "an internal error occurred; it is logged",
            "instance": scope["path"],
            "code": "server_error",
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class EdgeRequest(Request):
    """A request whose body stops at ``max_body_bytes`` (413, naming the setting)."""

    max_body_bytes: int = 0
    limit_setting: str = ""

    async def stream(self) -> AsyncGenerator[bytes, None]:
        size = 0
        async for chunk in super().stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _too_large(f"over {self.max_body_bytes}", self)
            yield chunk


def _too_large(size: str, request: EdgeRequest) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the body is {size} bytes; the limit is {request.max_body_bytes} "
        f"({request.limit_setting})",
        location=["body"],
    )


def _scopes(dependant: Dependant) -> Iterator[str]:
    """The scopes the route's auth dependencies ask for ("read" for read access)."""
    for dependency in dependant.dependencies:
        scope = getattr(dependency.call, SCOPE_ATTRIBUTE, None)
        if scope is not None:
            yield scope
        yield from _scopes(dependency)


async def authenticate_request(request: Request, context: ProcessContext, scope: str) -> None:
    """Authenticate the bearer token for ``scope`` once; ``deps`` reads the principal."""
    if scope == "read" and not context.settings.read_token_required:
        return
    principal = await context.tokens().authenticate(request.headers.get("authorization"))
    principal.require(scope)
    request.state.principal = principal


def check_parameters(request: Request, max_chars: int) -> None:
    """Path and query parameter values within ``max_chars`` and without NUL characters."""
    for kind, items in (
        ("path", request.path_params.items()),
        ("query", request.query_params.multi_items()),
    ):
        for name, value in items:
            if isinstance(value, str):
                check_text(value, max_chars, [kind, name], f"parameter {name!r}")


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type")
    if not content_type:
        return True  # FastAPI reads a body without a content type as JSON
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class EdgeRoute(APIRoute):
    """Authentication, parameter, size and JSON checks before the handler (see module doc)."""

    required_scopes: tuple[str, ...] = ()

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)  # calls get_route_handler
        if self.required_scopes:  # documented, so a client knows which token to create
            self.openapi_extra = {
                **(self.openapi_extra or {}),
                SCOPES_KEY: list(self.required_scopes),
            }

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        scopes = self.required_scopes = tuple(dict.fromkeys(_scopes(self.dependant)))
        large = bool(getattr(self.endpoint, LARGE_BODY_ATTRIBUTE, False))
        parses_json = self.body_field is not None

        async def edge_handler(request: Request) -> Response:
            context: ProcessContext = request.app.state.context
            settings = context.settings
            for scope in scopes:
                await authenticate_request(request, context, scope)
            check_parameters(request, settings.max_param_chars)
            edge = EdgeRequest(request.scope, request.receive)
            edge.max_body_bytes = settings.max_job_bytes if large else settings.max_body_bytes
            edge.limit_setting = "SPECWATCH_MAX_JOB_BYTES" if large else "SPECWATCH_MAX_BODY_BYTES"
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > edge.max_body_bytes:
                raise _too_large(declared, edge)
            if parses_json and request.method in ("POST", "PUT", "PATCH") and _is_json(request):
                body = await edge.body()
                if body:  # parsed here, so FastAPI's own parser never meets a hostile body
                    edge._json = decode_json(body, settings.document_limits, allow_nan=False)
            return await handler(edge)

        return edge_handler
