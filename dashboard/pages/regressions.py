"""Regressions: open changes, newest and worst first, with accept and exclude actions.

``/dashboard/regressions?status=open&dataset=…&verdict=worse&sort=newest``.  Acting needs a
token with the ``triage`` scope, pasted into a password field: it lives only in the browser
(the field's value, remembered in memory across redraws of the page, gone on reload), goes to
the server with the action's callback only, is checked there exactly as the API checks a
bearer token, and is never stored, logged or shown.  After an action the table is drawn again
from the query string, and the result (or the reason it failed) is shown as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.development.base_component import Component

from specwatch.dashboard.registry import PageRequest, callback, page, parse_query, query_string
from specwatch.dashboard.ui import (
    code,
    dropdown,
    empty_state,
    hint,
    job_href,
    metric_href,
    page_header,
    quantity,
    short_commit,
    status_badge,
    table,
    when,
)
from specwatch.exceptions import SpecwatchError
from specwatch.metrics.formatting import format_number
from specwatch.metrics.records import ChangeFilter, ChangeRecord
from specwatch.services.context import ProcessContext
from specwatch.services.triage import MAX_NOTE_CHARS

log = structlog.get_logger("specwatch.dashboard")

LIMIT = 200  # rows shown; the filters narrow the rest
DATASETS_LIMIT = 1000  # recent changes whose datasets fill the dataset filter
STATUSES = {"open": "open", "accepted": "accepted", "all": None}
VERDICTS = {
    "worse": ("worse",),
    "better": ("better",),
    "changed": ("changed",),
    "all": (),
}
SORTS = {"newest": "newest first", "worst": "largest first (in σ)"}
HEADER = [
    "metric",
    "dataset / filter",
    "when",
    "before → after (change)",
    "verdict, status, note",
    "commits, builds",
    "triage",
]


def _choice(query: dict[str, list[str]], name: str, allowed: Sequence[str]) -> str:
    values = [v for v in query.get(name, []) if v]
    return values[0] if values and values[0] in allowed else allowed[0]


class _Filters:
    """The page's filters as read from the query string (unknown values: the defaults)."""

    def __init__(self, query: dict[str, list[str]]) -> None:
        self.status = _choice(query, "status", list(STATUSES))
        self.verdict = _choice(query, "verdict", list(VERDICTS))
        self.sort = _choice(query, "sort", list(SORTS))
        datasets = [v for v in query.get("dataset", []) if v]
        self.dataset = datasets[0][:256] if datasets else ""

    def where(self, *, with_dataset: bool = True) -> ChangeFilter:
        return ChangeFilter(
            dataset=(self.dataset or None) if with_dataset else None,
            status=STATUSES[self.status],
            verdicts=VERDICTS[self.verdict],
        )


@page("regressions", "regressions", title="Regressions")
async def regressions(request: PageRequest) -> Component:
    filters = _Filters(dict(request.query))
    service = request.context.regressions()
    known = await service.changes(
        filters.where(with_dataset=False), after=None, limit=DATASETS_LIMIT
    )
    datasets = sorted({c.key.dataset for c in known if c.key.dataset} | ({filters.dataset} - {""}))
    return html.Div(
        [
            page_header(
                "Regressions",
                "Changes found in the history of each metric on its branch, dataset and filter. "
                "Accept one that is expected, or exclude a build whose results are bad data.",
            ),
            dcc.Store(
                id="regressions-shown",
                data={
                    "status": filters.status,
                    "verdict": filters.verdict,
                    "dataset": filters.dataset,
                    "sort": filters.sort,
                },
            ),
            _filter_bar(filters, datasets),
            _token_bar(),
            html.Div(id="regressions-result", role="status", className="regressions-result"),
            html.Div(await _table(request.context, filters), id="regressions-table"),
        ],
        className="regressions",
    )


def _filter_bar(filters: _Filters, datasets: Sequence[str]) -> Component:
    return html.Div(
        [
            dropdown(
                "Status",
                "regressions-status",
                [
                    {"label": "open", "value": "open"},
                    {"label": "accepted", "value": "accepted"},
                    {"label": "all", "value": "all"},
                ],
                filters.status,
                clearable=False,
            ),
            dropdown(
                "Verdict",
                "regressions-verdict",
                [
                    {"label": "worse", "value": "worse"},
                    {"label": "better", "value": "better"},
                    {"label": "changed (no better way)", "value": "changed"},
                    {"label": "all", "value": "all"},
                ],
                filters.verdict,
                clearable=False,
            ),
            dropdown(
                "Dataset",
                "regressions-dataset",
                [{"label": d, "value": d} for d in datasets],
                filters.dataset,
            ),
            dropdown(
                "Order",
                "regressions-sort",
                [{"label": text, "value": key} for key, text in SORTS.items()],
                filters.sort,
                clearable=False,
            ),
        ],
        className="filters",
    )


