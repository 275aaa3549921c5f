"""Overview: every KPM of a dataset on main at a glance.

Latest value with its unit, its status against the minimum/design/stretch specifications
(colour and word), a sparkline of the last builds (a tiny SVG image per row, not a plot: an
overview draws hundreds), when it was built, and its series' open change; open regressions
first.  The filters (dataset, instrument, filter, tag) live in the query string.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dash import Input, Output, State, dcc, html, no_update
from dash.development.base_component import Component

from specwatch.dashboard.registry import (
    PageRequest,
    callback,
    href,
    page,
    parse_query,
    query_string,
)
from specwatch.dashboard.sparkline import sparkline_uri
from specwatch.dashboard.ui import (
    STATUS_CLASSES,
    dropdown,
    metric_href,
    page_header,
    quantity,
    when,
)
from specwatch.metrics.formatting import format_age, format_number, format_utc
from specwatch.metrics.verification import Verdict
from specwatch.services.context import ProcessContext
from specwatch.services.overview import FAILING, KpmRow, Overview

NO_DATASET = "(none)"  # the query-string value of jobs without a dataset
DESCRIPTION_CHARS = 90
OPERATORS = {"<=": "≤", ">=": "≥", "!=": "≠", "==": "="}
CHANGE_WORDS = {"worse": "regression", "better": "improvement"}


def status_tone(status: str) -> str:
    """The badge colour class of a KPM status (``ok``, ``warn``, ``bad``, ``neutral``)."""
    if status in FAILING:
        return "bad"
    return STATUS_CLASSES.get(status, "neutral")


def dataset_value(name: str | None) -> str:
    return NO_DATASET if name is None else name


def dataset_of(value: str) -> str | None:
    return None if value == NO_DATASET else value


def overview_search(
    search: str | None,
    *,
    shown: str | None,
    dataset: str | None,
    instrument: str | None,
    filter: str | None,
    tag: str | None,
) -> str:
    """The query string after a filter changed: a dataset other than the one ``shown`` drops
    the instrument and the filter (it has its own); other parameters (``branch``) are kept."""
    query = {key: values[0] for key, values in parse_query(search).items() if values}
    if dataset != shown:
        instrument = filter = None
    query.update(dataset=dataset or "", instrument=instrument or "", filter=filter or "")
    query["tag"] = tag or ""
    order = ("dataset", "instrument", "filter", "tag", "branch")
    return query_string({k: query[k] for k in (*order, *query) if k in query})


def verdict_text(verdict: Verdict) -> str:
    """``design ≤ 5 mmag: pass`` (the threshold in the metric's unit)."""
    operator = OPERATORS.get(verdict.operator, verdict.operator)
    name = verdict.level.value if verdict.level else verdict.spec
    threshold = quantity(verdict.threshold, verdict.unit)
    return f"{name} {operator} {threshold}: {verdict.status.value.replace('_', ' ')}"


def _status_cell(row: KpmRow) -> Component:
    tone = status_tone(row.status)
    explained = "; ".join(verdict_text(v) for v in row.verdicts) or "no specification applies"
    return html.Span(row.status, className=f"badge badge-{tone}", title=explained)


def _short(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _query_of(row: KpmRow, overview: Overview, **more: str | int | None) -> dict[str, Any]:
    query: dict[str, Any] = {"dataset": overview.dataset, "filter": row.filter}
    if overview.branch != "main":
        query["branch"] = overview.branch
    return {**query, **more}


def _spark(row: KpmRow) -> Component:
    finite = [v for v in row.history if math.isfinite(v)]
    summary = (
        f"last {len(row.history)} builds: {quantity(min(finite), row.unit)} … "
        f"{quantity(max(finite), row.unit)}"
        if finite
        else f"last {len(row.history)} builds: no value"
    )
    return html.Img(
        src=sparkline_uri(row.history, tone=status_tone(row.status)),
        alt=summary,
        title=summary,
        width=120,
        height=28,
        className="spark",
    )


def _change_cell(row: KpmRow, overview: Overview) -> Component | str:
    change = row.open_change
    if change is None or change.id is None:
        return ""
    word = CHANGE_WORDS.get(change.verdict, "change")
    tone = {"worse": "bad", "better": "ok"}.get(change.verdict, "warn")
    size = f"{format_number(change.delta_sigma, 2, signed=True)}σ"
    title = (
        f"open {word}: {quantity(change.before, change.unit)} → "
        f"{quantity(change.after, change.unit)} ({size}) at {format_utc(change.time)}"
    )
    more = f" +{row.open_changes - 1}" if row.open_changes > 1 else ""
    return dcc.Link(
        html.Span(f"open {word} {size}{more}", className=f"badge badge-{tone}", title=title),
        href=metric_href(row.metric, **_query_of(row, overview, change=change.id)),
    )


def kpm_table(overview: Overview, now: datetime | None = None) -> Component:
    """The rows of the overview as a table, one series per row.

    Lean on purpose (about a dozen components a row): an overview draws hundreds of rows
    and the browser's time goes into rendering components.
    """
    now = now or datetime.now(UTC)
    several = len({(row.instrument, row.filter) for row in overview.rows}) > 1
    header = ["Metric", "Latest", "Status", f"Last {overview.builds} builds", "Built", "Change"]
    if several:
        header.insert(1, "Instrument / filter")
    body = []
    for row in overview.rows:
        cells = [
            html.Td(
                [
                    dcc.Link(row.metric, href=metric_href(row.metric, **_query_of(row, overview))),
                    html.Div(_short(row.description), className="kpm-desc", title=row.description),
                ]
            ),
            html.Td(quantity(row.value, row.unit), className="num"),
            html.Td(_status_cell(row)),
            html.Td(_spark(row)),
            html.Td(f"{format_utc(row.time)} · {format_age(row.time, now)}", className="when"),
            html.Td(_change_cell(row, overview)),
        ]
        if several:
            where = " / ".join(x for x in (row.instrument, row.filter) if x) or "—"
            cells.insert(1, html.Td(where))
        body.append(html.Tr(cells, className="row-open" if row.regressed else None))
    head = html.Thead(html.Tr([html.Th(text) for text in header]))
    return html.Table([head, html.Tbody(body)], className="table", id="overview-table")


def filters(overview: Overview) -> Component:
    datasets = [dataset_value(info.name) for info in overview.datasets]
    current = dataset_value(overview.dataset)
    if current not in datasets:
        datasets.append(current)
    return html.Div(
        [
            # What is drawn: Dash 4's dropdowns report their value when they mount, which
            # must not count as a choice (it would rewrite the URL and draw the page twice).
            dcc.Store(
                id="overview-shown",
                data={
                    "dataset": current,
                    "instrument": overview.instrument,
                    "filter": overview.filter,
                    "tag": overview.tag,
                },
            ),
            dropdown(
                "Dataset", "overview-dataset", datasets, current, clearable=False, placeholder="all"
            ),
            dropdown(
                "Instrument",
                "overview-instrument",
                overview.instruments,
                overview.instrument,
                placeholder="all",
            ),
            dropdown(
                "Filter", "overview-filter", overview.filters, overview.filter, placeholder="all"
            ),
            dropdown("Tag", "overview-tag", overview.tags, overview.tag, placeholder="all"),
        ],
        className="filters",
    )


def health(overview: Overview, pending: Mapping[str, int]) -> Component:
    """Builds of the dataset, the last one, and what the server still has to do."""
    parts: list[Component | str] = [
        html.Span(
            [
                html.B(f"{overview.jobs:,}"),
                " builds" if overview.jobs_are_builds else " jobs",
                f" of {overview.dataset or 'no dataset'} on {overview.branch}",
            ],
            className="health-item",
        ),
        html.Span(["last ", when(overview.last_time)], className="health-item"),
    ]
    for name, count in pending.items():
        tone = "ok" if count == 0 else "warn"
        parts.append(
            html.Span(
                [f"{name} ", html.Span(f"{count:,}", className=f"badge badge-{tone}")],
                className="health-item",
            )
        )
    return html.Div(parts, className="overview-health", id="overview-health")


def counts(overview: Overview) -> Component:
    failing, regressions = overview.n_failing, overview.n_regressions
    others = overview.n_open_changes - regressions
    items: list[Component] = [
        html.Span([html.B(str(len(overview.rows))), " KPMs"], className="count"),
        html.Span(
            [html.B(str(failing)), " failing a specification"],
            className=f"count {'count-bad' if failing else ''}",
        ),
        dcc.Link(
            [html.B(str(regressions)), " open regressions"],
            href=href("regressions", dataset=overview.dataset),
            className=f"count {'count-bad' if regressions else ''}",
        ),
    ]
    if others:
        items.append(html.Span([html.B(str(others)), " other open changes"], className="count"))
    return html.Div(items, className="overview-counts", id="overview-counts")


def no_builds(branch: str) -> Component:
    """What to do when nothing was built on the branch (pull-request builds have PR pages)."""
    return html.Section(
        [
            html.H2("No builds yet"),
            html.P(
                [
                    f"Nothing was built on {branch} yet (pull-request builds are on their PR "
                    "pages): post a build with ",
                    html.Code("specwatch upload job.json"),
                    " or load the demo with ",
                    html.Code("specwatch demo"),
                    ".",
                ],
                className="empty-text",
            ),
        ],
        className="empty-state",
    )


@page("overview", "", title="Overview", in_menu=True)
async def overview(request: PageRequest) -> Component:
    branch = request.arg("branch", "main")
    wanted = request.arg("dataset")
    found = await request.context.overview().overview(
        branch=branch,
        dataset=dataset_of(wanted) if wanted else None,
        instrument=request.arg("instrument") or None,
        filter=request.arg("filter") or None,
        tag=request.arg("tag") or None,
    )
    header = page_header(
        "Overview",
        f"Every KPM of a dataset on {branch}: its latest value, its status against the "
        f"minimum, design and stretch specifications, its last {found.builds} builds.",
    )
    if not found.datasets:
        return html.Div([header, no_builds(branch)])
    pending = {
        "outbox pending": await request.context.deliverer.pending(),
        "detection pending": await request.context.detection_pending(),
    }
    body: list[Component] = [header, filters(found)]
    if found.last_time is None:
        body.append(
            html.Section(
                [
                    html.H2("No such dataset"),
                    html.P(
                        f"No build of dataset {found.dataset or 'without a name'} on {branch}: "
                        "choose one above.",
                        className="empty-text",
                    ),
                ],
                className="empty-state",
            )
        )
        return html.Div(body)
    body += [health(found, pending), counts(found)]
    if found.rows:
        body.append(kpm_table(found))
    else:
        body.append(
            html.Section(
                html.P("No KPM matches these filters.", className="empty-text"),
                className="empty-state",
            )
        )
    return html.Div(body, className="overview")


@callback(
    Output("url", "search", allow_duplicate=True),
    Input("overview-dataset", "value"),
    Input("overview-instrument", "value"),
    Input("overview-filter", "value"),
    Input("overview-tag", "value"),
    State("overview-shown", "data"),
    State("url", "search"),
    prevent_initial_call=True,
)
async def choose(
    context: ProcessContext,
    dataset: str | None,
    instrument: str | None,
    filter: str | None,
    tag: str | None,
    shown: dict[str, str | None] | None,
    search: str | None,
) -> Any:
    """A filter changed: write it into the URL (the router draws the page again)."""
    chosen = {"dataset": dataset, "instrument": instrument, "filter": filter, "tag": tag}
    if shown is None or chosen == shown:
        return no_update  # a dropdown mounting, not a choice
    new = overview_search(
        search,
        shown=shown.get("dataset"),
        dataset=dataset,
        instrument=instrument,
        filter=filter,
        tag=tag,
    )
    return no_update if new == (search or "") else new
