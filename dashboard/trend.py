"""Pure figure builders of the metric page: a metric's trend over builds.

WebGL traces (``Scattergl``) for every series so 20,000 points stay smooth; columns go to
plotly as numpy arrays (sent as typed arrays, not per-point objects); hover text is one
template per trace plus one short string per point.  Times are UTC milliseconds on a date
axis (plotly shows them as UTC).  Untrusted text (names, branches, CI ids, commits) is
escaped with ``html.escape`` before it enters the figure: plotly renders some HTML in hover
text and annotations.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go

from specwatch.dashboard.figures import LEVEL_COLOURS
from specwatch.metrics.formatting import format_number, format_utc
from specwatch.metrics.model import Direction
from specwatch.metrics.records import ChangeRecord
from specwatch.services.trends import SpecThreshold, Trend, TrendPoints, time_of

MAIN_COLOUR = "#2458c6"
PR_COLOUR = "#9467bd"
EXCLUDED_COLOUR = "#a0a7b4"
OVERLAY_COLOURS = ("#17becf", "#8c564b", "#e377c2", "#bcbd22")
VERDICT_COLOURS = {"worse": "#b42318", "better": "#1f7a3a"}
OUTAGE_FACTOR = 8.0  # intervals this many times the median between builds break the line
MAX_CHANGE_LABELS = 12  # the largest changes are labelled; the others are markers with hover
_UPPER = ("<", "<=")  # pass below the threshold
_LOWER = (">", ">=")
_OPERATOR_TEXT = {"<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "=", "!=": "≠"}

Floats = npt.NDArray[np.float64]
# plotly_white's look in a few keys (the whole template would add ~8 kB to every figure).
_TEMPLATE = {
    "layout": {
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"color": "#2a3f5f"},
        "xaxis": {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8"},
        "yaxis": {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8"},
        "hoverlabel": {"align": "left"},
    }
}


@dataclass(frozen=True, slots=True)
class Axis:
    """Where each build of each trace goes on x: UTC ms (``time``) or build index (``order``)."""

    mode: str  # time | order
    main_ns: npt.NDArray[np.int64]

    def of(self, points: TrendPoints, *, own_order: bool = True) -> Floats:
        times = np.asarray(points.time_ns, dtype=np.int64)
        if self.mode == "time":
            return (times // 1_000_000).astype(np.float64)
        if own_order:
            return np.arange(len(times), dtype=np.float64)
        # Builds of other branches (pull requests) sit between the main builds around them.
        return np.searchsorted(self.main_ns, times).astype(np.float64) - 0.5


def change_label(change: ChangeRecord) -> str:
    """``+0.49 mmag (+10 %, 3.3σ) worse``: the size in units, in % and in noise units."""
    size = format_number(change.delta, 3, signed=True)
    if change.unit:
        size += f" {change.unit}"
    relative = " rel." if change.unit == "%" else ""  # a change of a percentage, in %
    parts = (
        [f"{format_number(change.delta_pct, 3, signed=True)} %{relative}"]
        if change.delta_pct
        else []
    )
    parts.append(f"{abs(change.delta_sigma):.1f}σ")
    return f"{size} ({', '.join(parts)}) {change.verdict}"


def spec_label(spec: SpecThreshold, unit: str) -> str:
    number = format_number(spec.threshold)
    value = f"{number} {unit}" if unit else number
    return f"{spec.level or spec.name.rsplit('.', 1)[-1]} {_OPERATOR_TEXT[spec.operator]} {value}"


def _values(points: TrendPoints, keep: npt.NDArray[np.bool_] | None = None) -> Floats:
    values = np.array([math.nan if v is None else v for v in points.value], dtype=np.float64)
    return values if keep is None else values[keep]


def _hover_text(points: TrendPoints, *, with_branch: bool, with_time: bool) -> list[str]:
    """One short line per build: (time,) commit, (branch,) PR, CI build; escaped."""
    n = len(points)
    times = [format_utc(time_of(t)) + " · " for t in points.time_ns] if with_time else [""] * n
    branches = (
        [f" · branch {b}" if b else "" for b in points.branch_of] if with_branch else [""] * n
    )
    texts = [
        f"{when}{f'commit {commit[:10]}' if commit else 'no commit'}{branch}"
        f"{'' if pr is None else f' · PR #{pr}'}{f' · CI {ci}' if ci else ''}"
        for when, commit, branch, pr, ci in zip(
            times, points.commit, branches, points.pr, points.ci, strict=True
        )
    ]
    # Escaped in one pass over the joined lines (a line holding the separator: one by one).
    escaped = html.escape("\n".join(texts)).split("\n") if texts else []
    return escaped if len(escaped) == n else [html.escape(text) for text in texts]


def _texts(
    points: TrendPoints, axis: Axis, *, with_branch: bool = False
) -> npt.NDArray[np.object_]:
    lines = _hover_text(points, with_branch=with_branch, with_time=axis.mode == "order")
    return np.array(lines, dtype=object)


def _template(unit: str, mode: str, name: str) -> str:
    value = "%{y:,.4~g}" + (f" {html.escape(unit)}" if unit else "")
    where = "%{x|%Y-%m-%d %H:%M} UTC<br>" if mode == "time" else ""
    return f"<b>{value}</b><br>{where}%{{text}}<br>job %{{customdata}}<extra>{name}</extra>"


def _trace(
    points: TrendPoints,
    axis: Axis,
    unit: str,
    *,
    name: str,
    colour: str,
    keep: npt.NDArray[np.bool_] | None,
    own_order: bool = True,
    lines: bool = True,
    symbol: str = "circle",
    size: int = 5,
    with_branch: bool = False,
    text: npt.NDArray[np.object_] | None = None,
) -> go.Scattergl:
    x = axis.of(points, own_order=own_order)
    ids = np.asarray(points.job_id, dtype=np.int64)
    if text is None:
        text = _texts(points, axis, with_branch=with_branch)
    y = _values(points, keep)
    if keep is not None:
        x, ids, text = x[keep], ids[keep], text[keep]
    if lines and axis.mode == "time":
        x, y, ids, text = _break_outages(x, y, ids, text)
    safe_name = html.escape(name)
    return go.Scattergl(
        x=x,
        y=y,
        # A list, not a typed array: Dash's clickData reads customdata from the figure's
        # data as sent, where a typed array is still its base64 form.
        customdata=ids.tolist(),
        text=text,
        name=safe_name,
        mode="lines+markers" if lines else "markers",
        connectgaps=False,  # a NaN or unmeasured build is a gap in the line
        line={"color": colour, "width": 1.5},
        marker={"color": colour, "size": size, "symbol": symbol},
        hovertemplate=_template(unit, axis.mode, safe_name),
        # Built here from arrays of known types: plotly's per-element validation of 20,000
        # texts and job ids took most of the page's server time.
        _validate=False,
    )


def _break_outages(
    x: Floats, y: Floats, ids: npt.NDArray[np.int64], text: npt.NDArray[np.object_]
) -> tuple[Floats, Floats, npt.NDArray[np.int64], npt.NDArray[np.object_]]:
    """A gap in the line where no build ran for ``OUTAGE_FACTOR`` times the usual interval
    (a CI outage is a gap, not a straight line across it); the gap is a NaN (job id -1)."""
    if len(x) < 3:
        return x, y, ids, text
    steps = np.diff(x)
    usual = float(np.median(steps[steps > 0])) if (steps > 0).any() else 0.0
    where = np.nonzero(steps > max(usual * OUTAGE_FACTOR, 1.0))[0] + 1
    if not usual or not len(where):
        return x, y, ids, text
    middle = (x[where - 1] + x[where]) / 2
    return (
        np.insert(x, where, middle),
        np.insert(y, where, np.nan),
        np.insert(ids, where, -1),
        np.insert(text, where, ""),
    )


def _y_range(trend: Trend) -> tuple[float, float] | None:
    """Data and thresholds, padded: the bands then reach the plot's edges."""
    found = [_values(points) for points in (trend.main, trend.prs, *trend.overlays) if len(points)]
    found.append(np.array([spec.threshold for spec in trend.specs], dtype=np.float64))
    values = np.concatenate(found) if found else np.array([])
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    low, high = float(values.min()), float(values.max())
    pad = (high - low) * 0.06 or abs(high) * 0.1 or 1.0
    return low - pad, high + pad


