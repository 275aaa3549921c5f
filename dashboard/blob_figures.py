"""Pure plotly figures of a measurement's blobs, shared by the drill-down page and the reports.

A blob (lsst.verify) maps names to data: ``{"value": …, "unit": …, "label": …,
"description": …}``; a value is a number, a string, a boolean or a list.  ``read_blob`` sorts
them into numeric arrays (NaN where a value is missing) and scalars.  The use cases of
verification get their own plots: the per-star RMS against magnitude (PA1 and kin) and the
distribution of star pairs' separation RMS (AMx, ADx, AFx) with the measured value and the
specification thresholds; any array gets a histogram, any two arrays of one length a scatter.

No I/O.  Text from a job (names, labels, units) is escaped before it goes into a figure, since
plotly renders a subset of HTML in titles and hover text.  Points drawn are bounded
(``MAX_POINTS``; a figure says when it thins), histograms are binned here over every value.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go

from specwatch.exceptions import SpecwatchError
from specwatch.metrics.formatting import format_number, format_quantity
from specwatch.metrics.model import Blob
from specwatch.metrics.units import conversion_factor

from .figures import LEVEL_COLOURS, SpecLine

MAX_POINTS = 50_000  # drawn per scatter; more are thinned evenly
SHORT_ARRAY = 4  # arrays of at most this many values are listed with the scalars
HISTOGRAM_BINS = 40
MEASURED_COLOUR = "#14213d"
SCATTERGL_FROM = 5_000  # points; fewer draw as SVG (a page has few WebGL contexts to spare)

Floats = npt.NDArray[np.float64]

_NON_FINITE = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf, "inf": math.inf}
_SPACES = re.compile(r"\s+")


class BlobPlotError(ValueError):
    """What cannot be drawn, in words for the reader (arrays of different lengths…)."""


@dataclass(frozen=True, slots=True, eq=False)
class BlobArray:
    """A numeric array of a blob; ``values`` holds NaN where a value is missing."""

    name: str
    values: Floats
    unit: str = ""
    label: str = ""
    description: str = ""

    @property
    def size(self) -> int:
        return int(self.values.size)

    @property
    def finite(self) -> int:
        return int(np.isfinite(self.values).sum())


@dataclass(frozen=True, slots=True)
class BlobScalar:
    """Anything of a blob that is not an array to plot, as text."""

    name: str
    text: str
    unit: str = ""
    label: str = ""
    description: str = ""
    number: float | None = None  # the value when it is one finite number


@dataclass(frozen=True, slots=True, eq=False)
class BlobContent:
    identifier: str
    name: str
    arrays: tuple[BlobArray, ...]
    scalars: tuple[BlobScalar, ...]

    def array(self, name: str) -> BlobArray | None:
        return next((a for a in self.arrays if a.name == name), None)


@dataclass(frozen=True, slots=True)
class ValueLine:
    """A reference value drawn across a plot (the measured value, a spec threshold)."""

    label: str
    value: float
    colour: str = MEASURED_COLOUR
    dash: str = "solid"


# --- reading blobs -----------------------------------------------------------------------------


def clean_text(text: Any, max_chars: int = 200) -> str:
    """One line of plain text (labels hold newlines in lsst.verify jobs), bounded."""
    flat = _SPACES.sub(" ", str(text or "")).strip()
    return flat if len(flat) <= max_chars else flat[: max_chars - 1] + "…"


def _number(value: Any) -> float | None:
    """A float for a number, null or non-finite spelling; None for anything else."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _NON_FINITE.get(value.strip().lower())
    return None


def _numeric(values: list[Any]) -> Floats | None:
    numbers = [_number(v) for v in values]
    if any(n is None for n in numbers):
        return None
    return np.asarray(numbers, dtype=np.float64)


def _describe(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format_number(float(value))
    if isinstance(value, str):
        return clean_text(value) or '""'
    if isinstance(value, list):
        if value and all(isinstance(item, list) for item in value):
            sizes = sorted({len(item) for item in value})
            inner = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}–{sizes[-1]:,}"
            return f"{len(value):,} lists of {inner} values (nested: not drawn)"
        numbers = _numeric(value) if value else None
        if numbers is not None and numbers.size <= SHORT_ARRAY:
            return "[" + ", ".join(format_number(float(n)) for n in numbers) + "]"
        shown = ", ".join(clean_text(item, 40) for item in value[:SHORT_ARRAY])
        more = f", … ({len(value)} items)" if len(value) > SHORT_ARRAY else ""
        return f"[{shown}{more}]"
    if isinstance(value, Mapping):
        return f"an object with {len(value)} keys"
    return clean_text(value)


