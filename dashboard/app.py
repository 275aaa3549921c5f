"""The dashboard: one Dash app on the API's own FastAPI server, under ``/dashboard/``.

Dash's FastAPI backend adds its routes (the page, its assets, ``_dash-update-component``) to
the server and a middleware that only looks at paths under the prefix; the API's routes come
first, so they win.  Every page is rendered by one async router callback from the URL (path
and query string), so every view is a shareable link; controls write the query string.
Callbacks call the process's services in process: no SQL here, no HTTP to ourselves.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog
from dash import Dash, Input, Output, dcc, html
from dash.backends._fastapi import reset_current_request, set_current_request
from dash.development.base_component import Component
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from specwatch import __version__
from specwatch.exceptions import SpecwatchError
from specwatch.services.context import ProcessContext

from . import pages
from .registry import CALLBACKS, PREFIX, ROOT_PATH, PageRequest, match, parse_query
from .ui import empty_state, nav_bar

log = structlog.get_logger("specwatch.dashboard")

# What the browser may do on a dashboard page.  Scripts: our own files and the hashes of
# Dash's inline bootstrap scripts, never inline ones; 'unsafe-eval' because plotly's WebGL
# traces (regl) compile their drawing code with Function() (no page string reaches it: every
# text is rendered by React as text).  Styles inline (plotly writes <style> elements); no
# plugins, no framing by other sites, forms and connections to this origin only.
_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval' {hashes}; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def _load_pages() -> None:
    for module in pkgutil.iter_modules(pages.__path__):
        importlib.import_module(f"{pages.__name__}.{module.name}")


def create_dashboard(server: FastAPI, *, root_path: str = "") -> Dash:
    """Add the dashboard to ``server`` (whose lifespan sets ``state.context``); ``root_path``:
    the prefix a proxy serves it under (the browser asks for ``root_path + /dashboard/…``)."""
    _load_pages()
    app = Dash(
        __name__,
        server=cast(Any, server),  # typed for Flask; a FastAPI app selects that backend
        routes_pathname_prefix=PREFIX,
        requests_pathname_prefix=root_path + PREFIX,
        title="Specwatch",
        update_title=cast(str, None),  # no "Updating..." flicker in the tab title
        suppress_callback_exceptions=True,  # page components come and go with the route
        serve_locally=True,  # no CDN: observatory networks are often offline
        compress=False,
    )
    token = ROOT_PATH.set(root_path)  # the navigation's links are drawn once, here
    try:
        navigation = nav_bar(__version__)
    finally:
        ROOT_PATH.reset(token)
    app.layout = html.Div(
        [
            dcc.Location(id="url", refresh="callback-nav"),
            navigation,
            dcc.Loading(html.Main(id="page", className="page"), delay_show=400, type="dot"),
        ],
        className="shell",
    )

    def context() -> ProcessContext:
        found: ProcessContext = server.state.context
        return found

    @app.callback(
        Output("page", "children"),
        Input("url", "pathname"),
        Input("url", "search"),
    )
    async def route(pathname: str | None, search: str | None) -> Component | list[Component]:
        return await render_page(context(), pathname or PREFIX, search)

    for args, kwargs, function in CALLBACKS:
        app.callback(*args, **kwargs)(_with_context(function, context))

    # Paths under the prefix are pages: the app's HTML (the router draws the page).  Dash's
    # FastAPI backend would add a catch-all of *every* path at startup (an unknown
    # /api/v1/... would answer 200 with the page): this one, under the prefix, replaces it.
    setattr(app.backend, "_setup_catchall", lambda: None)  # noqa: B010 (not in its type)

    async def index(request: Request) -> HTMLResponse:
        token = set_current_request(request)  # Dash's index() reads the request from here
        try:
            # Dash's middleware runs its first-request setup (which finds the stylesheets in
            # assets/) only for the root page and its own routes: a deep link first after a
            # start would be drawn without them.
            app._setup_server()
            return HTMLResponse(app.index())
        finally:
            reset_current_request(token)

    server.add_api_route(PREFIX + "{path:path}", index, methods=["GET"], include_in_schema=False)

    async def root() -> RedirectResponse:
        return RedirectResponse(root_path + PREFIX, status_code=307)

    server.add_api_route("/", root, methods=["GET"], include_in_schema=False)
    server.add_middleware(DashboardHeaders, csp=_CSP.format(hashes=" ".join(app.csp_hashes())))
    return app


def _with_context(
    function: Callable[..., Awaitable[Any]], context: Callable[[], ProcessContext]
) -> Callable[..., Awaitable[Any]]:
    async def bound(*args: Any) -> Any:
        return await function(context(), *args)

    bound.__name__ = function.__name__
    bound.__qualname__ = function.__qualname__
    return bound


async def render_page(
    context: ProcessContext, pathname: str, search: str | None
) -> Component | list[Component]:
    """The page for a URL; a missing thing or a bad parameter is a message, not a crash."""
    found = match(pathname)
    if found is None:
        return empty_state(
            "No such page", f"Nothing lives at {pathname}.", link=(PREFIX, "Go to the overview")
        )
    page, params = found
    request = PageRequest(context, params, parse_query(search))
    try:
        return await page.render(request)
    except SpecwatchError as error:  # not found, invalid input: the reader can act on it
        return empty_state(page.title, str(error), link=(PREFIX, "Go to the overview"))
    except Exception:
        log.exception("dashboard page failed", page=page.name, path=pathname)
        return empty_state(page.title, "This page failed to draw; the error is logged.")


class DashboardHeaders:
    """Security headers on dashboard responses, a bound on callback bodies (Dash's middleware
    reads a callback's JSON body before any route sees it), and a ``Server-Timing`` header on
    each callback naming its output (the browser's devtools and the speed benchmark read it)."""

    def __init__(self, app: ASGIApp, *, csp: str, max_body_bytes: int = 1_000_000) -> None:
        self.app = app
        self.csp = csp.encode()
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root, path = scope.get("root_path", ""), scope["path"]
        if root and path.startswith(root + "/"):
            # A proxy that passes its prefix on: Dash's middleware matches the path as it
            # is, so give it (and the routes) the path without the prefix.
            path = path[len(root) :]
            scope = {**scope, "path": path, "raw_path": path.encode()}
        if not (path.startswith(PREFIX) or path == "/"):
            await self.app(scope, receive, send)
            return
        ROOT_PATH.set(root)
        started = time.perf_counter()
        output = b""
        if scope["method"] == "POST":
            declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
            if not declared.isdigit() or int(declared) > self.max_body_bytes:
                await _refuse(send, 413 if declared.isdigit() else 411)
                return

        async def receive_noting_output() -> Message:
            nonlocal output
            message = await receive()
            if not output and message["type"] == "http.request":
                found = _OUTPUT.search(message.get("body", b"")[:4096])
                output = found.group(1)[:80] if found else b"-"
            return message

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    *message.get("headers", []),
                    (b"content-security-policy", self.csp),
                    (b"x-frame-options", b"DENY"),
                ]
                if output:
                    took = (time.perf_counter() - started) * 1000
                    headers.append(
                        (b"server-timing", b'callback;desc="%s";dur=%.1f' % (output, took))
                    )
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive_noting_output, with_headers)


# The output a callback request is for: ids and properties only (letters, digits, . _ - :).
_OUTPUT = re.compile(rb'"output"\s*:\s*"([A-Za-z0-9._:\-]+)"')


async def _refuse(send: Send, status: int) -> None:
    body = b"callback bodies need a Content-Length of at most 1 MB"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
