"""Verification reports as Markdown, HTML (with interactive plots) or an executed notebook.

LDM-503 prefers notebooks as test reports: the ``ipynb`` format is a real notebook whose cells
hold the report's data and draw its plots with plotly; it is executed (nbclient, a Python
kernel) before it is written, so it opens with its outputs.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from specwatch.api.views import iso_times
from specwatch.dashboard.figures import ChangeMark, SpecLine, trend_figure
from specwatch.metrics.formatting import format_number, format_quantity
from specwatch.services.report import Plot, ReportData

FORMATS = ("md", "html", "ipynb")
SECTIONS = {
    "requirements": "Requirements (VCD)",
    "verdicts": "Specifications",
    "changes": "Changes since the previous report",
}
_OPERATORS = {"<=": "≤", ">=": "≥", "==": "=", "!=": "≠"}
_STATUS_CLASSES = frozenset({"pass", "fail", "worse", "better"})  # cells the HTML colours


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f} %"


def _change(before: float, after: float, delta_pct: float | None, unit: str) -> str:
    text = f"{format_quantity(before, unit)} → {format_quantity(after, unit)}"
    if delta_pct is not None and math.isfinite(delta_pct):
        text += f" ({format_number(delta_pct, 3, signed=True)} %)"
    return text


def tables(data: ReportData) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The report's tables: name -> (header, rows) of plain text (not escaped)."""
    requirements = (
        ["Requirement", "Title", "Method", "Status (design)", "minimum", "design", "stretch"],
        [
            [s.requirement.id, s.requirement.title, s.requirement.method.value, _pct(s.fraction)]
            + [f"{c.passed}/{c.passed + c.failed + c.not_tested}" for c in s.levels.values()]
            for s in data.requirements
        ],
    )
    verdicts = (
        ["Metric", "Specification", "Level", "Value", "Threshold", "Status"],
        [
            [
                v.metric,
                v.spec,
                v.level.value if v.level else "—",
                format_quantity(v.value, v.unit),
                f"{_OPERATORS.get(v.operator, v.operator)} {format_quantity(v.threshold, v.unit)}",
                v.status.value if v.measured else "not measured",
            ]
            for v in data.verdicts
        ],
    )
    changes = (
        ["Time", "Metric", "Change", "σ", "Verdict", "Status", "Commits"],
        [
            [
                c.time.strftime("%Y-%m-%d %H:%M"),
                c.key.metric,
                _change(c.before, c.after, c.delta_pct, c.unit),
                format_number(c.delta_sigma, 3, signed=True),
                c.verdict,
                f"{c.status}: {c.note}" if c.note else c.status,
                f"{(c.commit_before or '?')[:10]}..{(c.commit_after or '?')[:10]}",
            ]
            for c in data.changes
        ],
    )
    return {"requirements": requirements, "verdicts": verdicts, "changes": changes}