def read_blob(blob: Blob) -> BlobContent:
    """A blob's numeric arrays (longer than ``SHORT_ARRAY``) and its other data as scalars."""
    arrays: list[BlobArray] = []
    scalars: list[BlobScalar] = []
    for name, datum in blob.data.items():
        if isinstance(datum, Mapping) and "value" in datum:
            value = datum.get("value")
            unit = clean_text(datum.get("unit"), 64)
            label = clean_text(datum.get("label"))
            description = clean_text(datum.get("description"), 500)
        else:  # a bare value, not lsst.verify's datum
            value, unit, label, description = datum, "", "", ""
        numbers = _numeric(value) if isinstance(value, list) else None
        if numbers is not None and numbers.size > SHORT_ARRAY:
            arrays.append(BlobArray(str(name), numbers, unit, label, description))
        else:
            number = _number(value) if not isinstance(value, list) else None
            finite = number if number is not None and math.isfinite(number) else None
            scalars.append(
                BlobScalar(str(name), _describe(value), unit, label, description, finite)
            )
    return BlobContent(blob.identifier, blob.name, tuple(arrays), tuple(scalars))


# --- the use cases of verification -------------------------------------------------------------

_MAGNITUDE_NAMES = ("mag", "magMean", "mag_mean", "meanMag")
_STAR_RMS_NAMES = ("magrms", "rms", "magRms", "magResid")
_SEPARATION_NAMES = ("rmsDistMas", "rms")


def _factor(from_unit: str, to_unit: str) -> float | None:
    """The conversion factor between two units, None when they are not convertible."""
    try:
        return conversion_factor(from_unit, to_unit)
    except SpecwatchError:
        return None


def find_star_rms(blobs: Sequence[BlobContent]) -> tuple[BlobArray, BlobArray] | None:
    """The (magnitude, per-star RMS) pair with the most stars: arrays of one length in one
    blob, the first in magnitudes, the second in a photometric unit (``mmag``, ``mag``)."""
    found: list[tuple[BlobArray, BlobArray]] = []
    for blob in blobs:
        magnitude = next(
            (a for n in _MAGNITUDE_NAMES if (a := blob.array(n)) and _factor(a.unit, "mag")),
            None,
        )
        if magnitude is None:
            continue
        for name in _STAR_RMS_NAMES:
            rms = blob.array(name)
            if rms is not None and rms.size == magnitude.size and _factor(rms.unit, "mmag"):
                found.append((magnitude, rms))
                break
    return max(found, key=lambda pair: pair[0].size, default=None)


def find_separations(blobs: Sequence[BlobContent]) -> tuple[BlobContent, BlobArray] | None:
    """The blob and array of star pairs' separation RMS (an angle) with the most pairs."""
    found = [
        (blob, array)
        for blob in blobs
        for name in _SEPARATION_NAMES
        if (array := blob.array(name)) is not None and _factor(array.unit, "marcsec")
    ]
    return max(found, key=lambda pair: pair[1].size, default=None)


def reference_lines(
    metric: str,
    value: float | None,
    unit: str,
    specs: Sequence[SpecLine],
    axis_unit: str,
) -> list[ValueLine]:
    """The measured value and the spec thresholds (in ``unit``, the metric's) converted to
    ``axis_unit``; none when the units are not convertible (AFx is a % over an angle axis)."""
    factor = _factor(unit, axis_unit)
    if factor is None:
        return []
    lines = []
    if value is not None and math.isfinite(value):
        lines.append(ValueLine(f"{metric} = {format_quantity(value, unit)}", value * factor))
    for spec in specs:
        level = spec.level or spec.name
        lines.append(
            ValueLine(
                f"{level} {spec.operator} {format_quantity(spec.threshold, unit)}",
                spec.threshold * factor,
                LEVEL_COLOURS.get(spec.level, LEVEL_COLOURS[None]),
                "dash",
            )
        )
    return lines


def verification_figures(
    metric: str,
    value: float | None,
    unit: str,
    blobs: Sequence[BlobContent],
    specs: Sequence[SpecLine] = (),
) -> list[go.Figure]:
    """The plots of a measurement's use case: per-star RMS vs magnitude when the metric is in
    magnitudes (PA1, PA2), the pairs' separation RMS distribution when a blob has them."""
    figures = []
    short = html.escape(metric)
    stars = find_star_rms(blobs) if _factor(unit, "mag") else None
    if stars is not None:
        magnitude, rms = stars
        figures.append(
            star_rms_figure(
                magnitude,
                rms,
                unit=unit,
                lines=reference_lines(metric, value, unit, specs, unit),
                title=f"{short}: per-star {html.escape(rms.name)} vs magnitude",
            )
        )
    separations = find_separations(blobs)
    if separations is not None:
        blob, rms = separations
        lines = reference_lines(metric, value, unit, specs, rms.unit)
        spread = next((s for s in blob.scalars if s.name == "ADx"), None)
        factor = _factor(spread.unit, rms.unit) if spread is not None else None
        if spread is not None and spread.number is not None and factor is not None:
            spread_text = format_quantity(spread.number, spread.unit)
            lines.append(
                ValueLine(
                    f"ADx ({spread.label or 'ADx'}) = {spread_text}",
                    spread.number * factor,
                    "#9467bd",
                    "dot",
                )
            )
        figures.append(
            separation_figure(
                rms, lines=lines, title=f"{short}: separation RMS of star pairs ({rms.name})"
            )
        )
    return figures


