"""Metric: a KPM's trend over builds, with its specs, change points and culprit candidates.

The view lives in the query string (shareable): ``dataset``, ``filter``, ``instrument``,
``branch`` (main), ``x=time|order``, ``overlay`` (repeatable ``dataset|filter[|instrument]``),
``prs=0|1``, ``since``/``until`` (ISO UTC), ``limit`` (≤ 20,000) and ``change=<id>`` (that
change point's culprit candidates).  Controls write the query string; the router redraws.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from dash import Input, Output, State, dcc, html, no_update
from dash.development.base_component import Component

from specwatch.dashboard.registry import PageRequest, callback, page, parse_query, query_string
from specwatch.dashboard.trend import change_label, trend_figure
from specwatch.dashboard.ui import (
    external,
    hint,
    job_href,
    metric_href,
    page_header,
    pr_href,
    quantity,
    short_commit,
    status_badge,
    table,
    when,
)
from specwatch.exceptions import InvalidInputError, NotFoundError
from specwatch.metrics.formatting import format_utc
from specwatch.metrics.model import Direction
from specwatch.services.context import ProcessContext
from specwatch.services.trends import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Culprits,
    Trend,
    TrendRequest,
    TrendService,
    time_of,
)

LIMITS = (500, 2000, 5000, 20_000)
MAX_CHANGE_ROWS = 50
_VIEW_KEYS = ("dataset", "filter", "instrument", "branch", "x", "prs", "overlay", "limit")
_RANGE_KEY = re.compile(r"^xaxis\.range(\[(\d)\])?$")


def _moment(text: str, name: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T").removesuffix("Z"))
    except ValueError:
        raise InvalidInputError(
            f"{name} must be an ISO date or time in UTC (2026-05-01 or 2026-05-01T12:00),"
            f" not {text[:40]!r}",
            location=["query", name],
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _integer(text: str, name: str, default: int | None) -> int | None:
    if not text:
        return default
    if not text.isdigit():
        raise InvalidInputError(f"{name} must be a whole number", location=["query", name])
    return int(text)


def trend_request(request: PageRequest) -> TrendRequest:
    """The view the query string asks for.  Raises ``InvalidInputError``."""
    limit = _integer(request.arg("limit"), "limit", DEFAULT_LIMIT)
    query = request.query
    return TrendRequest(
        dataset=query["dataset"][0] if "dataset" in query else None,
        filter=query["filter"][0] if "filter" in query else None,
        instrument=query["instrument"][0] if "instrument" in query else None,
        branch=request.arg("branch", "main"),
        overlays=tuple(request.args("overlay")),
        prs=request.arg("prs", "1") != "0",
        since=_moment(request.arg("since"), "since"),
        until=_moment(request.arg("until"), "until"),
        limit=limit if limit is not None else DEFAULT_LIMIT,
        change_id=_integer(request.arg("change"), "change", None),
    )


def _service(context: ProcessContext) -> TrendService:
    return context.trends()


def _search(query: dict[str, list[str]]) -> str:
    return query_string(dict(query))


def _view_href(name: str, query: dict[str, list[str]], **changes: list[str] | None) -> str:
    """This page with some query parameters replaced (None: removed)."""
    updated = dict(query)
    for key, value in changes.items():
        if value is None:
            updated.pop(key, None)
        else:
            updated[key] = value
    return metric_href(name) + _search(updated)


# --- the page --------------------------------------------------------------------------------


# ``<name>``, not ``<name:path>``: a metric name never holds a slash, and the registry's
# ``:path`` pattern does not compile (its ``(?P<name>`` is rewritten again by the ``<name>`` rule).
@page("metric", "metric/<name>", title="Metric")
async def metric_page(request: PageRequest) -> Component:
    name = request.params["name"]
    wanted = trend_request(request)
    service = _service(request.context)
    trend = await service.trend(name, wanted)
    mode = "order" if request.arg("x") == "order" else "time"
    query = {key: list(values) for key, values in request.query.items()}
    children: list[Component] = [
        _header(trend),
        _controls(trend, mode, wanted),
    ]
    if not len(trend.main):
        children.append(_no_builds(trend))
    else:
        children.append(_plot(trend, mode, query))
    if wanted.change_id is not None:
        children.append(await _culprits_card(service, wanted.change_id, name, query))
    if len(trend.main):
        children.append(_changes(trend, query))
    return html.Div(children, className="metric-page")


def _header(trend: Trend) -> Component:
    metric = trend.metric
    better = {
        Direction.LOWER: "lower is better",
        Direction.HIGHER: "higher is better",
        Direction.NONE: "any change matters",
    }[metric.direction]
    parts: list[Component | str] = [
        html.Span(f"unit {metric.unit}" if metric.unit else "dimensionless"),
        " · ",
        html.Span(better, className="metric-direction"),
    ]
    if metric.description:
        parts += [" · ", html.Span(metric.description, className="metric-description")]
    if metric.reference.url:
        parts += [" · ", external(metric.reference.doc or "reference", metric.reference.url)]
    return page_header(metric.full_name, *parts)


def _field(label: str, control: Component, class_name: str = "filter") -> Component:
    return html.Div([html.Label(label), control], className=class_name)


def _controls(trend: Trend, mode: str, wanted: TrendRequest) -> Component:
    choices = [(c.selection.key, c.selection.label or "(no dataset)") for c in trend.choices]
    if trend.selection.key not in dict(choices):
        choices.insert(0, (trend.selection.key, trend.selection.label or "(no dataset)"))
    series = [{"label": label, "value": key} for key, label in choices]
    overlays = [o for o in series if o["value"] != trend.selection.key]
    chosen_overlays = [o.selection.key for o in trend.overlays]
    limits = sorted({*LIMITS, trend.limit})
    fields = [
        _field(
            "Dataset · filter · instrument",
            dcc.Dropdown(
                id="metric-series",
                options=series,
                value=trend.selection.key,
                clearable=False,
            ),
            "filter metric-series-filter",
        ),
        _field(
            "Branch",
            dcc.Dropdown(
                id="metric-branch",
                options=[{"label": b, "value": b} for b in trend.branches],
                value=trend.branch,
                clearable=False,
            ),
        ),
        _field(
            "Overlay",
            dcc.Dropdown(
                id="metric-overlay",
                options=overlays,
                value=chosen_overlays,
                multi=True,
                placeholder="other datasets…",
            ),
            "filter metric-overlay-filter",
        ),
        _field(
            "x axis",
            dcc.RadioItems(
                id="metric-x",
                options=[
                    {"label": "build time", "value": "time"},
                    {"label": "build order", "value": "order"},
                ],
                value=mode,
                inline=True,
                className="metric-radio",
            ),
            "filter metric-small-filter",
        ),
        _field(
            "Show",
            dcc.Checklist(
                id="metric-prs",
                options=[{"label": "pull-request builds", "value": "1"}],
                value=["1"] if wanted.prs else [],
                inline=True,
            ),
            "filter metric-small-filter",
        ),
        _field(
            "Builds",
            dcc.Dropdown(
                id="metric-limit",
                options=[{"label": f"last {n:,}", "value": n} for n in limits],
                value=trend.limit,
                clearable=False,
            ),
            "filter metric-small-filter",
        ),
    ]
    # What the controls show as drawn: Dash calls the controls' callback when they are
    # inserted (the URL is already in the layout), with these values; that is no change.
    shown = {
        "series": trend.selection.key,
        "branch": trend.branch,
        "overlay": chosen_overlays,
        "x": mode,
        "prs": ["1"] if wanted.prs else [],
        "limit": trend.limit,
    }
    return html.Div(
        [*fields, dcc.Store(id="metric-shown", data=shown)], className="filters metric-controls"
    )


def _no_builds(trend: Trend) -> Component:
    name = trend.metric.full_name
    where = f"{trend.selection.label or 'any dataset'} on {trend.branch}"
    return html.Section(
        [
            html.H2("No builds yet"),
            html.P(
                [
                    f"{name} has no value on {where} yet: post one with ",
                    html.Code("specwatch upload <job.json>"),
                    ".",
                ],
                className="empty-text",
            ),
            html.P(
                [
                    "Its raw series: ",
                    html.A(
                        f"/api/v1/metrics/{name}/series",
                        href=f"/api/v1/metrics/{quote(name, safe='.')}/series",
                    ),
                ]
            ),
        ],
        className="empty-state",
    )


def _plot(trend: Trend, mode: str, query: dict[str, list[str]]) -> Component:
    main = trend.main
    name = trend.metric.full_name
    n_missing = sum(main.missing)
    n_nan = sum(v is None for v in main.value) - n_missing
    n_excluded = sum(main.excluded)
    first, last = time_of(main.time_ns[0]), time_of(main.time_ns[-1])
    facts: list[Component | str] = [
        f"{len(main):,} builds of {trend.selection.label or 'any dataset'} on {trend.branch}, "
        f"{format_utc(first)} to {format_utc(last)}"
    ]
    if trend.truncated:
        facts.append(f" (the last {trend.limit:,}; older ones: raise the limit or set a range)")
    gaps = [
        f"{n} {what}"
        for n, what in (
            (n_nan, "NaN"),
            (n_missing, "without this metric"),
            (n_excluded, "excluded"),
        )
        if n
    ]
    if gaps:
        facts.append(" · " + ", ".join(gaps))
    if len(trend.prs):
        facts.append(f" · {len(trend.prs):,} pull-request builds")
    api = f"/api/v1/metrics/{quote(name, safe='.')}/series"
    api_query = {
        k: v for k, v in (("dataset", trend.selection.dataset), ("branch", trend.branch)) if v
    }
    links: list[Component | str] = [
        html.A("series as JSON", href=api + (f"?{urlencode(api_query)}" if api_query else "")),
    ]
    if mode == "time":
        links += [
            " · ",
            html.Button(
                "Keep this zoom in the link",
                id="metric-keep-range",
                n_clicks=0,
                className="metric-link-button",
            ),
        ]
    if "since" in query or "until" in query:
        links += [
            " · ",
            dcc.Link("whole history", href=_view_href(name, query, since=None, until=None)),
        ]
    figure = trend_figure(trend, mode=mode)
    return html.Div(
        [
            dcc.Graph(
                id="metric-graph",
                figure=figure,
                config={
                    "displaylogo": False,
                    "responsive": True,
                    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
                    "toImageButtonOptions": {"filename": name},
                },
                className="metric-graph",
            ),
            hint(*facts),
            hint(
                "Drag to zoom, double-click to reset; click a point for its build, a diamond"
                " for a change point's culprit candidates. ",
                *links,
            ),
        ],
        className="card",
    )


def _changes(trend: Trend, query: dict[str, list[str]]) -> Component:
    name = trend.metric.full_name
    if not trend.changes:
        return html.Div(
            [html.H2("Change points"), hint("No change point in these builds.")],
            className="card",
        )
    rows = []
    for change in trend.changes[:MAX_CHANGE_ROWS]:
        rows.append(
            [
                when(change.time),
                html.Span(change_label(change), className="num"),
                html.Span(
                    [
                        quantity(change.before, change.unit),
                        " → ",
                        quantity(change.after, change.unit),
                    ],
                    className="num",
                ),
                status_badge(change.verdict),
                status_badge(change.status),
                html.Span(
                    [
                        html.Code(short_commit(change.commit_before)),
                        "…",
                        html.Code(short_commit(change.commit_after)),
                    ]
                ),
                dcc.Link(
                    "culprit candidates",
                    href=_view_href(name, query, change=[str(change.id)]),
                    className="metric-change-link",
                ),
            ]
        )
    return html.Div(
        [
            html.H2(f"Change points ({len(trend.changes)})"),
            html.Div(
                table(
                    ["first build after", "size", "level", "verdict", "status", "commits", ""],
                    rows,
                    id="metric-changes",
                ),
                className="metric-scroll",
            ),
        ],
        className="card",
    )


async def _culprits_card(
    service: TrendService, change_id: int, name: str, query: dict[str, list[str]]
) -> Component:
    close = dcc.Link("close", href=_view_href(name, query, change=None), className="metric-close")
    try:
        culprits = await service.culprits(change_id)
    except NotFoundError as error:
        return html.Div(
            [html.H2("Culprit candidates"), hint(str(error), " · ", close)],
            className="card metric-culprits",
            id="metric-culprits",
        )
    return html.Div(
        [
            html.Div([html.H2("Culprit candidates"), close], className="metric-card-head"),
            _culprit_summary(culprits),
            _package_table(culprits),
        ],
        className="card metric-culprits",
        id="metric-culprits",
    )


def _build_link(job_id: int | None, commit: str | None) -> Component:
    if job_id is None:
        return html.Span("—")
    return html.Span(
        [dcc.Link(f"job {job_id}", href=job_href(job_id)), " · ", html.Code(short_commit(commit))]
    )


def _culprit_summary(culprits: Culprits) -> Component:
    change = culprits.change
    key = change.key
    series = " · ".join(p for p in (key.dataset, key.filter, key.instrument) if p)
    commits: list[Component | str] = [
        html.Code(short_commit(change.commit_before)),
        " … ",
        html.Code(short_commit(change.commit_after)),
    ]
    if culprits.compare_url:
        commits += [" · ", external("compare on GitHub", culprits.compare_url)]
    items: list[tuple[str, Component | str]] = [
        ("Change", html.Span([change_label(change), " ", status_badge(change.status)])),
        ("Series", f"{key.metric} · {series or 'no dataset'} · {key.branch}"),
        (
            "Level",
            f"{quantity(change.before, change.unit)} → {quantity(change.after, change.unit)}",
        ),
        ("Last build before", _build_link(change.previous_job_id, change.commit_before)),
        ("First build after", _build_link(change.job_id, change.commit_after)),
        ("Commit range", html.Span(commits, className="metric-commit-range")),
    ]
    if culprits.repository:
        items.append(("Repository", external(culprits.repository, culprits.repository)))
    after = culprits.after
    if after is not None and after.context.pr is not None:
        items.append(
            ("Pull request", dcc.Link(f"PR #{after.context.pr}", href=pr_href(after.context.pr)))
        )
    body: list[Component] = []
    for label, value in items:
        body += [html.Dt(label), html.Dd(value)]
    return html.Dl(body, className="kv")


def _package_table(culprits: Culprits) -> Component:
    if not culprits.known:
        return hint(
            "These builds carry no meta.packages, so the packages that changed across the"
            " change point are not known."
        )
    if not culprits.packages:
        return hint(f"No package changed version or commit ({culprits.unchanged} unchanged).")
    rows = []
    for package in culprits.packages:
        links: list[Component | str] = []
        if package.compare_url:
            links.append(external("compare", package.compare_url))
        if package.url:
            if links:
                links.append(" · ")
            links.append(
                external("at this commit" if package.sha_after else "repository", package.url)
            )
        rows.append(
            [
                html.Strong(package.name),
                status_badge(
                    {"changed": "changed", "added": "new", "removed": "missing"}[package.change],
                    package.change,
                ),
                _before_after(package.version_before, package.version_after),
                _before_after(_short(package.sha_before), _short(package.sha_after)),
                html.Span(links),
            ]
        )
    return html.Div(
        [
            html.H3(
                f"Packages that changed ({len(culprits.packages)}; {culprits.unchanged} unchanged)"
            ),
            html.Div(
                table(["package", "", "version", "commit", "links"], rows, id="metric-packages"),
                className="metric-scroll",
            ),
        ]
    )


def _short(sha: str | None) -> str | None:
    return sha[:10] if sha else None


def _before_after(before: str | None, after: str | None) -> Component:
    return html.Span(
        [html.Code(before or "—"), " → ", html.Code(after or "—")], className="metric-before-after"
    )


# --- callbacks -------------------------------------------------------------------------------


@callback(
    Output("url", "search", allow_duplicate=True),
    Input("metric-series", "value"),
    Input("metric-branch", "value"),
    Input("metric-overlay", "value"),
    Input("metric-x", "value"),
    Input("metric-prs", "value"),
    Input("metric-limit", "value"),
    State("metric-shown", "data"),
    State("url", "search"),
    prevent_initial_call=True,
)
async def metric_controls(
    context: ProcessContext,
    series: str | None,
    branch: str | None,
    overlays: list[str] | None,
    x: str | None,
    prs: list[str] | None,
    limit: int | None,
    shown: dict[str, Any] | None,
    search: str | None,
) -> Any:
    """The controls' view as the query string (the router then redraws the page)."""
    values = {
        "series": series,
        "branch": branch,
        "overlay": overlays or [],
        "x": x,
        "prs": prs or [],
        "limit": limit,
    }
    if values == shown:
        return no_update
    return controls_search(search, series, branch, overlays, x, prs, limit)


