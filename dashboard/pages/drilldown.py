"""Drill-down: a measurement's blobs, as its verification use case plots them and generically.

``/dashboard/drilldown/<job_id>/<metric>?blob=<name>&x=<array>&y=<array>``: the plots of the
metric's use case (per-star RMS vs magnitude for PA1, the pairs' separation RMS for AMx/ADx/
AFx), then one blob at a time: a scatter of two of its arrays (chosen in the query string), a
histogram of each array, its scalars.  Figures come from ``blob_figures`` (pure, shared with the
reports); building them runs in a worker thread (a blob may hold a million values).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote

import anyio
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html, no_update
from dash.development.base_component import Component

from specwatch.dashboard.blob_figures import (
    BlobContent,
    BlobPlotError,
    default_pair,
    histogram_figure,
    read_blob,
    scatter_figure,
    verification_figures,
)
from specwatch.dashboard.figures import SpecLine
from specwatch.dashboard.registry import PageRequest, callback, href, page, query_string
from specwatch.dashboard.ui import (
    dropdown,
    empty_state,
    hint,
    job_href,
    metric_href,
    page_header,
    quantity,
    status_badge,
    table,
    when,
)
from specwatch.exceptions import InvalidInputError, NotFoundError
from specwatch.metrics.limits import INT64_MAX
from specwatch.metrics.model import Blob, Measurement
from specwatch.metrics.records import StoredJob
from specwatch.metrics.verification import Verdict

MAX_HISTOGRAMS = 24  # per blob; a note says when a blob has more arrays
GRAPH_CONFIG: dcc.Graph.Config = {"displaylogo": False, "responsive": True}


def drilldown_href(job_id: int, metric: str, **query: str | None) -> str:
    """The drill-down of ``metric`` in job ``job_id`` (for links from other pages)."""
    return href(f"drilldown/{job_id}/{quote(metric, safe='.')}", **query)


@dataclass(frozen=True, slots=True)
class _Views:
    """What the page draws, built in a worker thread."""

    use_case: list[go.Figure]
    blobs: list[BlobContent]
    chosen: BlobContent
    choice: str  # the blob dropdown's value
    x: str | None
    y: str | None
    scatter: go.Figure | None
    scatter_note: str
    histograms: list[go.Figure]


def _job_id(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= INT64_MAX:
        raise InvalidInputError(f"{text[:40]!r} is not a job id", location=["path", "job_id"])
    return int(text)


def _blob_values(blobs: Sequence[BlobContent]) -> list[str]:
    """Each blob's key in the query string: its name, or its identifier when names repeat."""
    names = [blob.name for blob in blobs]
    return [blob.name if names.count(blob.name) == 1 else blob.identifier for blob in blobs]


def _spec_lines(verdicts: Sequence[Verdict], metric: str) -> list[SpecLine]:
    """The thresholds of the specs that apply to the job (one line per level and value)."""
    lines: dict[tuple[str | None, float, str], SpecLine] = {}
    for verdict in verdicts:
        if verdict.metric == metric:
            level = verdict.level.value if verdict.level else None
            key = (level, verdict.threshold, verdict.operator)
            lines.setdefault(
                key, SpecLine(verdict.spec, level, verdict.threshold, verdict.operator)
            )
    return list(lines.values())


def _build(
    measurement: Measurement,
    blobs: Sequence[Blob],
    specs: Sequence[SpecLine],
    wanted: str,
    x: str,
    y: str,
) -> _Views:
    contents = [read_blob(blob) for blob in blobs]
    use_case = verification_figures(
        measurement.metric, measurement.value, measurement.unit, contents, specs
    )
    values = _blob_values(contents)
    index = next(
        (i for i, blob in enumerate(contents) if wanted in (values[i], blob.identifier)), None
    )
    if index is None:  # the metric's own blob first (lsst.verify names it so), else the first
        index = next((i for i, b in enumerate(contents) if b.name == measurement.metric), 0)
    chosen = contents[index]
    names = {array.name for array in chosen.arrays}
    pair = default_pair(chosen)
    chosen_x = x if x in names else (pair[0] if pair else None)
    chosen_y = y if y in names else (pair[1] if pair else None)
    scatter, note = None, ""
    missing = [name for name in (x, y) if name and name not in names]
    if missing:
        note = f"no array {', '.join(repr(m[:100]) for m in missing)} in this blob; "
    if chosen_x and chosen_y:
        try:
            scatter = scatter_figure(_array(chosen, chosen_x), _array(chosen, chosen_y))
        except BlobPlotError as error:
            note += str(error)
    elif len(chosen.arrays) < 2:
        note += "this blob has fewer than two arrays: nothing to scatter"
    else:
        note += "no two arrays of this blob have the same length: nothing to scatter"
    histograms = [histogram_figure(array) for array in chosen.arrays[:MAX_HISTOGRAMS]]
    return _Views(
        use_case,
        contents,
        chosen,
        values[index],
        chosen_x,
        chosen_y,
        scatter,
        note.strip().removesuffix(";"),
        histograms,
    )


