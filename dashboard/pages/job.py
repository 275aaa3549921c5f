"""Job: one build's context and every measurement with its verdicts and its change since the
previous ``main`` build of the same dataset and filter.

``/dashboard/job/<id>``.  Links lead to the metric pages, the pull request's page, the
drill-down of measurements that carry blobs, the previous main build, and out to the CI build,
the repository and the commit (http(s) URLs only).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from dash import dcc, html
from dash.development.base_component import Component

from specwatch.dashboard.registry import PageRequest, href, page
from specwatch.dashboard.ui import (
    code,
    external,
    hint,
    job_href,
    metric_href,
    page_header,
    pr_href,
    quantity,
    safe_url,
    short_commit,
    status_badge,
    table,
    when,
)
from specwatch.exceptions import InvalidInputError
from specwatch.metrics.formatting import format_number
from specwatch.metrics.limits import INT64_MAX
from specwatch.metrics.model import JobContext
from specwatch.metrics.records import PackageVersion, StoredJob
from specwatch.metrics.verification import Status, Verdict
from specwatch.services.builds import JobPage, MeasurementRow

_ID = re.compile(r"^[0-9]{1,19}$")
_OPERATORS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "=", "!=": "≠"}
_FAILING_STATUS = ("below minimum", "below design", "below stretch", "fail")
HEADER = ["metric", "value", "verdicts", "level met", "previous main", "change", ""]


def commit_url(repository: str, commit: str) -> str:
    """A commit's page on the forge of an http(s) ``repository`` URL (GitHub's, GitLab's)."""
    return f"{repository.rstrip('/').removesuffix('.git')}/commit/{quote(commit, safe='')}"


def parse_job_id(text: str) -> int:
    """A job id from the path.  Raises ``InvalidInputError``."""
    if not _ID.match(text) or not 1 <= int(text) <= INT64_MAX:
        raise InvalidInputError(
            f"{text[:40]!r} is not a job id (a positive whole number)", location=["path", "job_id"]
        )
    return int(text)


@page("job", "job/<job_id>", title="Job")
async def render(request: PageRequest) -> Component:
    job_id = parse_job_id(request.params["job_id"])
    view = await request.context.builds().job_page(job_id)
    job = view.job
    context = job.context
    where = " · ".join(t for t in (context.dataset, context.instrument, context.filter) if t)
    return html.Div(
        [
            page_header(
                f"Job {job.id}",
                where or "no dataset",
                " · ",
                context.branch or "no branch",
                " · ",
                when(job.time),
            ),
            html.Section(
                [html.H2("Build"), _context(view), _packages(view.packages)],
                className="card",
                id="job-context",
            ),
            html.Section(
                [
                    html.H2(f"Measurements ({len(view.rows)})"),
                    _comparison_note(view),
                    _measurements(view),
                    _untested(view.untested),
                ],
                className="card",
                id="job-measurements-card",
            ),
        ],
        className="job-page",
    )


# --- the build ---------------------------------------------------------------------------


def _commit_link(context: JobContext) -> Component:
    if not context.commit:
        return html.Span("—")
    repository = safe_url(context.repository)
    label = code(short_commit(context.commit))
    if repository is None:
        return html.Span(label, title=context.commit)
    target = commit_url(repository, context.commit)
    return html.A(
        label, href=target, target="_blank", rel="noopener noreferrer", title=context.commit
    )


def _ci(context: JobContext) -> Component:
    if not (context.ci_name or context.ci_id or context.ci_url or context.build_url):
        return html.Span("—")
    name = " ".join(t for t in (context.ci_name, f"#{context.ci_id}" if context.ci_id else "") if t)
    parts: list[Component | str] = [
        external(name or "CI build", context.ci_url or context.build_url)
    ]
    if context.build_url and context.ci_url and context.build_url != context.ci_url:
        parts += [" · ", external("build", context.build_url)]
    return html.Span(parts)


def _pull_request(context: JobContext) -> Component:
    if context.pr is None:
        return html.Span("—")
    parts: list[Component | str] = [
        dcc.Link(f"#{context.pr}: against its baseline", href=pr_href(context.pr), id="job-pr-link")
    ]
    if safe_url(context.pr_url):
        parts += [" · ", external("open the pull request", context.pr_url)]
    return html.Span(parts)


def _status(status: int | None) -> Component:
    if status is None:
        return html.Span("—")
    if status == 0:
        return status_badge("pass", "succeeded (0)")
    return status_badge("fail", f"failed ({status})")


def _previous(view: JobPage) -> Component:
    previous = view.previous
    if previous is None:
        return html.Span(f"none: no earlier {view.branch} build of this dataset and filter")
    return html.Span(
        [
            dcc.Link(f"job {previous.id}", href=job_href(previous.id), id="job-previous-link"),
            " · ",
            _commit_link(previous.context),
            " · ",
            when(previous.time),
            " (the merge base)" if view.at_merge_base else "",
        ]
    )