# --- figures -----------------------------------------------------------------------------------


def axis_title(array: BlobArray, unit: str | None = None) -> str:
    """``name · label (unit)``, escaped; a unitless array says it is dimensionless."""
    unit = array.unit if unit is None else unit
    text = array.name
    if array.label and array.label.casefold() != array.name.casefold():
        text += f" · {array.label}"
    return html.escape(f"{text} ({unit or 'dimensionless'})")


def _layout(figure: go.Figure, title: str, height: int) -> go.Figure:
    figure.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=height,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        template="plotly_white",
        showlegend=False,
    )
    return figure


def _thin(count: int) -> tuple[slice, str]:
    """Every k-th point so that at most ``MAX_POINTS`` are drawn, and a note saying so."""
    if count <= MAX_POINTS:
        return slice(None), ""
    step = math.ceil(count / MAX_POINTS)
    drawn = math.ceil(count / step)
    return slice(None, None, step), f"showing {drawn:,} of {count:,} points (every {step})"


def _subtitle(title: str, notes: Sequence[str]) -> str:
    kept = [note for note in notes if note]
    return title + (f"<br><sup>{html.escape('; '.join(kept))}</sup>" if kept else "")


def _points(x: BlobArray, y: BlobArray, y_factor: float = 1.0) -> tuple[Floats, Floats, list[str]]:
    """Finite (x, y) pairs, thinned, and notes on what was left out."""
    if x.size != y.size:
        raise BlobPlotError(
            f"{x.name} has {x.size:,} values and {y.name} {y.size:,}: "
            "arrays of different lengths cannot be scattered"
        )
    keep = np.isfinite(x.values) & np.isfinite(y.values)
    xs, ys = x.values[keep], y.values[keep] * y_factor
    notes = []
    if (left := x.size - xs.size) > 0:
        notes.append(f"{left:,} of {x.size:,} without a finite value left out")
    if not xs.size:
        raise BlobPlotError(f"{x.name} and {y.name} have no finite pair of values to draw")
    step, note = _thin(xs.size)
    notes.append(note)
    return xs[step], ys[step], notes


def _trace(xs: Floats, ys: Floats, hover: str, colour: str = "#2458c6") -> go.Scatter:
    kind = go.Scattergl if xs.size >= SCATTERGL_FROM else go.Scatter
    return kind(
        x=xs,
        y=ys,
        mode="markers",
        marker={"size": 4 if xs.size > 2_000 else 6, "color": colour, "opacity": 0.6},
        hovertemplate=hover + "<extra></extra>",
    )


def _hover(array: BlobArray, axis: str, unit: str) -> str:
    return f"{html.escape(array.name)} %{{{axis}:.4g}} {html.escape(unit)}"


def star_rms_figure(
    magnitude: BlobArray,
    rms: BlobArray,
    *,
    unit: str,
    lines: Sequence[ValueLine] = (),
    title: str = "Per-star RMS vs magnitude",
    height: int = 380,
) -> go.Figure:
    """Each star's RMS (converted to ``unit``, the metric's) against its magnitude, with
    horizontal reference lines; on a log axis when the RMS spans decades (faint stars).
    ``title`` is trusted (escape what it holds).

    Raises:
        BlobPlotError: arrays of different lengths, no finite pair, unconvertible units.
    """
    factor = _factor(rms.unit, unit)
    if factor is None:
        raise BlobPlotError(f"{rms.name} is in {rms.unit or 'no unit'}, not convertible to {unit}")
    xs, ys, notes = _points(magnitude, rms, factor)
    figure = go.Figure(
        _trace(
            xs,
            ys,
            _hover(magnitude, "x", magnitude.unit) + "<br>" + _hover(rms, "y", unit),
        )
    )
    log = wide_positive(ys)
    _add_lines(figure, lines, horizontal=True, log=log)
    figure.update_xaxes(title=axis_title(magnitude))
    figure.update_yaxes(title=axis_title(rms, unit), type="log" if log else "linear")
    return _layout(figure, _subtitle(title, notes), height)


