"""Comparing a head build (a PR) with its baseline builds, noise-aware.

The baseline's spread is estimated from its builds (up to ten on the target branch), not
guessed: a head value is *within noise* when it lies within ``noise_k`` standard deviations of
the baseline mean (or under the metric's floor), *regressed*/*improved* beyond that, in the
metric's direction, and *unchanged* when equal.  With fewer than two baseline builds there is
no spread to speak of; then only a change of more than ``fallback_pct`` % counts.  A head
without a value (NaN, or the metric not measured) where the baseline has values is *missing*:
a build that stops computing a KPM must not pass as within noise.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from .model import Direction


class Outcome(enum.StrEnum):
    REGRESSED = "regressed"
    MISSING = "missing"
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    WITHIN_NOISE = "within_noise"

    @property
    def rank(self) -> int:
        """Worst first: regressed, missing, improved, within noise, unchanged."""
        return _RANK[self]


_RANK = {
    Outcome.REGRESSED: 0,
    Outcome.MISSING: 1,
    Outcome.IMPROVED: 2,
    Outcome.WITHIN_NOISE: 3,
    Outcome.UNCHANGED: 4,
}


@dataclass(frozen=True, slots=True)
class Comparison:
    outcome: Outcome
    base_mean: float | None
    base_std: float | None
    base_n: int
    head_value: float | None
    delta: float | None
    delta_pct: float | None
    delta_sigma: float | None


def compare_values(
    base: np.ndarray,
    head: float | None,
    direction: Direction,
    *,
    noise_k: float = 3.0,
    min_abs: float = 0.0,
    min_pct: float = 0.0,
    fallback_pct: float = 5.0,
) -> Comparison:
    """Compare one metric's head value with its baseline values (NaNs ignored).

    A head without a value is *missing* when the baseline has values; a baseline without
    values compares as *within noise* with null deltas: there is nothing to say.
    """
    finite = base[np.isfinite(base)] if base.size else base
    n = int(finite.size)
    if head is None or not math.isfinite(head) or n == 0:
        mean = float(finite.mean()) if n else None
        std = float(finite.std(ddof=1)) if n >= 2 else None
        outcome = Outcome.MISSING if n and _finite(head) is None else Outcome.WITHIN_NOISE
        return Comparison(outcome, mean, std, n, _finite(head), None, None, None)
    mean = float(finite.mean())
    std = float(finite.std(ddof=1)) if n >= 2 else None
    delta = head - mean
    delta_pct = 100.0 * delta / abs(mean) if mean != 0 else None
    delta_sigma = delta / std if std else None
    if delta == 0:
        outcome = Outcome.UNCHANGED
    elif abs(delta) <= min_abs or (delta_pct is not None and abs(delta_pct) <= min_pct):
        outcome = Outcome.WITHIN_NOISE
    elif std is not None and std > 0:
        outcome = (
            Outcome.WITHIN_NOISE if abs(delta) <= noise_k * std else _direction(delta, direction)
        )
    elif std == 0.0:  # a perfectly stable baseline: any change is real
        outcome = _direction(delta, direction)
    else:
        big = delta_pct is None or abs(delta_pct) > fallback_pct
        outcome = _direction(delta, direction) if big else Outcome.WITHIN_NOISE
    return Comparison(outcome, mean, std, n, head, delta, delta_pct, delta_sigma)


def _direction(delta: float, direction: Direction) -> Outcome:
    if direction is Direction.NONE:
        return Outcome.REGRESSED  # any change of a metric without a better side is suspect
    worse = delta > 0 if direction is Direction.LOWER else delta < 0
    return Outcome.REGRESSED if worse else Outcome.IMPROVED


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