def controls_search(
    search: str | None,
    series: str | None,
    branch: str | None,
    overlays: list[str] | None,
    x: str | None,
    prs: list[str] | None,
    limit: int | None,
) -> Any:
    """The query string for the controls' values (``no_update`` when it stays the same)."""
    query = parse_query(search)
    before = dict(query)
    if series:
        dataset, filter_, instrument = ([*series.split("|"), "", ""])[:3]
        if (
            [dataset] != query.get("dataset")
            or [filter_] != query.get("filter", [""])
            or [instrument] != query.get("instrument", [""])
        ):
            query.pop("change", None)
        query["dataset"], query["filter"], query["instrument"] = [dataset], [filter_], [instrument]
    branch = branch or "main"
    if branch != (query.get("branch") or ["main"])[0]:
        query.pop("change", None)
    query["branch"] = [] if branch == "main" else [branch]
    query["overlay"] = [o for o in overlays or [] if o]
    query["x"] = ["order"] if x == "order" else []
    query["prs"] = [] if prs else ["0"]
    query["limit"] = (
        [] if not limit or int(limit) == DEFAULT_LIMIT else [str(min(int(limit), MAX_LIMIT))]
    )
    cleaned = {k: v for k, v in query.items() if v}
    if cleaned == {k: v for k, v in before.items() if v}:
        return no_update
    ordered = {k: cleaned[k] for k in (*_VIEW_KEYS, *cleaned) if k in cleaned}
    return _search(ordered)