def _context(view: JobPage) -> Component:
    job = view.job
    context = job.context
    rows: list[tuple[str, Component | str]] = [
        ("CI build", _ci(context)),
        (
            "repository",
            external(context.repository, context.repository) if context.repository else "—",
        ),
        ("commit", _commit_link(context)),
        ("branch", context.branch or "—"),
        ("pull request", _pull_request(context)),
    ]
    if context.base_commit:
        rows.append(("base commit", code(short_commit(context.base_commit))))
    rows += [
        ("dataset", context.dataset or "—"),
        ("instrument", context.instrument or "—"),
        ("filter", context.filter or "—"),
        ("build time", when(job.time)),
        ("ingested", when(job.created_at)),
        ("status", _status(context.status)),
        (f"previous {view.branch} build", _previous(view)),
        ("blobs", str(view.blobs)),
    ]
    items: list[Component] = []
    for name, value in rows:
        items += [html.Dt(name), html.Dd(value)]
    return html.Dl(items, className="kv job-kv")


def _packages(packages: list[PackageVersion]) -> Component:
    if not packages:
        return hint("No package versions were sent with this job (meta.packages).")
    rows: list[list[Component | str]] = []
    for package in packages:
        sha: Component | str = code(package.sha[:12]) if package.sha else "—"
        repository = safe_url(package.url)
        if package.sha and repository:
            sha = external(package.sha[:12], commit_url(repository, package.sha))
        rows.append([package.name, package.version or "—", sha])
    return html.Details(
        [
            html.Summary(f"Packages ({len(packages)})"),
            table(["package", "version", "commit"], rows, id="job-packages"),
        ],
        className="job-packages",
    )


# --- the measurements ----------------------------------------------------------------------


def _comparison_note(view: JobPage) -> Component:
    previous = view.previous
    if previous is None:
        return hint(f"No earlier {view.branch} build of this dataset and filter to compare with.")
    which = (
        "the build of the pull request's merge base"
        if view.at_merge_base
        else f"the newest {view.branch} build before this one"
    )
    return hint(
        "Change: against ",
        dcc.Link(f"{view.branch} build {previous.id}", href=job_href(previous.id)),
        f" ({short_commit(previous.context.commit)}), {which}, of the same dataset and filter "
        "(for a metric it lacks, the newest earlier build that has it). Worse or better "
        "follows which way each metric improves.",
    )


def _verdict(verdict: Verdict) -> Component:
    word = {Status.PASS: "pass", Status.FAIL: "fail"}.get(verdict.status, "not tested")
    spec = verdict.spec.removeprefix(verdict.metric + ".")
    level = verdict.level.value if verdict.level else "no level"
    threshold = f"{_OPERATORS.get(verdict.operator, verdict.operator)} " + quantity(
        verdict.threshold, verdict.unit
    )
    detail = threshold if spec == level else f"{spec} {threshold}"
    return html.Span(
        [
            status_badge(word),
            html.Span(f" {level}", className="job-level"),
            html.Span(f" · {detail}", className="hint"),
        ],
        className="job-verdict",
        title=f"{verdict.spec}: {word} ({threshold})",
    )


def _level(row: MeasurementRow) -> Component:
    if row.status == "no spec":
        return html.Span("no spec", className="hint")
    if row.status in _FAILING_STATUS:
        return status_badge("fail", row.status)
    return status_badge(row.status)


def _change(row: MeasurementRow) -> Component | str:
    if row.delta is None:
        return "—"
    unit = row.measurement.unit
    size = format_number(row.delta, 3, signed=True) + (f" {unit}" if unit else "")
    pct = (
        f" ({format_number(row.delta_pct, 3, signed=True)} %)" if row.delta_pct is not None else ""
    )
    return html.Span(
        [status_badge(row.change), html.Span(f" {size}{pct}", className="num")],
        className="job-change",
    )


def _previous_value(row: MeasurementRow, previous: StoredJob | None) -> Component | str:
    if row.previous is None:
        return "—"
    text = quantity(row.previous, row.measurement.unit)
    if row.previous_job_id is not None and (previous is None or row.previous_job_id != previous.id):
        return html.Span(
            [
                text,
                " ",
                dcc.Link(f"(job {row.previous_job_id})", href=job_href(row.previous_job_id)),
            ]
        )
    return text


def _measurements(view: JobPage) -> Component:
    if not view.rows:
        return hint("This job has no measurements.")
    context = view.job.context
    rows: list[list[Component | str]] = []
    for row in view.rows:
        name = row.metric
        metric_link = dcc.Link(
            name,
            href=metric_href(name, dataset=context.dataset, filter=context.filter),
            title=row.description or name,
            className="job-metric",
        )
        verdicts: Component | str = (
            html.Div([_verdict(v) for v in row.verdicts], className="job-verdicts")
            if row.verdicts
            else "—"
        )
        drill: Component | str = (
            dcc.Link("drill down", href=href(f"drilldown/{view.job.id}/{quote(name, safe='.')}"))
            if row.drilldown
            else ""
        )
        rows.append(
            [
                metric_link,
                quantity(row.measurement.value, row.measurement.unit),
                verdicts,
                _level(row),
                _previous_value(row, view.previous),
                _change(row),
                drill,
            ]
        )
    return html.Div(table(HEADER, rows, id="job-measurements"), className="job-table-wrap")


def _untested(untested: list[Verdict]) -> Component:
    if not untested:
        return html.Div()
    items = [
        html.Li(
            [
                html.Span(verdict.spec, className="job-metric"),
                f" ({verdict.level.value if verdict.level else 'no level'})",
            ]
        )
        for verdict in untested
    ]
    return html.Details(
        [
            html.Summary(
                f"{len(untested)} specifications apply to this job but their metrics were "
                "not measured"
            ),
            html.Ul(items),
        ],
        className="job-untested",
    )