def _array(content: BlobContent, name: str) -> Any:
    found = content.array(name)
    assert found is not None  # the names come from the blob's own arrays
    return found


# ``<metric>``, not ``<metric:path>``: a metric name never holds a slash, and the registry
# cannot yet mix a ``<param>`` with a ``<param:path>`` in one path.
@page("drilldown", "drilldown/<job_id>/<metric>", title="Drill-down")
async def drilldown(request: PageRequest) -> Component:
    job_id = _job_id(request.params["job_id"])
    metric = request.params["metric"]
    context = request.context
    job, blobs = await context.jobs().get(job_id)
    measurement = next((m for m in job.measurements if m.metric == metric), None)
    if measurement is None:
        raise NotFoundError(
            f"job {job_id} has no measurement of {metric[:200]}", location=["path", "metric"]
        )
    header = _header(job, measurement)
    by_id = {blob.identifier: blob for blob in blobs}
    linked = [by_id[ref] for ref in dict.fromkeys(measurement.blob_refs) if ref in by_id]
    if not linked:
        return html.Div(
            [
                header,
                empty_state(
                    "No blobs",
                    "This measurement carries no blobs: collectors attach them with the "
                    "measurement's blob_refs (lsst.verify's Measurement.link_blob, or "
                    "`specwatch collect catalog …`, which adds per-star and per-pair arrays).",
                    link=(job_href(job_id), f"Back to job {job_id}"),
                ),
            ]
        )
    _, verdicts = await context.verification().verdicts(job_id)
    views = await anyio.to_thread.run_sync(
        partial(
            _build,
            measurement,
            linked,
            _spec_lines(verdicts, metric),
            request.arg("blob"),
            request.arg("x"),
            request.arg("y"),
        )
    )
    return html.Div(
        [
            header,
            _verdicts(verdicts, metric),
            _use_case(views),
            _generic(views),
        ],
        className="drilldown",
    )


def _header(job: StoredJob, measurement: Measurement) -> Component:
    context = job.context
    where = " · ".join(
        part for part in (context.dataset, context.instrument, context.filter) if part
    )
    branch = f"PR #{context.pr}" if context.pr is not None else context.branch
    return html.Div(
        [
            page_header(
                f"Drill-down: {measurement.metric}",
                html.Span(
                    quantity(measurement.value, measurement.unit),
                    className="drilldown-value",
                ),
                " in ",
                dcc.Link(f"job {job.id}", href=job_href(job.id)),
                *([" · ", where] if where else []),
                *([" · ", branch] if branch else []),
                " · ",
                when(job.time),
            ),
            html.Div(
                [
                    dcc.Link(f"← Job {job.id}", href=job_href(job.id)),
                    dcc.Link(
                        f"{measurement.metric} over time",
                        href=metric_href(
                            measurement.metric, dataset=context.dataset, filter=context.filter
                        ),
                    ),
                ],
                className="drilldown-links",
            ),
        ]
    )


def _verdicts(verdicts: Sequence[Verdict], metric: str) -> Component:
    # Specs of one level and threshold (per band group, per dataset…) read as one badge.
    unique = {
        (v.level, v.status, v.operator, v.threshold): v for v in verdicts if v.metric == metric
    }
    mine = sorted(unique.values(), key=lambda v: (v.level.rank if v.level else 0, v.threshold))
    if not mine:
        return hint("No specification applies to this measurement.")
    badges = [
        status_badge(
            verdict.status.value,
            f"{verdict.level.value if verdict.level else verdict.spec}: "
            f"{verdict.status.value.replace('_', ' ')} "
            f"({verdict.operator} {quantity(verdict.threshold, verdict.unit)})",
        )
        for verdict in mine
    ]
    return html.Div(badges, className="drilldown-verdicts")


def _graph(figure: go.Figure, id: str) -> Component:
    return dcc.Graph(id=id, figure=figure, config=GRAPH_CONFIG)


def _use_case(views: _Views) -> Component:
    if not views.use_case:
        body: list[Component] = [
            hint(
                "No plot of a known use case for these blobs (per-star RMS against magnitude, "
                "the separation RMS of star pairs): the view below shows every array."
            )
        ]
    else:
        body = [_graph(figure, f"drilldown-usecase-{i}") for i, figure in enumerate(views.use_case)]
    return html.Section(
        [html.H2("Verification plots"), html.Div(body, className="drilldown-usecase")],
        className="card",
    )


