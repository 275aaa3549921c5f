"""Pull request: its newest build against its baseline, worst first, with a small plot of each
regressed metric (the baseline builds and the PR's builds) and links to the PR and its CI runs.

``/dashboard/pr/<n>?base=<job id | commit>``: without ``base`` the baseline is chosen as the
API's ``compare`` does (``auto``: the target branch's builds up to the merge base).  A click on
a point of a plot opens that build's job page.
"""

from __future__ import annotations

import re
from typing import Any

from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.development.base_component import Component

from specwatch.dashboard.compare_figures import comparison_figure
from specwatch.dashboard.registry import (
    PageRequest,
    callback,
    href,
    page,
    parse_query,
    query_string,
)
from specwatch.dashboard.ui import (
    code,
    external,
    hint,
    job_href,
    metric_href,
    page_header,
    quantity,
    safe_url,
    short_commit,
    status_badge,
    table,
    when,
)
from specwatch.exceptions import InvalidInputError, NotFoundError
from specwatch.metrics.compare import Outcome
from specwatch.metrics.formatting import format_number
from specwatch.metrics.records import StoredJob
from specwatch.services.builds import PullRequestPage, RegressionPlot
from specwatch.services.compare import MetricComparison
from specwatch.services.context import ProcessContext

_NUMBER = re.compile(r"^[0-9]{1,10}$")
HEADER = [
    "status",
    "metric",
    "dataset · filter",
    "baseline mean ± σ",
    "PR",
    "change",
    "%",
    "σ",
    "level met",
    "job",
]
GRAPH_CONFIG: dcc.Graph.Config = {"displayModeBar": False, "responsive": True}


def parse_number(text: str) -> int:
    """A pull request number from the path.  Raises ``InvalidInputError``."""
    if not _NUMBER.match(text):
        raise InvalidInputError(
            f"{text[:40]!r} is not a pull request number (a positive whole number)",
            location=["path", "number"],
        )
    return int(text)


def outcome_word(outcome: Outcome) -> str:
    return outcome.value.replace("_", " ")


@page("pr", "pr/<number>", title="Pull request")
async def render(request: PageRequest) -> Component:
    number = parse_number(request.params["number"])
    base = request.arg("base", "auto").strip() or "auto"
    try:
        view = await request.context.builds().pull_request_page(number, base)
    except NotFoundError as error:
        if error.location == ["query", "head"]:
            return _no_builds(number)
        raise
    return html.Div(
        [
            _header(view),
            _summary(view, base),
            _plots(view.plots),
            _comparison(view.result.metrics),
            _builds(view.builds),
        ],
        className="pr-page",
    )


def _no_builds(number: int) -> Component:
    return html.Section(
        [
            html.H2(f"Pull request #{number}"),
            html.P(
                f"No build of pull request #{number} has been posted yet.", className="empty-text"
            ),
            html.P(
                [
                    "Post one from the pull request's CI: run ",
                    code("specwatch upload <job files>"),
                    " with ",
                    code("SPECWATCH_SERVER"),
                    " and ",
                    code("SPECWATCH_TOKEN"),
                    " (a token with write:jobs) set. The pull request's number, branch, commit "
                    "and merge base are read from the CI's variables (GitHub Actions "
                    "pull_request events, GitLab merge request pipelines, Jenkins CHANGE_ID, "
                    "Buildkite pull requests); elsewhere give them with ",
                    code(f"--meta pr={number} --meta branch=<branch>"),
                    ". ",
                    code("specwatch context"),
                    " shows what a build detects.",
                ]
            ),
            dcc.Link("Go to the overview", href=href("")),
        ],
        className="empty-state",
        id="pr-empty",
    )


# --- header and summary ----------------------------------------------------------------------


def _header(view: PullRequestPage) -> Component:
    subtitle: list[Component | str] = [" · ".join(view.branches) or "no branch"]
    if safe_url(view.pr_url):
        subtitle += [" · ", external("open the pull request", view.pr_url)]
    return page_header(f"Pull request #{view.number}", *subtitle)


def _ci_run(job: StoredJob) -> Component:
    context = job.context
    where = " · ".join(t for t in (context.dataset, context.filter) if t) or "no dataset"
    name = " ".join(t for t in (context.ci_name, f"#{context.ci_id}" if context.ci_id else "") if t)
    return html.Li(
        [
            html.Span(where, className="pr-where"),
            ": ",
            external(name or "CI run", context.ci_url or context.build_url),
            " · ",
            dcc.Link(f"job {job.id}", href=job_href(job.id)),
            " · commit ",
            code(short_commit(context.commit)),
            " · ",
            when(job.time),
        ]
    )


