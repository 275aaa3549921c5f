"""Requirements: the verification status (the VCD view of LDM-503) of a dataset on main.

One row per requirement: its method, its specifications, the levels met on the latest build,
the fraction of its design-level specifications verified and that fraction over the last
builds.  ``?req=<ID>`` drills into its specifications and their latest verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import Input, Output, State, dcc, html, no_update
from dash.development.base_component import Component

from specwatch.dashboard.pages.overview import (
    OPERATORS,
    dataset_of,
    dataset_value,
)
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
from specwatch.metrics.model import Level
from specwatch.metrics.requirements import LevelCounts, RequirementStatus
from specwatch.services.context import ProcessContext
from specwatch.services.overview import (
    BUILDS,
    RequirementDetail,
    RequirementTrends,
    SpecCheck,
)
from specwatch.services.verification import BuildStatus


def fraction_status(fraction: float | None) -> tuple[str, str]:
    """A fraction verified as a (badge class key, word) pair."""
    if fraction is None:
        return "no data", "not tested"
    if fraction >= 1.0:
        return "pass", "verified"
    if fraction > 0.0:
        return "minimum", "partly verified"
    return "fail", "not verified"


def level_badges(levels: Mapping[str, LevelCounts]) -> list[Component]:
    """``design 2/3`` per level with specs: green when all pass, red when one fails."""
    badges: list[Component] = []
    for level in Level:
        counts: LevelCounts = levels.get(level.value, LevelCounts())
        total = counts.passed + counts.failed + counts.not_tested
        if not total:
            continue
        status = "fail" if counts.failed else "pass" if counts.passed == total else "no data"
        title = (
            f"{level.value}: {counts.passed} pass, {counts.failed} fail, "
            f"{counts.not_tested} not tested"
        )
        tone = STATUS_CLASSES.get(status, "neutral")
        badges.append(
            html.Span(
                f"{level.value} {counts.passed}/{total}",
                className=f"badge badge-{tone} level",
                title=title,
            )
        )
    return badges or [html.Span("no spec tested", className="hint")]


def _query(dataset: str | None, **more: str | None) -> dict[str, Any]:
    return {"dataset": dataset_value(dataset) if dataset is not None else None, **more}


def vcd_table(
    statuses: list[RequirementStatus],
    trends: RequirementTrends,
    dataset: str | None,
    selected: str | None = None,
) -> Component:
    rows: list[list[Component | str]] = []
    for status in statuses:
        requirement = status.requirement
        key, word = fraction_status(status.fraction)
        fraction = "—" if status.fraction is None else f"{status.fraction:.0%}"
        history = trends.fractions.get(requirement.id, ())
        rows.append(
            [
                dcc.Link(
                    requirement.id,
                    href=href("requirements", **_query(dataset, req=requirement.id)),
                    className="req-id",
                ),
                requirement.title or "—",
                requirement.method.value,
                html.Span(
                    f"{len(status.specs)} spec{'s' if len(status.specs) != 1 else ''}",
                    title=", ".join(status.specs) or "no specification verifies it",
                    className="nowrap",
                ),
                html.Div(level_badges(status.levels), className="levels"),
                html.Span(
                    [html.Span(fraction, className="num"), " ", status_badge(key, word)],
                    className="nowrap",
                ),
                html.Img(
                    src=sparkline_uri(
                        history, tone=status_tone_of(key), low=0.0, high=1.0, width=100
                    ),
                    alt=f"fraction verified on the last {len(history)} builds",
                    title=_trend_title(history),
                    width=100,
                    height=28,
                    className="spark",
                )
                if any(f is not None for f in history)
                else html.Span("—", title=_trend_title(history)),
            ]
        )
    header = [
        "Requirement",
        "Title",
        "Method",
        "Specs",
        "Levels met",
        "Design verified",
        f"Last {len(trends.times) or BUILDS} builds",
    ]
    classes = ["req-selected" if s.requirement.id == selected else "" for s in statuses]
    return table(header, rows, id="requirements-table", row_classes=classes)


def status_tone_of(key: str) -> str:
    return {"pass": "ok", "minimum": "warn", "fail": "bad"}.get(key, "neutral")


def _trend_title(history: tuple[float | None, ...]) -> str:
    known = [f for f in history if f is not None]
    if not known:
        return f"last {len(history)} builds: not tested"
    return (
        f"last {len(history)} builds: {min(known):.0%} … {max(known):.0%} verified, "
        f"latest {known[-1]:.0%}"
    )


def _check_row(check: SpecCheck, dataset: str | None) -> list[Component | str]:
    spec = check.spec
    verdict = check.verdict
    unit = verdict.unit if verdict else spec.unit
    threshold = verdict.threshold if verdict else spec.threshold
    where = " / ".join(x for x in (check.instrument, check.filter) if x) or "job"
    context: Component | str = (
        dcc.Link(where, href=job_href(check.job_id)) if check.job_id is not None else "—"
    )
    if verdict is None:
        measured: Component | str = "—"
        outcome = status_badge("no data", "does not apply" if check.job_id else "no build")
    else:
        measured = html.Span(quantity(verdict.value, verdict.unit), className="num")
        if not verdict.measured:
            outcome = status_badge("missing", "not measured")
        else:
            word = verdict.status.value.replace("_", " ")
            outcome = status_badge(word if word != "not tested" else "no data", word)
    return [
        html.Span(spec.full_name, className="spec-name"),
        dcc.Link(
            spec.metric_full_name,
            href=metric_href(spec.metric_full_name, **_query(dataset, filter=check.filter)),
        ),
        spec.level.value if spec.level else "—",
        f"{OPERATORS.get(spec.operator, spec.operator)} {quantity(threshold, unit)}",
        context,
        measured,
        outcome,
    ]


def detail_card(detail: RequirementDetail, dataset: str | None) -> Component:
    requirement = detail.requirement
    rows = [_check_row(check, dataset) for check in detail.checks]
    build = detail.jobs[0] if detail.jobs else None
    where: list[Component | str] = ["No build of this dataset yet: every spec is untested."]
    if build is not None:
        commit = html.Code(short_commit(build.context.commit))
        where = ["Latest verdicts on build ", commit, " · ", when(build.time)]
    return html.Section(
        [
            html.H2([requirement.id, " · ", requirement.title or "untitled"]),
            html.P(
                [f"Verified by {requirement.method.value.lower()}. ", *where],
                className="subtitle",
            ),
            table(
                ["Specification", "Metric", "Level", "Threshold", "Job", "Measured", "Verdict"],
                rows,
                id="requirements-detail",
            )
            if rows
            else hint("No specification verifies this requirement yet."),
            dcc.Link(
                "← all requirements", href=href("requirements", **_query(dataset)), className="back"
            ),
        ],
        className="card",
        id="requirements-req",
    )


def no_requirements() -> Component:
    return html.Section(
        [
            html.H2("No requirements yet"),
            html.P(
                [
                    "Import a verification matrix with ",
                    html.Code("specwatch requirements import matrix.yaml"),
                    " (YAML or CSV: id, title, method, specs), or name requirements in the "
                    "specifications themselves (",
                    html.Code("requirements:"),
                    " in their YAML, imported with ",
                    html.Code("specwatch definitions import DIRECTORY"),
                    ").",
                ],
                className="empty-text",
            ),
        ],
        className="empty-state",
    )


def dataset_picker(datasets: list[str], current: str | None) -> Component:
    value = dataset_value(current)
    options = datasets if value in datasets else [*datasets, value]
    return html.Div(
        [
            dcc.Store(id="requirements-shown", data=value),
            dropdown("Dataset", "requirements-dataset", options, value, clearable=False),
        ],
        className="filters",
    )


def _subtitle(status: BuildStatus, dataset: str | None, branch: str) -> list[Component | str]:
    if not status.jobs:
        return [f"No build of {dataset or 'any dataset'} on {branch} yet: nothing is verified."]
    build = status.jobs[0]
    return [
        f"Verification status of {dataset or 'the latest build'} on {branch}, from build ",
        html.Code(short_commit(build.context.commit)),
        " · ",
        when(build.time),
        ". A requirement is verified when its design-level specifications pass.",
    ]


@page("requirements", "requirements", title="Requirements", in_menu=True)
async def requirements(request: PageRequest) -> Component:
    branch = request.arg("branch", "main")
    service = request.context.overview()
    datasets = await service.datasets(branch=branch)
    wanted = request.arg("dataset")
    default = datasets[0].name if datasets else None
    dataset = dataset_of(wanted) if wanted else default
    status = await request.context.verification().requirements(dataset=dataset, branch=branch)
    header = page_header("Requirements", *_subtitle(status, dataset, branch))
    picker = dataset_picker([dataset_value(d.name) for d in datasets], dataset)
    if not status.requirements:
        return html.Div([header, picker, no_requirements()])
    trends = await service.requirement_trends(dataset=dataset, branch=branch)
    body: list[Component] = [header, picker]
    req = request.arg("req")
    if req:
        detail = await service.requirement_detail(req, dataset=dataset, branch=branch)
        body.append(detail_card(detail, dataset))
    body.append(vcd_table(status.requirements, trends, dataset, req or None))
    return html.Div(body, className="requirements")


def requirements_search(search: str | None, *, shown: str | None, dataset: str | None) -> str:
    """The query string with another dataset (its drill-in kept: a requirement is the same
    in every dataset)."""
    query = {key: values[0] for key, values in parse_query(search).items() if values}
    if dataset == shown:
        return search or ""
    query["dataset"] = dataset or ""
    return query_string(query) or "?"


@callback(
    Output("url", "search", allow_duplicate=True),
    Input("requirements-dataset", "value"),
    State("requirements-shown", "data"),
    State("url", "search"),
    prevent_initial_call=True,
)
async def choose_dataset(
    context: ProcessContext, dataset: str | None, shown: str | None, search: str | None
) -> Any:
    new = requirements_search(search, shown=shown, dataset=dataset)
    return no_update if new == (search or "") else new
