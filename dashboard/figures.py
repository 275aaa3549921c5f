"""Pure plotly figure builders, shared by the dashboard and the verification reports."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from specwatch.metrics.formatting import format_quantity

LEVEL_COLOURS = {"minimum": "#d62728", "design": "#ff7f0e", "stretch": "#2ca02c", None: "#7f7f7f"}


@dataclass(frozen=True, slots=True)
class SpecLine:
    name: str
    level: str | None
    threshold: float
    operator: str


@dataclass(frozen=True, slots=True)
class ChangeMark:
    time: str
    verdict: str  # worse | better | changed
    label: str


def trend_figure(
    title: str,
    unit: str,
    times: Sequence[str],
    values: Sequence[float | None],
    *,
    specs: Sequence[SpecLine] = (),
    changes: Sequence[ChangeMark] = (),
    height: int = 320,
) -> go.Figure:
    """A metric's history with its specification thresholds and its change points."""
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=list(times),
            y=list(values),
            mode="lines+markers",
            name=title,
            marker={"size": 4},
            connectgaps=False,
        )
    )
    for spec in specs:
        figure.add_hline(
            y=spec.threshold,
            line={"color": LEVEL_COLOURS.get(spec.level, "#7f7f7f"), "dash": "dash", "width": 1},
            annotation_text=html.escape(
                f"{spec.level or spec.name} {spec.operator} {format_quantity(spec.threshold, unit)}"
            ),
            annotation_position="top left",
        )
    for change in changes:
        colour = {"worse": "#d62728", "better": "#2ca02c"}.get(change.verdict, "#9467bd")
        figure.add_vline(x=change.time, line={"color": colour, "width": 2})
        figure.add_annotation(
            x=change.time,
            y=1,
            yref="paper",
            text=html.escape(change.label),
            showarrow=False,
            font={"color": colour, "size": 10},
        )
    figure.update_layout(
        title=html.escape(title),
        height=height,
        margin={"l": 50, "r": 20, "t": 40, "b": 30},
        yaxis_title=unit or "value",
        showlegend=False,
        template="plotly_white",
    )
    return figure
