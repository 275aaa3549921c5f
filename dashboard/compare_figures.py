"""Pure plotly builders of the pull-request page: one regressed metric, baseline against PR.

Plotly renders a subset of HTML in titles, legends and hover text: every text that comes from
a job or a definition goes through ``html.escape`` here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime

import plotly.graph_objects as go

from specwatch.metrics.formatting import format_number, format_quantity
from specwatch.services.builds import BuildValue

BASE_COLOUR = "#5b6575"
HEAD_COLOUR = "#b42318"
BAND_COLOUR = "rgba(36, 88, 198, 0.12)"
MEAN_COLOUR = "#2458c6"


def utc_text(moment: datetime) -> str:
    """A time as plotly's date axis reads it: UTC, without an offset (it ignores them)."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.strftime("%Y-%m-%d %H:%M:%S")


def _hover(kind: str, point: BuildValue, unit: str) -> str:
    commit = html.escape(point.commit[:10]) if point.commit else "—"
    return (
        f"{kind} · job {point.job_id}<br>{html.escape(format_quantity(point.value, unit))}"
        f"<br>commit {commit}<br>{utc_text(point.time)} UTC"
    )


def comparison_figure(
    metric: str,
    unit: str,
    *,
    context: str,
    base: Sequence[BuildValue],
    head: Sequence[BuildValue],
    mean: float | None,
    std: float | None,
    noise_k: float = 3.0,
    delta_sigma: float | None = None,
    height: int = 260,
) -> go.Figure:
    """The baseline builds (grey dots), their mean and the band within noise (mean ± k·σ,
    what a comparison calls *within noise*), and the PR's builds (red diamonds), over build
    time; the title names the metric, its unit and ``context`` (dataset, filter)."""
    figure = go.Figure()
    times = [utc_text(p.time) for p in [*base, *head]]
    start, end = (min(times), max(times)) if times else (None, None)
    if mean is not None and start is not None:
        if std is not None and std > 0:
            low, high = mean - noise_k * std, mean + noise_k * std
            figure.add_trace(
                go.Scatter(
                    x=[start, end, end, start, start],
                    y=[low, low, high, high, low],
                    fill="toself",
                    fillcolor=BAND_COLOUR,
                    line={"width": 0},
                    mode="lines",
                    name=f"within noise (±{format_number(noise_k, 2)}σ)",
                    hoverinfo="skip",
                )
            )
        figure.add_trace(
            go.Scatter(
                x=[start, end],
                y=[mean, mean],
                mode="lines",
                line={"color": MEAN_COLOUR, "dash": "dash", "width": 1},
                name="baseline mean",
                hovertemplate=html.escape(f"baseline mean {format_quantity(mean, unit)}")
                + "<extra></extra>",
            )
        )
    figure.add_trace(
        go.Scatter(
            x=[utc_text(p.time) for p in base],
            y=[p.value for p in base],
            mode="markers",
            marker={"color": BASE_COLOUR, "size": 7},
            name="baseline builds",
            text=[_hover("baseline", p, unit) for p in base],
            customdata=[p.job_id for p in base],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[utc_text(p.time) for p in head],
            y=[p.value for p in head],
            mode="markers",
            marker={
                "color": HEAD_COLOUR,
                "size": 11,
                "symbol": "diamond",
                "line": {"color": "#fff", "width": 1},
            },
            name="PR builds",
            text=[_hover("PR build", p, unit) for p in head],
            customdata=[p.job_id for p in head],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    heading = html.escape(f"{metric} [{unit}]" if unit else metric)
    detail = html.escape(context)
    if delta_sigma is not None:
        detail += f" · {format_number(delta_sigma, 2, signed=True)}σ"
    figure.update_layout(
        title={
            "text": f"{heading}<br><span style='font-size:11px'>{detail}</span>",
            "font": {"size": 13},
            "x": 0.01,
            "xanchor": "left",
        },
        height=height,
        margin={"l": 56, "r": 12, "t": 52, "b": 36},
        xaxis={"type": "date", "title": None, "tickfont": {"size": 10}},
        yaxis={"title": {"text": html.escape(unit or "value"), "font": {"size": 11}}},
        legend={"orientation": "h", "y": -0.22, "x": 0, "font": {"size": 10}},
        template="plotly_white",
        hovermode="closest",
    )
    return figure