# Markdown's active punctuation; '_' only where it could open or close emphasis.
_MD_ACTIVE = re.compile(r"[\\`*\[\]|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_PLAIN_CODE = re.compile(r"[0-9A-Za-z._/-]+")


def md_text(text: object) -> str:
    """Data as literal Markdown text on one line: HTML escaped (no tag or entity survives)
    and Markdown's punctuation backslash-escaped (no table cell, code span, link or
    emphasis can be opened by data)."""
    escaped = html.escape(" ".join(str(text).split()), quote=False)
    return _MD_ACTIVE.sub(lambda match: "\\" + match.group(0), escaped)


def _md_code(text: str) -> str:
    # A code span shows its content raw (no escape works inside it): plain names only.
    return f"`{text}`" if _PLAIN_CODE.fullmatch(text) else md_text(text)


@dataclass(frozen=True, slots=True)
class _Markup:
    """How a format writes data (always escaped) as text, strong text and code."""

    text: Callable[[str], str]
    strong: Callable[[str], str]
    code: Callable[[str], str]
    line_break: str


_MARKDOWN = _Markup(md_text, lambda t: f"**{md_text(t)}**", _md_code, "  \n")
_HTML = _Markup(
    html.escape,
    lambda t: f"<strong>{html.escape(t)}</strong>",
    lambda t: f"<code>{html.escape(t)}</code>",
    "<br>",
)


def _intro(data: ReportData, markup: _Markup) -> str:
    build = data.jobs[0].context if data.jobs else None
    lines = [
        f"Dataset {markup.strong(data.dataset)}, branch {markup.strong(data.branch)}, made "
        f"{data.created_at:%Y-%m-%d %H:%M} UTC.",
        f"Build: commit {markup.code(build.commit or '?')} ({len(data.jobs)} job(s))."
        if build
        else "No build of this dataset and branch yet.",
        f"Changes since the previous report, of the build of "
        f"{data.previous_report:%Y-%m-%d %H:%M} UTC."
        if data.previous_report
        else "Changes: all (no report of an earlier build).",
    ]
    return markup.line_break.join(lines)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_none_\n"
    out = ["| " + " | ".join(md_text(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def _markdown_head(data: ReportData) -> str:
    return f"# Verification report: {md_text(data.dataset)}\n\n{_intro(data, _MARKDOWN)}\n"


def _figure(plot: Plot, applied: set[str]) -> Any:
    """A metric's trend with the thresholds of the specs that apply to this build."""
    return trend_figure(
        plot.metric.full_name,
        plot.metric.unit,
        iso_times(plot.series.time_ns),
        plot.series.value,
        specs=[
            SpecLine(s.full_name, s.level.value if s.level else None, s.threshold, s.operator)
            for s in plot.specs
            if s.full_name in applied
        ],
        changes=[
            ChangeMark(c.time.isoformat(), c.verdict, f"{c.delta_sigma:+.1f}σ")
            for c in plot.changes
        ],
    )


def render_markdown(data: ReportData) -> str:
    parts = [_markdown_head(data)]
    for key, (header, rows) in tables(data).items():
        parts += [f"## {SECTIONS[key]}\n", _markdown_table(header, rows)]
    return "\n".join(parts)


def _html_cell(text: str) -> str:
    colour = f" class='{text}'" if text in _STATUS_CLASSES else ""
    return f"<td{colour}>{html.escape(text)}</td>"


def render_html(data: ReportData) -> str:
    title = html.escape(f"Verification report: {data.dataset}")
    body = [f"<h1>{title}</h1>", f"<p>{_intro(data, _HTML)}</p>"]
    for key, (header, rows) in tables(data).items():
        body.append(f"<h2>{SECTIONS[key]}</h2>")
        if not rows:
            body.append("<p><em>none</em></p>")
            continue
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        cells = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in rows)
        body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
    body.append("<h2>Trends</h2>")
    applied = {v.spec for v in data.verdicts}
    for number, plot in enumerate(data.plots):
        body.append(
            _figure(plot, applied).to_html(
                full_html=False, include_plotlyjs="inline" if number == 0 else False
            )
        )
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
        "td.fail{background:#fdd}td.pass{background:#dfd}td.worse{background:#fdd}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}"
        f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def render_notebook(data: ReportData, *, execute: bool = True, timeout_s: int = 120) -> str:
    """An executed Jupyter notebook (JSON text)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    cells = [new_markdown_cell(_markdown_head(data))]
    for key, (header, rows) in tables(data).items():
        cells.append(new_markdown_cell(f"## {SECTIONS[key]}\n\n{_markdown_table(header, rows)}"))
    cells.append(new_markdown_cell("## Trends\n\nEach plot is drawn from the data in its cell."))
    cells.append(
        new_code_cell(
            "import plotly.graph_objects as go\nimport plotly.io as pio\n"
            "pio.renderers.default = 'notebook_connected+plotly_mimetype'"
        )
    )
    applied = {v.spec for v in data.verdicts}
    for plot in data.plots:
        figure = _figure(plot, applied).to_json()
        cells.append(new_code_cell(f"pio.from_json({figure!r})"))
    notebook = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    if execute:
        from nbclient import NotebookClient

        NotebookClient(notebook, timeout=timeout_s, kernel_name="python3").execute()
    return str(nbformat.writes(notebook))


def render(data: ReportData, fmt: str) -> str:
    if fmt == "md":
        return render_markdown(data)
    if fmt == "html":
        return render_html(data)
    if fmt == "ipynb":
        return render_notebook(data)
    raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