def _summary(view: PullRequestPage, base: str) -> Component:
    result = view.result
    counts = [
        status_badge(outcome_word(outcome), f"{n} {outcome_word(outcome)}")
        for outcome, n in view.counts.items()
    ]
    return html.Section(
        [
            html.Div(counts or [hint("Nothing to compare.")], className="pr-counts"),
            html.Div(
                [
                    html.H2("Newest build, per dataset and filter"),
                    html.Ul([_ci_run(job) for job in result.head_jobs], className="pr-list"),
                ]
            ),
            html.Div(
                [
                    html.H2("Baseline"),
                    html.Ul([html.Li(text) for text in result.baseline], className="pr-list"),
                    html.Div(
                        [
                            html.Label("Compare with", htmlFor="pr-base"),
                            dcc.Input(
                                id="pr-base",
                                type="text",
                                value="" if base == "auto" else base,
                                placeholder="auto, or a job id or commit",
                                debounce=False,
                                className="pr-base-input",
                            ),
                            html.Button("Compare", id="pr-base-apply", n_clicks=0),
                            hint(
                                "auto: the target branch's builds up to the merge base "
                                "(noise estimated from up to 10 of them)."
                            ),
                        ],
                        className="pr-base",
                    ),
                ]
            ),
        ],
        className="card pr-summary",
    )


@callback(
    Output("url", "search", allow_duplicate=True),
    Input("pr-base-apply", "n_clicks"),
    Input("pr-base", "n_submit"),
    State("pr-base", "value"),
    State("url", "search"),
    prevent_initial_call=True,
)
async def choose_base(
    _context: ProcessContext,
    _clicks: int | None,
    _submits: int | None,
    value: str | None,
    search: str | None,
) -> str:
    """Write the chosen baseline into the query string (empty or ``auto``: the default)."""
    query = {k: v for k, v in parse_query(search).items() if k != "base"}
    chosen = (value or "").strip()
    if chosen and chosen != "auto":
        query["base"] = [chosen[:80]]
    return query_string(dict(query))


# --- plots -----------------------------------------------------------------------------------


def _context_label(item: MetricComparison) -> str:
    return " · ".join(t for t in (item.dataset, item.filter) if t) or "no dataset"


def _plots(plots: list[RegressionPlot]) -> Component:
    if not plots:
        return html.Section(
            [html.H2("Regressed metrics"), hint("Nothing regressed beyond the baseline's noise.")],
            className="card",
        )
    graphs = []
    for index, plot in enumerate(plots):
        item = plot.item
        comparison = item.comparison
        figure = comparison_figure(
            item.metric,
            item.unit,
            context=_context_label(item),
            base=plot.base,
            head=plot.head,
            mean=comparison.base_mean,
            std=comparison.base_std,
            noise_k=plot.noise_k,
            delta_sigma=comparison.delta_sigma,
        )
        graphs.append(
            dcc.Graph(
                figure=figure,
                config=GRAPH_CONFIG,
                id={"type": "pr-plot", "index": index},
                className="pr-plot",
            )
        )
    return html.Section(
        [
            html.H2(f"Regressed metrics ({len(plots)})"),
            hint(
                "Grey: the baseline builds; red: the pull request's builds; the band: where a "
                "value is within noise (baseline mean ± 3σ). Click a point to open its job."
            ),
            html.Div(graphs, className="pr-plots"),
        ],
        className="card",
        id="pr-regressed",
    )


@callback(
    Output("url", "href", allow_duplicate=True),
    Input({"type": "pr-plot", "index": ALL}, "clickData"),
    prevent_initial_call=True,
)
async def open_job(_context: ProcessContext, _clicks: list[dict[str, Any] | None]) -> Any:
    """A click on a build's point opens its job page."""
    for triggered in ctx.triggered:
        points = (triggered.get("value") or {}).get("points") or []
        job_id = points[0].get("customdata") if points else None
        if isinstance(job_id, int) and not isinstance(job_id, bool):
            return job_href(job_id)
    return no_update


# --- the table -------------------------------------------------------------------------------


def _signed(value: float | None, suffix: str = "") -> str:
    if value is None:
        return "—"
    return format_number(value, 3, signed=True) + suffix