def _add_lines(
    figure: go.Figure, lines: Sequence[ValueLine], *, horizontal: bool, log: bool = False
) -> None:
    """Reference lines across the plot, each labelled (escaped).  On a log axis plotly places
    shapes by value but annotations by the value's log10; lines at or below 0 are left out."""
    for i, line in enumerate(lines):
        style = {"color": line.colour, "dash": line.dash, "width": 2 if line.dash == "solid" else 1}
        text = html.escape(line.label)
        font = {"color": line.colour, "size": 11}
        if horizontal:  # the measured value labelled on the left, thresholds on the right
            if log and line.value <= 0:
                continue
            measured = line.dash == "solid"
            figure.add_shape(
                type="line", xref="paper", x0=0, x1=1, y0=line.value, y1=line.value, line=style
            )
            figure.add_annotation(
                xref="paper",
                x=0 if measured else 1,
                xanchor="left" if measured else "right",
                y=math.log10(line.value) if log else line.value,
                yanchor="bottom" if measured or i % 2 else "top",  # close lines: alternate
                text=text,
                showarrow=False,
                font=font,
            )
        else:
            figure.add_vline(x=line.value, line=style)
            figure.add_annotation(
                x=line.value,
                y=1 - 0.09 * (i % 4),
                yref="paper",
                text=text,
                showarrow=False,
                xanchor="left",
                bgcolor="rgba(255,255,255,0.8)",
                font=font,
            )


def wide_positive(values: Floats) -> bool:
    """Whether values are all positive and spread over more than two decades (a per-star
    RMS from bright to faint stars): a log axis then shows the bright ones too."""
    if not values.size or (values <= 0).any():
        return False
    low, high = np.percentile(values, [1, 99])
    return bool(high / low > 100)


def _bars(values: Floats, bins: int) -> tuple[Floats, Floats, Floats]:
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    return centres, counts.astype(np.float64), np.diff(edges)


def histogram_figure(
    array: BlobArray,
    *,
    lines: Sequence[ValueLine] = (),
    title: str | None = None,
    bins: int = HISTOGRAM_BINS,
    height: int = 260,
) -> go.Figure:
    """The distribution of one array, binned here over all its finite values (any size),
    with vertical reference lines.  ``title`` is trusted; by default the array's name."""
    finite = array.values[np.isfinite(array.values)]
    notes = [f"{finite.size:,} of {array.size:,} values finite" if finite.size < array.size else ""]
    heading = title if title is not None else html.escape(array.name)
    figure = go.Figure()
    if finite.size:
        centres, counts, widths = _bars(finite, bins)
        figure.add_trace(
            go.Bar(
                x=centres,
                y=counts,
                width=widths,
                marker={"color": "#2458c6", "line": {"width": 0}},
                hovertemplate=f"%{{x:.4g}} {html.escape(array.unit)}: %{{y}}<extra></extra>",
            )
        )
    else:
        figure.add_annotation(
            text="no finite value to draw", showarrow=False, xref="paper", yref="paper"
        )
    _add_lines(figure, lines, horizontal=False)
    figure.update_xaxes(title=axis_title(array))
    figure.update_yaxes(title="count")
    figure.update_layout(bargap=0.02)
    return _layout(figure, _subtitle(heading, notes), height)


def separation_figure(
    rms: BlobArray,
    *,
    lines: Sequence[ValueLine] = (),
    title: str = "Separation RMS of star pairs",
    height: int = 380,
) -> go.Figure:
    """The AMx distribution: the pairs' separation RMS with the measured value and the spec
    thresholds (``lines``, in the array's unit) as vertical lines."""
    return histogram_figure(rms, lines=lines, title=title, height=height)


def scatter_figure(x: BlobArray, y: BlobArray, *, height: int = 380) -> go.Figure:
    """``y`` against ``x`` (one length), NaN pairs left out, at most ``MAX_POINTS`` drawn.

    Raises:
        BlobPlotError: arrays of different lengths, or no finite pair.
    """
    xs, ys, notes = _points(x, y)
    figure = go.Figure(_trace(xs, ys, _hover(x, "x", x.unit) + "<br>" + _hover(y, "y", y.unit)))
    figure.update_xaxes(title=axis_title(x))
    figure.update_yaxes(title=axis_title(y))
    return _layout(figure, _subtitle(html.escape(f"{y.name} vs {x.name}"), notes), height)


def default_pair(content: BlobContent) -> tuple[str, str] | None:
    """The (x, y) arrays a scatter of ``content`` starts with: magnitude and RMS when it has
    them, else the first two arrays of one length."""
    stars = find_star_rms([content])
    if stars is not None:
        return stars[0].name, stars[1].name
    for i, first in enumerate(content.arrays):
        for second in content.arrays[i + 1 :]:
            if first.size == second.size:
                return first.name, second.name
    return None