def _spec_shapes(
    specs: Sequence[SpecThreshold], unit: str, y: tuple[float, float] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each threshold as a labelled line across the plot; bands per level between the
    thresholds of one side (a value in a band meets that level and no stricter one)."""
    shapes: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    for spec in specs:
        colour = LEVEL_COLOURS.get(spec.level, LEVEL_COLOURS[None])
        shapes.append(
            {
                "type": "line",
                "xref": "x domain",
                "x0": 0,
                "x1": 1,
                "yref": "y",
                "y0": spec.threshold,
                "y1": spec.threshold,
                "line": {"color": colour, "dash": "dash", "width": 1.2},
            }
        )
        labels.append(
            {
                "text": html.escape(spec_label(spec, unit)),
                "xref": "x domain",
                "x": 0,
                "xanchor": "left",
                "yref": "y",
                "y": spec.threshold,
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"color": colour, "size": 11},
                "bgcolor": "rgba(255,255,255,0.75)",
            }
        )
    if y is None:
        return shapes, labels
    for operators, reverse in ((_UPPER, False), (_LOWER, True)):
        side = sorted(
            (s for s in specs if s.operator in operators and s.level),
            key=lambda s: s.threshold,
            reverse=reverse,
        )
        edge = y[1] if reverse else y[0]
        for spec in side:
            low, high = sorted((edge, spec.threshold))
            if high > low:
                shapes.append(
                    {
                        "type": "rect",
                        "xref": "x domain",
                        "x0": 0,
                        "x1": 1,
                        "yref": "y",
                        "y0": low,
                        "y1": high,
                        "fillcolor": LEVEL_COLOURS.get(spec.level, LEVEL_COLOURS[None]),
                        "opacity": 0.07,
                        "line": {"width": 0},
                        "layer": "below",
                    }
                )
            edge = spec.threshold
    return shapes, labels


def _change_marks(
    trend: Trend, axis: Axis, y: tuple[float, float] | None
) -> tuple[go.Scatter | None, list[dict[str, Any]]]:
    """Each change point: a dotted line at its first build, and a marker on a row at the top of
    the plot labelled with its size (the largest ones), clickable to its culprit candidates."""
    index = {job_id: i for i, job_id in enumerate(trend.main.job_id)}
    labelled = {
        id(c) for c in sorted(trend.changes, key=lambda c: -abs(c.delta_sigma))[:MAX_CHANGE_LABELS]
    }
    shapes: list[dict[str, Any]] = []
    xs, texts, hovers, colours, customdata = [], [], [], [], []
    for change in trend.changes:
        if change.job_id not in index:
            continue
        i = index[change.job_id]
        x = float(trend.main.time_ns[i] // 1_000_000) if axis.mode == "time" else float(i)
        colour = VERDICT_COLOURS.get(change.verdict, "#6941c6")
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "x0": x,
                "x1": x,
                "yref": "y domain",
                "y0": 0,
                "y1": 1,
                "line": {"color": colour, "width": 1, "dash": "dot"},
            }
        )
        label = html.escape(change_label(change))
        xs.append(x)
        texts.append(label if id(change) in labelled else "")
        hovers.append(
            f"change {label}<br>first build after: {html.escape(format_utc(change.time))}"
            "<br>click: culprit candidates"
        )
        colours.append(colour)
        customdata.append(f"change:{change.id}")
    if not xs or y is None:
        return None, shapes
    top = y[1] - (y[1] - y[0]) * 0.035
    marks = go.Scatter(
        x=xs,
        y=[top] * len(xs),
        mode="markers+text",
        text=texts,
        textposition="middle right",
        textfont={"size": 11, "color": colours},
        marker={
            "symbol": "diamond",
            "size": 12,
            "color": colours,
            "line": {"width": 1, "color": "#fff"},
        },
        customdata=customdata,
        hovertext=hovers,
        hovertemplate="%{hovertext}<extra></extra>",
        name="change points",
    )
    return marks, shapes


def trend_figure(trend: Trend, *, mode: str = "time", height: int = 480) -> go.Figure:
    """The trend of ``trend.main`` with its specs, change points, excluded builds, pull-request
    builds and overlays; ``mode`` is ``time`` (build time) or ``order`` (build index)."""
    unit = trend.metric.unit
    axis = Axis(mode, np.asarray(trend.main.time_ns, dtype=np.int64))
    main = trend.main
    excluded = np.asarray(main.excluded, dtype=bool)
    texts = _texts(main, axis)
    data: list[go.Scattergl | go.Scatter] = [
        _trace(
            main,
            axis,
            unit,
            name=f"{main.selection.label or 'all'} · {trend.branch}",
            colour=MAIN_COLOUR,
            keep=~excluded,
            text=texts,
        )
    ]
    if excluded.any():
        data.append(
            _trace(
                main,
                axis,
                unit,
                name="excluded (bad data)",
                colour=EXCLUDED_COLOUR,
                keep=excluded,
                lines=False,
                symbol="x",
                size=7,
                text=texts,
            )
        )
    for n, overlay in enumerate(trend.overlays):
        data.append(
            _trace(
                overlay,
                axis,
                unit,
                name=f"{overlay.selection.label} · {overlay.branch}",
                colour=OVERLAY_COLOURS[n % len(OVERLAY_COLOURS)],
                keep=None,
                size=4,
            )
        )
    if len(trend.prs):
        data.append(
            _trace(
                trend.prs,
                axis,
                unit,
                name="pull-request builds",
                colour=PR_COLOUR,
                keep=None,
                own_order=False,
                lines=False,
                symbol="diamond",
                size=8,
                with_branch=True,
            )
        )
    y = _y_range(trend)
    shapes, annotations = _spec_shapes(trend.specs, unit, y)
    marks, change_lines = _change_marks(trend, axis, y)
    if marks is not None:
        data.append(marks)
    direction = trend.metric.direction
    if direction != Direction.NONE:
        arrow = "↓ lower is better" if direction == Direction.LOWER else "↑ higher is better"
        annotations.append(
            {
                "text": arrow,
                "xref": "paper",
                "yref": "paper",
                "x": 1,
                "y": 1.02,
                "xanchor": "right",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 12, "color": "#475467"},
            }
        )
    xaxis: dict[str, Any] = {"showgrid": True, "zeroline": False}
    if mode == "time":
        xaxis |= {
            "type": "date",
            "hoverformat": "%Y-%m-%d %H:%M",
            "title": {"text": "build time (UTC)"},
            "rangeselector": {
                "buttons": [
                    {"count": 7, "label": "7 d", "step": "day", "stepmode": "backward"},
                    {"count": 1, "label": "1 mo", "step": "month", "stepmode": "backward"},
                    {"count": 3, "label": "3 mo", "step": "month", "stepmode": "backward"},
                    {"count": 6, "label": "6 mo", "step": "month", "stepmode": "backward"},
                    {"step": "all", "label": "all"},
                ],
                "x": 0,
                "y": 1.02,
                "yanchor": "bottom",
            },
        }
    else:
        xaxis |= {"title": {"text": "build (oldest → newest)"}}
    yaxis: dict[str, Any] = {
        "title": {"text": html.escape(unit or "value")},
        "zeroline": False,
        "exponentformat": "e",  # 5e-05, never an SI prefix that reads as a unit (50µ)
    }
    if y is not None:
        yaxis["range"] = list(y)
    layout = {
        "height": height,
        "margin": {"l": 64, "r": 24, "t": 48, "b": 40},
        "template": _TEMPLATE,
        "hovermode": "closest",
        "dragmode": "zoom",
        "showlegend": len(data) > 1,
        "legend": {"orientation": "h", "x": 0, "y": -0.14, "yanchor": "top"},
        "xaxis": xaxis,
        "yaxis": yaxis,
        "shapes": [*shapes, *change_lines],
        "annotations": annotations,
        "uirevision": f"{trend.metric.full_name}|{trend.selection.key}|{mode}",
    }
    return go.Figure(data=data, layout=layout)