def _token_bar() -> Component:
    return html.Div(
        [
            html.Label("Triage token", htmlFor="regressions-token"),
            dcc.Input(
                id="regressions-token",
                type="password",
                placeholder="paste a token with the triage scope",
                autoComplete="off",
                debounce=False,
                # Kept in the browser's memory across redraws of the page (not on reload);
                # never sent anywhere but with an action.
                persistence=True,
                persistence_type="memory",
                className="regressions-token",
            ),
            hint(
                "Needed to accept or exclude; kept in this browser tab only. Create one with ",
                code("specwatch token create --scope triage"),
                ".",
            ),
        ],
        className="regressions-token-bar",
    )


async def _table(context: ProcessContext, filters: _Filters) -> Component:
    changes = await context.regressions().changes(filters.where(), after=None, limit=LIMIT)
    if not changes:
        verdict = "" if filters.verdict == "all" else f" {filters.verdict}"
        status = "" if filters.status == "all" else f" {filters.status}"
        where = f" on {filters.dataset}" if filters.dataset else ""
        return empty_state(
            f"No{status}{verdict} changes{where}",
            "Detection runs after each ingest of a branch build (pull-request builds are "
            "compared on their PR page instead); `specwatch detect --all` runs it over every "
            "series. Other filters may show more.",
        )
    ordered = _ordered(changes, filters.sort)
    rows = [_row(change) for change in ordered]
    classes = ["row-open" if c.status == "open" else "" for c in ordered]
    more = (
        hint(f"Showing the newest {LIMIT} changes; narrow with the filters to see others.")
        if len(changes) == LIMIT
        else hint(f"{len(changes)} change{'s' if len(changes) != 1 else ''}.")
    )
    return html.Div([more, table(HEADER, rows, row_classes=classes, id="regressions-changes")])


def _ordered(changes: Sequence[ChangeRecord], sort: str) -> list[ChangeRecord]:
    """Newest first, the largest change first within a build; or largest first."""
    if sort == "worst":
        return sorted(changes, key=lambda c: (-abs(c.delta_sigma), -c.time.timestamp()))
    return sorted(changes, key=lambda c: (-c.time.timestamp(), -abs(c.delta_sigma)))


def _row(change: ChangeRecord) -> list[Component | str]:
    key = change.key
    assert change.id is not None  # stored changes have ids
    unit = change.unit
    pct = f"{format_number(change.delta_pct, 3, signed=True)} %" if change.delta_pct else ""
    sigma = f"{format_number(change.delta_sigma, 3, signed=True)} σ"
    delta = f"{format_number(change.delta, 4, signed=True)} {unit}".strip()
    builds: list[Component | str] = [dcc.Link(f"job {change.job_id}", href=job_href(change.job_id))]
    if change.previous_job_id:
        previous = dcc.Link(f"job {change.previous_job_id}", href=job_href(change.previous_job_id))
        builds = [previous, " → ", *builds]
    return [
        dcc.Link(
            _breakable(key.metric),
            href=metric_href(key.metric, dataset=key.dataset, filter=key.filter, change=change.id),
            className="regressions-metric",
        ),
        html.Span([key.dataset or "—", html.Br(), html.Span(key.filter or "—", className="hint")]),
        when(change.time),
        html.Div(
            [
                html.Div(f"{quantity(change.before, unit)} → {quantity(change.after, unit)}"),
                html.Div(
                    [html.B(delta), html.Span(f" ({', '.join(p for p in (pct, sigma) if p)})")],
                    className="regressions-delta",
                ),
            ],
            className="regressions-values",
        ),
        html.Div(
            [
                html.Div([status_badge(change.verdict), " ", status_badge(change.status)]),
                html.Div(change.note, className="regressions-note-text") if change.note else None,
            ]
        ),
        html.Div(
            [
                html.Div(
                    [
                        html.Code(short_commit(change.commit_before), title=change.commit_before),
                        " … ",
                        html.Code(short_commit(change.commit_after), title=change.commit_after),
                    ],
                    className="regressions-commits",
                ),
                html.Div(builds, className="regressions-builds"),
            ]
        ),
        _actions(change),
    ]


