"""Sparklines: a series as a tiny SVG image (a ``data:`` URI for ``html.Img``).

Pure and cheap (no plotly): an overview draws hundreds of them at once.  The SVG holds
numbers and fixed words only, never text from a job or a definition, so nothing in it needs
escaping, and an image's script never runs anyway (an ``<img>`` SVG is inert).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence

WIDTH, HEIGHT, PAD = 120, 28, 3.0
LINE = "#2458c6"
LAST = {"ok": "#1f7a3a", "warn": "#8a5a00", "bad": "#b42318", "neutral": "#2458c6"}


def sparkline_paths(
    values: Sequence[float | None],
    *,
    width: float = WIDTH,
    height: float = HEIGHT,
    pad: float = PAD,
    low: float | None = None,
    high: float | None = None,
) -> list[list[tuple[float, float]]]:
    """The points of each unbroken run of ``values`` in image coordinates (y grows down).

    None, NaN and infinities are gaps that split the line.  The y range spans the finite
    values (and ``low``/``high`` when given); a flat series is drawn through the middle.
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return []
    bottom = min([*finite, *([low] if low is not None and math.isfinite(low) else [])])
    top = max([*finite, *([high] if high is not None and math.isfinite(high) else [])])
    span = top - bottom
    step = (width - 2 * pad) / max(len(values) - 1, 1)

    def y_of(value: float) -> float:
        if span <= 0:
            return height / 2
        return pad + (top - value) / span * (height - 2 * pad)

    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for i, value in enumerate(values):
        if value is None or not math.isfinite(value):
            if current:
                runs.append(current)
                current = []
            continue
        x = pad + i * step if len(values) > 1 else width / 2
        current.append((round(x, 1), round(y_of(float(value)), 1)))
    if current:
        runs.append(current)
    return runs


def sparkline_svg(
    values: Sequence[float | None],
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
    tone: str = "neutral",
    low: float | None = None,
    high: float | None = None,
) -> str:
    """An SVG document: the line (one subpath per unbroken run, a lone point as a dot) and
    the last finite value as a dot coloured by ``tone`` (ok, warn, bad, neutral); ``low``
    and ``high`` widen the y range (e.g. 0 and 1 for a fraction)."""
    runs = sparkline_paths(values, width=width, height=height, low=low, high=high)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
    ]
    lines = [run for run in runs if len(run) > 1]
    if lines:
        # "M x,y x,y …": the pairs after a moveto are linetos (SVG's implicit command).
        path = "".join("M" + " ".join(f"{x:g},{y:g}" for x, y in run) for run in lines)
        parts.append(
            f'<path d="{path}" fill="none" stroke="{LINE}" stroke-width="1.3" '
            'stroke-linejoin="round" stroke-linecap="round"/>'
        )
    for run in runs:
        if len(run) == 1:  # a point between two gaps: a line of one point draws nothing
            x, y = run[0]
            parts.append(f'<circle cx="{x:g}" cy="{y:g}" r="1.2" fill="{LINE}"/>')
    if runs:
        x, y = runs[-1][-1]
        colour = LAST.get(tone, LAST["neutral"])
        parts.append(f'<circle cx="{x:g}" cy="{y:g}" r="2.4" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


def sparkline_uri(
    values: Sequence[float | None],
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
    tone: str = "neutral",
    low: float | None = None,
    high: float | None = None,
) -> str:
    """``sparkline_svg`` as a ``data:image/svg+xml;base64,…`` URI (the CSP allows ``data:``
    images)."""
    svg = sparkline_svg(values, width=width, height=height, tone=tone, low=low, high=high)
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")