def _options(names: Sequence[str]) -> list[dict[str, str]]:
    return [{"label": name, "value": name} for name in names]


def _generic(views: _Views) -> Component:
    chosen = views.chosen
    arrays = [array.name for array in chosen.arrays]
    blob_options = [
        {
            "label": f"{blob.name} ({_count(len(blob.arrays), 'array')}, "
            f"{_count(len(blob.scalars), 'scalar')})",
            "value": value,
        }
        for blob, value in zip(views.blobs, _blob_values(views.blobs), strict=True)
    ]
    controls = html.Div(
        [
            dropdown(
                "Blob",
                "drilldown-blob",
                blob_options,
                views.choice,
                clearable=False,
                class_name="filter wide",
            ),
            dropdown(
                "x",
                "drilldown-x",
                _options(arrays),
                views.x,
                clearable=False,
                disabled=len(arrays) < 2,
            ),
            dropdown(
                "y",
                "drilldown-y",
                _options(arrays),
                views.y,
                clearable=False,
                disabled=len(arrays) < 2,
            ),
        ],
        className="filters",
    )
    scatter: list[Component] = []
    if views.scatter is not None:
        scatter.append(_graph(views.scatter, "drilldown-scatter"))
    if views.scatter_note:
        scatter.append(hint(views.scatter_note))
    histograms: list[Component] = [
        html.Div(_graph(figure, f"drilldown-hist-{i}"), className="drilldown-hist")
        for i, figure in enumerate(views.histograms)
    ]
    more = len(chosen.arrays) - len(views.histograms)
    return html.Section(
        [
            dcc.Store(
                id="drilldown-shown", data={"blob": views.choice, "x": views.x, "y": views.y}
            ),
            html.H2(f"Blob {chosen.name}"),
            hint(f"identifier {chosen.identifier}"),
            controls,
            html.Div(scatter, id="drilldown-scatter-area"),
            _arrays_table(chosen),
            html.Div(histograms, className="grid drilldown-histograms"),
            hint(f"{more} more arrays are not drawn.") if more > 0 else None,
            _scalars_table(chosen),
        ],
        className="card drilldown-generic",
    )


def _count(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _arrays_table(content: BlobContent) -> Component:
    if not content.arrays:
        return hint("This blob has no array of numbers.")
    rows: list[list[Component | str]] = [
        [
            html.Code(array.name),
            html.Span(f"{array.size:,}", className="num"),
            html.Span(f"{array.finite:,}", className="num"),
            array.unit or "dimensionless",
            array.label,
            array.description,
        ]
        for array in content.arrays
    ]
    return html.Details(
        [
            html.Summary(_count(len(content.arrays), "array")),
            table(["array", "values", "finite", "unit", "label", "description"], rows),
        ],
        className="drilldown-arrays",
    )


def _scalars_table(content: BlobContent) -> Component:
    if not content.scalars:
        return hint("This blob has no scalar values.")
    rows: list[list[Component | str]] = [
        [
            html.Code(scalar.name),
            html.Span(
                f"{scalar.text} {scalar.unit}"
                if scalar.unit and scalar.text != "—"
                else scalar.text,
                className="drilldown-scalar",
            ),
            scalar.label,
            scalar.description,
        ]
        for scalar in content.scalars
    ]
    return html.Div(
        [html.H3("Scalars"), table(["name", "value", "label", "description"], rows)],
        id="drilldown-scalars",
    )


# Dash calls these when the router draws the dropdowns too (not only when a person picks an
# option): a value equal to the one drawn (``drilldown-shown``) is no choice.


@callback(
    Output("url", "search", allow_duplicate=True),
    Input("drilldown-blob", "value"),
    State("drilldown-shown", "data"),
    prevent_initial_call=True,
)
async def choose_blob(_: Any, blob: str | None, shown: dict[str, Any] | None) -> Any:
    """Another blob: its default arrays (x and y leave the query string)."""
    if not blob or blob == (shown or {}).get("blob"):
        return no_update
    return query_string({"blob": blob})


@callback(
    Output("url", "search", allow_duplicate=True),
    Input("drilldown-x", "value"),
    Input("drilldown-y", "value"),
    State("drilldown-blob", "value"),
    State("drilldown-shown", "data"),
    prevent_initial_call=True,
)
async def choose_arrays(
    _: Any, x: str | None, y: str | None, blob: str | None, shown: dict[str, Any] | None
) -> Any:
    """The scatter's arrays go in the query string, so the view is a link."""
    drawn = shown or {}
    if (x, y) == (drawn.get("x"), drawn.get("y")) or blob != drawn.get("blob"):
        return no_update
    return query_string({"blob": blob, "x": x, "y": y})
