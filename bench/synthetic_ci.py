"""Seeded synthetic CI histories with known level shifts, for the change-point benchmarks and tests.

A history is one metric on one branch: a level (any positive unit), per-build noise of standard
deviation ``sigma`` (Gaussian, Student t with 5 degrees of freedom, or AR(1) with φ in
[0.1, 0.3]), isolated outliers of 5–20 σ (at least 3 builds apart; one in ten comes as a pair),
missing builds (single ones and runs of 3–15), optional slow drifts (a linear trend, a ramp over
100–300 builds, or a slow wander; 1–3 σ in all) and steps of 1–5 σ at least ``MIN_GAP`` builds
apart. Each history carries its true change points, so it can be written in the cpd tool's
"hidden" format.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MIN_GAP = 60  # builds between two steps, and from the first build to a step
END_GAP = 70  # builds after the last step (the online check looks up to 64 builds on)
STEP_SIGMA = (1.0, 5.0)
NOISE_KINDS = ("gauss", "gauss", "student", "ar1")
DRIFT_KINDS = ("linear", "ramp", "wander")


@dataclass(frozen=True, slots=True)
class Step:
    """A true change: first build of the new level and its size in noise units (signed)."""

    index: int
    shift_sigma: float


@dataclass(frozen=True, slots=True)
class History:
    """One labelled synthetic series (``None`` = a build without a value)."""

    name: str
    values: list[float | None]
    steps: tuple[Step, ...]
    sigma: float
    noise: str
    drift: str

    @property
    def change_points(self) -> list[int]:
        return [s.index for s in self.steps]

    def as_json(self) -> dict[str, Any]:
        """The cpd tool's hidden-set record."""
        return {
            "name": self.name,
            "values": self.values,
            "change_points": self.change_points,
            "sigma": self.sigma,
            "noise": f"{self.noise}/{self.drift}",
            "changes": [{"index": s.index, "shift_sigma": s.shift_sigma} for s in self.steps],
        }


def _noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Unit-variance noise of one kind."""
    if kind == "student":
        return rng.standard_t(5, n) / math.sqrt(5 / 3)
    if kind == "ar1":
        phi = rng.uniform(0.1, 0.3)
        eps = rng.normal(0.0, math.sqrt(1 - phi * phi), n)
        out = np.empty(n)
        prev = rng.normal()
        for i in range(n):
            prev = phi * prev + eps[i]
            out[i] = prev
        return out
    return rng.normal(0.0, 1.0, n)


def _drift(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """A slow, smooth level change in noise units (at most ~0.03 σ per build)."""
    t = np.arange(n, dtype=float)
    size = float(rng.uniform(1.0, 3.0) * rng.choice([-1.0, 1.0]))
    if kind == "linear":
        return size * t / n
    if kind == "ramp":
        length = int(rng.integers(100, 301))
        start = int(rng.integers(0, max(1, n - length)))
        return size * np.clip((t - start) / length, 0.0, 1.0)
    period = rng.uniform(max(300.0, n / 2), max(600.0, 2.0 * n))
    phase = rng.uniform(0, 2 * math.pi)
    return 0.5 * abs(size) * np.sin(2 * math.pi * t / period + phase)


def _step_positions(rng: np.random.Generator, n: int, count: int) -> list[int]:
    """Up to ``count`` step indices, ``MIN_GAP`` apart and ``END_GAP`` from the end."""
    positions: list[int] = []
    for _ in range(20 * count):
        if len(positions) == count:
            break
        p = int(rng.integers(MIN_GAP, n - END_GAP))
        if all(abs(p - q) >= MIN_GAP for q in positions):
            positions.append(p)
    return sorted(positions)


def make_history(
    seed: int,
    n: int,
    *,
    max_steps: int = 4,
    drift: bool | None = None,
    noise: str | None = None,
    outliers: bool = True,
    gaps: bool = True,
) -> History:
    """One history of ``n`` builds; ``drift=None`` draws it (30 %); ``max_steps=0``: no step."""
    rng = np.random.default_rng(seed)
    kind = noise or str(rng.choice(NOISE_KINDS))
    level = float(10 ** rng.uniform(0, 4))
    sigma = level * float(rng.uniform(0.005, 0.05))
    signal = _noise(rng, kind, n)
    has_drift = bool(rng.random() < 0.3) if drift is None else drift
    drift_kind = str(rng.choice(DRIFT_KINDS)) if has_drift else "none"
    if has_drift:
        signal += _drift(rng, drift_kind, n)
    count = int(rng.integers(0, max_steps + 1)) if max_steps else 0
    count = min(count, max(0, (n - MIN_GAP - END_GAP) // MIN_GAP))
    steps = []
    for p in _step_positions(rng, n, count):
        shift = float(rng.uniform(*STEP_SIGMA) * rng.choice([-1.0, 1.0]))
        signal[p:] += shift
        steps.append(Step(p, round(shift, 4)))
    if outliers:
        spikes = np.flatnonzero(rng.random(n) < rng.uniform(0.0, 0.02))
        spikes = spikes[np.diff(spikes, prepend=-4) > 3]  # isolated
        for spike in spikes:
            size = rng.uniform(5, 20) * (1.0 if rng.random() < 0.8 else -1.0)
            width = 2 if rng.random() < 0.1 else 1
            signal[spike : spike + width] += size
    values: list[float | None] = [level + sigma * float(v) for v in signal]
    if gaps:
        for missing in np.flatnonzero(rng.random(n) < rng.uniform(0.0, 0.05)):
            values[missing] = None
        for _ in range(int(rng.integers(0, 3))):
            start, length = int(rng.integers(0, n)), int(rng.integers(3, 16))
            values[start : start + length] = [None] * len(values[start : start + length])
    return History(f"ci_{seed:06d}", values, tuple(steps), sigma, kind, drift_kind)


def make_set(
    seed: int, count: int, n_range: tuple[int, int] = (200, 1000), **options: Any
) -> list[History]:
    """``count`` histories with lengths drawn from ``n_range`` (inclusive)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(n_range[0], n_range[1] + 1, count)
    return [make_history(seed * 100_003 + i, int(n), **options) for i, n in enumerate(lengths)]


def write_hidden(histories: list[History], directory: Path) -> None:
    """Write ``histories`` as the cpd tool's hidden set (one JSON file each)."""
    directory.mkdir(parents=True, exist_ok=True)
    for h in histories:
        (directory / f"{h.name}.json").write_text(json.dumps(h.as_json()))
