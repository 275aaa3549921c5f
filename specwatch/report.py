"""Verification reports as Markdown, HTML (with interactive plots) or an executed notebook.

LDM-503 prefers notebooks as test reports: the ``ipynb`` format is a real notebook whose cells
hold the report's data and draw its plots with plotly; it is executed (nbclient, a Python
kernel) before it is written, so it opens with its outputs.
"""

from __future__ import annotations

import html
import math
from typing import Any

from specwatch.api.views import iso_times
from specwatch.dashboard.figures import ChangeMark, SpecLine, trend_figure
from specwatch.services.report import Plot, ReportData

FORMATS = ("md", "html", "ipynb")


def _num(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f} %"


def tables(data: ReportData) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The report's tables: name -> (header, rows) of plain text."""
    requirements = (
        ["Requirement", "Title", "Method", "Status (design)", "minimum", "design", "stretch"],
        [
            [s.requirement.id, s.requirement.title, s.requirement.method.value, _pct(s.fraction)]
            + [f"{c.passed}/{c.passed + c.failed + c.not_tested}" for c in s.levels.values()]
            for s in data.requirements
        ],
    )
    verdicts = (
        ["Metric", "Specification", "Level", "Value", "Threshold", "Unit", "Status"],
        [
            [
                v.metric,
                v.spec,
                v.level.value if v.level else "—",
                _num(v.value),
                f"{v.operator} {v.threshold:g}",
                v.unit,
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
                f"{_num(c.before)} → {_num(c.after)} ({_num(c.delta_pct)} %)",
                _num(c.delta_sigma),
                c.verdict,
                c.status,
                f"{(c.commit_before or '?')[:10]}..{(c.commit_after or '?')[:10]}",
            ]
            for c in data.changes
        ],
    )
    return {"requirements": requirements, "verdicts": verdicts, "changes": changes}


def _title(data: ReportData) -> tuple[str, str]:
    build = data.jobs[0].context if data.jobs else None
    since = data.previous_report.strftime("%Y-%m-%d %H:%M UTC") if data.previous_report else "ever"
    lines = [
        f"Dataset **{data.dataset}**, branch **{data.branch}**, made "
        f"{data.created_at:%Y-%m-%d %H:%M} UTC.",
        f"Build: commit `{build.commit}` ({len(data.jobs)} job(s))."
        if build
        else "No build of this dataset and branch yet.",
        f"Changes since the previous report ({since}).",
    ]
    return f"Verification report: {data.dataset}", "  \n".join(lines)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_none_\n"
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


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
    title, intro = _title(data)
    parts = [f"# {title}\n", intro + "\n"]
    names = {
        "requirements": "Requirements (VCD)",
        "verdicts": "Specifications",
        "changes": "Changes since the previous report",
    }
    for key, (header, rows) in tables(data).items():
        parts += [f"## {names[key]}\n", _markdown_table(header, rows)]
    return "\n".join(parts)


def render_html(data: ReportData) -> str:
    title, intro = _title(data)
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro).replace('**', '')}</p>"]
    names = {
        "requirements": "Requirements (VCD)",
        "verdicts": "Specifications",
        "changes": "Changes since the previous report",
    }
    for key, (header, rows) in tables(data).items():
        body.append(f"<h2>{names[key]}</h2>")
        if not rows:
            body.append("<p><em>none</em></p>")
            continue
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        cells = "".join(
            "<tr>"
            + "".join(f"<td class='{html.escape(c)}'>{html.escape(c)}</td>" for c in row)
            + "</tr>"
            for row in rows
        )
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
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def render_notebook(data: ReportData, *, execute: bool = True, timeout_s: int = 120) -> str:
    """An executed Jupyter notebook (JSON text)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    title, intro = _title(data)
    cells = [new_markdown_cell(f"# {title}\n\n{intro}")]
    names = {
        "requirements": "Requirements (VCD)",
        "verdicts": "Specifications",
        "changes": "Changes since the previous report",
    }
    for key, (header, rows) in tables(data).items():
        cells.append(new_markdown_cell(f"## {names[key]}\n\n{_markdown_table(header, rows)}"))
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
