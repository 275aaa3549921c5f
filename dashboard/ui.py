"""Small building blocks every page uses: navigation, empty states, values, statuses, links.

Untrusted text (names, descriptions, branches, meta) only ever goes into components as
``children`` or attribute values, which React renders as text; links to outside the
dashboard only for http(s) URLs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlparse

from dash import dcc, html
from dash.development.base_component import Component

from specwatch.metrics.formatting import format_age, format_quantity, format_utc

from .registry import ROOT_PATH, href

# Status words and their CSS classes: colour is never the only cue, the word is shown too.
STATUS_CLASSES = {
    "stretch": "ok",
    "design": "ok",
    "minimum": "warn",
    "pass": "ok",
    "fail": "bad",
    "below minimum": "bad",
    "worse": "bad",
    "regressed": "bad",
    "missing": "warn",
    "better": "ok",
    "improved": "ok",
    "unchanged": "neutral",
    "changed": "warn",
    "new": "neutral",
    "open": "bad",
    "accepted": "neutral",
    "no spec": "neutral",
    "no data": "neutral",
}


def nav_bar(version: str) -> Component:
    links = [
        ("Overview", href("")),
        ("Regressions", href("regressions")),
        ("Requirements", href("requirements")),
    ]
    return html.Header(
        [
            dcc.Link("Specwatch", href=href(""), className="brand"),
            html.Nav([dcc.Link(text, href=url, className="nav-link") for text, url in links]),
            html.Div(
                [
                    html.A("API", href=ROOT_PATH.get() + "/docs", className="nav-link"),
                    html.Span(f"v{version}", className="version"),
                ],
                className="nav-right",
            ),
        ],
        className="top-bar",
    )


def empty_state(title: str, message: str, *, link: tuple[str, str] | None = None) -> Component:
    """What a page shows when it has nothing to show, and what to do about it."""
    children: list[Component | str] = [html.H2(title), html.P(message, className="empty-text")]
    if link is not None:
        children.append(dcc.Link(link[1], href=link[0]))
    return html.Section(children, className="empty-state")


def hint(*parts: Component | str) -> Component:
    return html.P(list(parts), className="hint")


def code(text: str) -> Component:
    return html.Code(text)


def page_header(title: str, *subtitle: Component | str) -> Component:
    return html.Div(
        [html.H1(title), html.Div(list(subtitle), className="subtitle")], className="page-header"
    )


def quantity(value: float | None, unit: str, digits: int = 4) -> str:
    return format_quantity(value, unit, digits)


def status_badge(status: str, text: str | None = None) -> Component:
    """A status as a coloured word (``design``, ``fail``, ``regressed``...)."""
    return html.Span(
        text or status,
        className=f"badge badge-{STATUS_CLASSES.get(status, 'neutral')}",
        title=status,
    )


def when(moment: datetime | None, now: datetime | None = None) -> Component:
    """A time in UTC with its relative age (``2026-12-03 05:27 UTC · 3 h ago``)."""
    if moment is None:
        return html.Span("—")
    now = now or datetime.now(UTC)
    return html.Span(
        [format_utc(moment), html.Span(f" · {format_age(moment, now)}", className="age")],
        className="when",
    )


def safe_url(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL (never ``javascript:`` or ``data:``)."""
    if not url:
        return None
    parsed = urlparse(url.strip())
    return url.strip() if parsed.scheme in ("http", "https") and parsed.netloc else None


def external(text: str, url: str | None) -> Component:
    """A link out of the dashboard, or plain text when the URL is not a safe one."""
    target = safe_url(url)
    if target is None:
        return html.Span(text)
    return html.A(text, href=target, target="_blank", rel="noopener noreferrer")


def metric_href(metric: str, **query: str | int | list[str] | None) -> str:
    return href(f"metric/{quote(metric, safe='.')}", **query)


def job_href(job_id: int) -> str:
    return href(f"job/{job_id}")


def pr_href(number: int) -> str:
    return href(f"pr/{number}")


def dropdown(
    label: str,
    id: str,
    options: Sequence[str] | Sequence[dict[str, str]],
    value: str | None,
    *,
    clearable: bool = True,
    disabled: bool = False,
    placeholder: str = "",
    class_name: str = "filter",
) -> Component:
    """A labelled ``dcc.Dropdown`` of a filter bar (options as values or label/value dicts)."""
    choices = [o if isinstance(o, dict) else {"label": o, "value": o} for o in options]
    extra: dict[str, Any] = {"placeholder": placeholder} if placeholder else {}
    control = dcc.Dropdown(
        id=id,
        options=choices,
        value=value,
        clearable=clearable,
        disabled=disabled,
        **extra,
    )
    return html.Div([html.Label(label, htmlFor=id), control], className=class_name)


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[Component | str]],
    *,
    id: str | None = None,
    row_classes: Sequence[str] | None = None,
) -> Component:
    """A plain HTML table (sortable by eye; the data sets are bounded by each page)."""
    head = html.Thead(html.Tr([html.Th(text) for text in header]))
    body = html.Tbody(
        [
            html.Tr(
                [html.Td(cell) for cell in row],
                className=row_classes[i] if row_classes else None,
            )
            for i, row in enumerate(rows)
        ]
    )
    if id:
        return html.Table([head, body], className="table", id=id)
    return html.Table([head, body], className="table")


def short_commit(commit: str | None) -> str:
    return commit[:10] if commit else "—"