@callback(
    Output("url", "href", allow_duplicate=True),
    Input("metric-graph", "clickData"),
    State("url", "pathname"),
    State("url", "search"),
    prevent_initial_call=True,
)
async def metric_click(
    context: ProcessContext,
    click: dict[str, Any] | None,
    pathname: str | None,
    search: str | None,
) -> Any:
    """A click on a build opens its job page; on a change point, its culprit candidates."""
    return click_target(click, pathname, search)


def click_target(click: dict[str, Any] | None, pathname: str | None, search: str | None) -> Any:
    points = (click or {}).get("points") or []
    if not points:
        return no_update
    custom = points[0].get("customdata")
    if isinstance(custom, bool):
        return no_update
    if isinstance(custom, int | float):
        return job_href(int(custom))
    if isinstance(custom, str) and custom.startswith("change:") and custom[7:].isdigit():
        query = parse_query(search)
        query["change"] = [custom[7:]]
        return (pathname or "") + _search(query)
    return no_update


@callback(
    Output("url", "search", allow_duplicate=True),
    Input("metric-keep-range", "n_clicks"),
    State("metric-graph", "relayoutData"),
    State("url", "search"),
    prevent_initial_call=True,
)
async def metric_keep_range(
    context: ProcessContext,
    clicks: int | None,
    relayout: dict[str, Any] | None,
    search: str | None,
) -> Any:
    """The zoomed time range as ``since``/``until`` (to the minute, widened to hold it)."""
    return range_search(relayout, search) if clicks else no_update


def range_search(relayout: dict[str, Any] | None, search: str | None) -> Any:
    found: dict[int, str] = {}
    for key, value in (relayout or {}).items():
        matched = _RANGE_KEY.match(key)
        if matched is None:
            continue
        if matched.group(2) is not None:
            found[int(matched.group(2))] = str(value)
        elif isinstance(value, list) and len(value) == 2:
            found = {0: str(value[0]), 1: str(value[1])}
    if set(found) != {0, 1}:
        return no_update
    try:
        since = datetime.fromisoformat(found[0][:19].replace(" ", "T")).replace(second=0)
        until = datetime.fromisoformat(found[1][:19].replace(" ", "T")).replace(second=0)
    except ValueError:
        return no_update
    until += timedelta(minutes=1)
    query = parse_query(search)
    query["since"] = [since.strftime("%Y-%m-%dT%H:%M")]
    query["until"] = [until.strftime("%Y-%m-%dT%H:%M")]
    return _search(query)