def _breakable(name: str) -> list[Component | str]:
    """A dotted name that may wrap after its dots (``package.`` / ``metric``)."""
    *heads, last = name.split(".")
    parts: list[Component | str] = []
    for head in heads:
        parts += [head + ".", html.Wbr()]
    return [*parts, last]


def _actions(change: ChangeRecord) -> Component:
    accept = (
        html.Button(
            "Accept",
            id={"type": "regressions-accept", "index": change.id},
            className="regressions-button",
            title="Mark this change as expected (it leaves the open list)",
        )
        if change.status == "open"
        else None
    )
    return html.Div(
        [
            dcc.Input(
                id={"type": "regressions-note", "index": change.id},
                type="text",
                placeholder="note / reason",
                maxLength=MAX_NOTE_CHARS,
                debounce=False,
                className="regressions-note",
            ),
            html.Div(
                [
                    accept,
                    html.Button(
                        "Exclude the build",
                        id={
                            "type": "regressions-exclude",
                            "index": change.id,
                            "job": change.job_id,
                        },
                        className="regressions-button regressions-danger",
                        title=f"Mark job {change.job_id}'s points as bad data and detect again",
                    ),
                ],
                className="regressions-buttons",
            ),
        ],
        className="regressions-actions",
    )


@callback(
    Output("url", "search", allow_duplicate=True),
    Input("regressions-status", "value"),
    Input("regressions-verdict", "value"),
    Input("regressions-dataset", "value"),
    Input("regressions-sort", "value"),
    State("regressions-shown", "data"),
    prevent_initial_call=True,
)
async def filter_changes(
    _: ProcessContext,
    status: str | None,
    verdict: str | None,
    dataset: str | None,
    sort: str | None,
    shown: dict[str, Any] | None,
) -> Any:
    """The filters go in the query string (the page is a link); defaults are left out.

    Dash calls this when the router draws the filters too: the values drawn are no choice."""
    drawn = shown or {}
    if [status, verdict, dataset or "", sort] == [
        drawn.get(key) for key in ("status", "verdict", "dataset", "sort")
    ]:
        return no_update
    query = {
        "status": status if status and status != "open" else None,
        "verdict": verdict if verdict and verdict != "worse" else None,
        "dataset": dataset or None,
        "sort": sort if sort and sort != "newest" else None,
    }
    return query_string(query)


@callback(
    Output("regressions-result", "children"),
    Output("regressions-table", "children"),
    Input({"type": "regressions-accept", "index": ALL}, "n_clicks"),
    Input({"type": "regressions-exclude", "index": ALL, "job": ALL}, "n_clicks"),
    State({"type": "regressions-note", "index": ALL}, "value"),
    State({"type": "regressions-note", "index": ALL}, "id"),
    State("regressions-token", "value"),
    State("url", "search"),
    prevent_initial_call=True,
)
async def triage(
    context: ProcessContext,
    accepts: list[int | None],
    excludes: list[int | None],
    notes: list[str | None],
    note_ids: list[dict[str, Any]],
    token: str | None,
    search: str | None,
) -> tuple[Any, Any]:
    """Accept a change or exclude its build, with the pasted token; then redraw the table."""
    trigger = ctx.triggered_id
    clicked = ctx.triggered[0]["value"] if ctx.triggered else None
    if not isinstance(trigger, dict) or not clicked:  # buttons drawn, not pressed
        return no_update, no_update
    change_id = int(trigger["index"])
    note = next(
        (
            value or ""
            for value, id in zip(notes, note_ids, strict=False)
            if id["index"] == change_id
        ),
        "",
    )
    service = context.triage()
    try:
        if trigger["type"] == "regressions-accept":
            change = await service.accept(token, change_id, note)
            message = (
                f"Accepted change {change_id} ({change.key.metric} on "
                f"{change.key.dataset or 'no dataset'}): it leaves the open list."
            )
        else:
            job_id = int(trigger["job"])
            series = await service.exclude(token, job_id, note)
            message = (
                f"Excluded job {job_id}'s points as bad data; {series} series detected again "
                "without them."
            )
        result = html.Span(message, className="regressions-ok")
    except SpecwatchError as error:  # no token, wrong scope, not found… (never the token)
        result = html.Span(f"Not done: {error}", className="regressions-error")
    except Exception:
        log.exception("dashboard triage failed", change_id=change_id)
        result = html.Span(
            "Not done: the action failed; the error is logged.", className="regressions-error"
        )
    table_now = await _table(context, _Filters(parse_query(search)))
    return result, table_now
