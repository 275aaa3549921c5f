"""What the pages declare: their paths (``page``) and their callbacks (``callback``).

Declaring is importing: these lists only describe.  ``app.create_dashboard`` binds them to one
Dash app on one FastAPI server.  (Dash's own ``dash.callback`` and ``register_page`` keep
global state that the first app consumes, so a second app in the same process, as in the
tests, would start without callbacks.)
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from dash.development.base_component import Component

from specwatch.services.context import ProcessContext

PREFIX = "/dashboard/"
# The path prefix a proxy serves the dashboard under (``SPECWATCH_ROOT_PATH``), for the request
# being drawn: links carry it, the router strips it.  Set by the dashboard's middleware.
ROOT_PATH: ContextVar[str] = ContextVar("specwatch_root_path", default="")


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One page view: the process's services, the path's parameters, the query string."""

    context: ProcessContext
    params: Mapping[str, str]
    query: Mapping[str, list[str]] = field(default_factory=dict)

    def arg(self, name: str, default: str = "") -> str:
        """The first value of a query parameter (``default`` when absent or empty)."""
        values = self.query.get(name)
        return values[0] if values and values[0] else default

    def args(self, name: str) -> list[str]:
        return [value for value in self.query.get(name, []) if value]


Render = Callable[[PageRequest], Awaitable[Component | list[Component]]]


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    title: str
    pattern: re.Pattern[str]  # over the path after the prefix, named groups are the params
    render: Render
    in_menu: bool


PAGES: list[Page] = []
CALLBACKS: list[tuple[tuple[Any, ...], dict[str, Any], Callable[..., Awaitable[Any]]]] = []


def page(name: str, path: str, *, title: str, in_menu: bool = False) -> Callable[[Render], Render]:
    """Declare a page at ``PREFIX + path``; ``<param>`` matches one path segment,
    ``<param:path>`` the rest of the path (a metric name may hold dots, never a slash)."""

    def pattern_of(path: str) -> re.Pattern[str]:
        def group(found: re.Match[str]) -> str:
            return f"(?P<{found.group(1)}>{'.+' if found.group(2) else '[^/]+'})"

        return re.compile("^" + re.sub(r"<(\w+)(:path)?>", group, re.escape(path)) + "/?$")

    def register(render: Render) -> Render:
        PAGES.append(Page(name, title, pattern_of(path), render, in_menu))
        return render

    return register


def callback(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``dash.callback``'s arguments; the function is async and receives the
    ``ProcessContext`` first, then the callback's inputs and states."""

    def register(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        CALLBACKS.append((args, kwargs, function))
        return function

    return register


def match(path: str) -> tuple[Page, dict[str, str]] | None:
    """The page for a path under the prefix, with its parameters."""
    from urllib.parse import unquote

    root = ROOT_PATH.get()
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    relative = path[len(PREFIX) :] if path.startswith(PREFIX) else path.lstrip("/")
    for candidate in PAGES:
        found = candidate.pattern.match(relative)
        if found:
            return candidate, {k: unquote(v) for k, v in found.groupdict().items()}
    return None


def parse_query(search: str | None) -> dict[str, list[str]]:
    return parse_qs((search or "").lstrip("?"), keep_blank_values=False)


QueryValue = str | int | list[str] | None


def query_string(query: Mapping[str, QueryValue]) -> str:
    """A query string (``?a=1&b=x``, or ``""``) of the non-empty parameters, in order."""
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        values = value if isinstance(value, list) else [value]
        pairs += [(key, str(v)) for v in values if v not in (None, "")]
    return f"?{urlencode(pairs)}" if pairs else ""


def href(path: str, **query: QueryValue) -> str:
    """A dashboard URL: ``PREFIX + path`` (behind the proxy's prefix) and the non-empty query
    parameters."""
    return ROOT_PATH.get() + PREFIX + path.lstrip("/") + query_string(query)