def _levels(item: MetricComparison) -> Component:
    """The highest spec level met on the baseline and on the PR; a PR that meets less is
    marked as a failure."""
    base, head = item.base_level, item.head_level
    if base is None and head is None:
        return html.Span("—", className="hint")
    lower = head is None or (base is not None and head.rank < base.rank)
    shown = head.value if head else "none met"
    badge = status_badge("fail", shown) if lower else status_badge(shown)
    return html.Span([base.value if base else "—", " → ", badge], className="pr-levels")


def _baseline(item: MetricComparison) -> Component | str:
    comparison = item.comparison
    if comparison.base_mean is None:
        return "no baseline value"
    spread = (
        f" ± {format_number(comparison.base_std, 3)}" if comparison.base_std is not None else ""
    )
    return html.Span(
        [
            html.Span(quantity(comparison.base_mean, item.unit) + spread, className="pr-baseline"),
            " ",
            html.Span(f"n={comparison.base_n}", className="hint pr-baseline"),
        ],
        title=f"the mean and standard deviation of {comparison.base_n} baseline builds",
    )


def _row(item: MetricComparison) -> list[Component | str]:
    comparison = item.comparison
    word = outcome_word(comparison.outcome)
    unit = f" {item.unit}" if item.unit else ""
    head: Component | str = (
        quantity(comparison.head_value, item.unit)
        if comparison.head_value is not None
        else html.Span("not measured", className="hint")
    )
    return [
        status_badge(word),
        dcc.Link(
            item.metric,
            href=metric_href(item.metric, dataset=item.dataset, filter=item.filter),
            className="pr-metric",
        ),
        _context_label(item),
        _baseline(item),
        head,
        _signed(comparison.delta, unit),
        _signed(comparison.delta_pct, " %"),
        _signed(comparison.delta_sigma, "σ"),
        _levels(item),
        dcc.Link(f"job {item.head_job}", href=job_href(item.head_job)),
    ]


_QUIET = (Outcome.WITHIN_NOISE, Outcome.UNCHANGED)


def _comparison_table(items: list[MetricComparison], id: str) -> Component:
    row_classes = [
        "row-open" if item.comparison.outcome is Outcome.REGRESSED else "" for item in items
    ]
    return html.Div(
        table(HEADER, [_row(item) for item in items], id=id, row_classes=row_classes),
        className="pr-table-wrap",
    )


def _comparison(items: list[MetricComparison]) -> Component:
    """Worst first: what changed beyond noise (or went missing) in view, the rest folded."""
    loud = [item for item in items if item.comparison.outcome not in _QUIET]
    quiet = [item for item in items if item.comparison.outcome in _QUIET]
    children: list[Component] = [
        html.H2("Every metric, worst first"),
        hint(
            "Change: the PR's value minus the baseline mean, in the metric's unit, in % and in "
            "standard deviations (σ) of the baseline builds. Level met: the highest "
            "specification level met by the newest baseline build → by the PR's build."
        ),
    ]
    if not items:
        children.append(hint("Neither the build nor its baseline has measurements."))
    elif loud:
        children.append(_comparison_table(loud, "pr-table"))
    else:
        children.append(hint("Nothing regressed, went missing or improved beyond noise."))
    if quiet:
        children.append(
            html.Details(
                [
                    html.Summary(f"{len(quiet)} within noise or unchanged"),
                    _comparison_table(quiet, "pr-table-quiet"),
                ],
                className="pr-quiet",
                open=not loud,
            )
        )
    return html.Section(children, className="card", id="pr-comparison")


# --- the builds ------------------------------------------------------------------------------


def _builds(builds: list[StoredJob]) -> Component:
    if not builds:
        return html.Div()
    by_commit: dict[str | None, list[StoredJob]] = {}
    for job in sorted(builds, key=lambda j: (j.time, j.id), reverse=True):
        by_commit.setdefault(job.context.commit, []).append(job)
    items = []
    for commit, jobs in by_commit.items():
        links: list[Component | str] = []
        for job in jobs:
            where = " · ".join(t for t in (job.context.dataset, job.context.filter) if t)
            links += [
                " · ",
                dcc.Link(f"job {job.id} ({where or 'no dataset'})", href=job_href(job.id)),
            ]
        items.append(html.Li([code(short_commit(commit)), " ", when(jobs[0].time), *links]))
    return html.Section(
        [
            html.Details(
                [
                    html.Summary(f"Builds of this pull request ({len(by_commit)})"),
                    html.Ul(items, className="pr-list"),
                ]
            )
        ],
        className="card",
    )
