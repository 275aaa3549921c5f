"""Change points: persistent shifts in the level of one metric's history. Pure (numpy only).

A history is one metric's values over the builds of one branch and dataset, oldest first;
``None`` or NaN is a build without a value. An index is the 0-based position, missing builds
counted, of the first build after a change.

Algorithm:

1. Noise. σ is a robust scale of first differences (MAD / √2, blind to steps and outliers);
   comparing it with the scale of lag-2 differences gives the lag-1 autocorrelation φ, and
   tests use the long-run deviation σ·√((1+φ)/(1−φ)).
2. Outliers. Each value is clipped to ±``outlier_sigma`` σ around the median of the five
   builds centred on it, so a lone spike (or a pair) cannot look like a level.
3. Candidates. A moving-sum (MOSUM) statistic, the t-like difference of the means of up to G
   builds before and after each position, for G in ``scales``; the peak of each excursion
   above ``candidate_threshold`` is a candidate. Near the end the window after shrinks to what
   exists, so a step is seen after a few builds (the online case).
4. Pruning. Each candidate is tested against its neighbours' segments, at most ``window``
   builds each side: the two-sample t must reach ``threshold``, and the jump over a common
   local linear trend must reach ``drift_threshold`` (a slow drift has no jump); a segment
   shorter than ``confirm`` builds must lie wholly beyond the other level. The weakest failing
   candidates go first, then the test is repeated; survivors are re-located and tested again.
5. The floor: a change smaller than ``min_abs`` (metric units) or ``min_pct`` (% of the level
   before) is removed like a failing one.

Windows and incremental use: every decision about a change at i reads only builds within
``window + max(scales)`` of i, apart from the noise estimate. So a caller may run the detector on
the last N builds only (bounded work per new build), pass ``index_offset=len(history) - N``
and ``noise=estimate_noise(history)`` (cached: it changes slowly), and gets the change points a
full run finds, for changes at least ``settle_builds()`` after the window's start. Without
``noise`` the window's own estimate is used: results differ only for changes within a few % of
a threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from specwatch.metrics.model import Direction

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
Values = Sequence[float | None] | npt.NDArray[Any]

_MAD_TO_SD = 1.482602218505602
_MEAN_ABS_TO_SD = math.sqrt(math.pi / 2)
MAX_PHI = 0.5


@dataclass(frozen=True, slots=True)
class Tuning:
    """Detector parameters (the defaults are the benchmarked ones)."""

    threshold: float = 5.0  # two-sample t of a change, in long-run noise units
    drift_threshold: float = 3.0  # t of the jump over a common local linear trend
    candidate_threshold: float = 3.5  # MOSUM screening
    scales: tuple[int, ...] = (4, 8, 16, 32, 64, 128)  # MOSUM half-widths, builds
    window: int = 200  # builds each side that test and measure a change
    min_segment: int = 3  # builds in the first and last segment (the last may be new)
    min_inner: int = 6  # builds between two changes
    confirm: int = 8  # a shorter segment must lie wholly beyond the other level …
    confirm_sigma: float = 1.0  # … by this many σ
    outlier_sigma: float = 3.0  # clip beyond this many σ from the local median
    max_phi: float = MAX_PHI  # cap on the lag-1 autocorrelation estimate
    refine: int = 64  # builds a survivor may move when re-located
    trend_min: int = 10  # builds a side needs for its own trend in the drift guard
    residual_scale: bool = True  # tests use max(noise, spread around the local trends)


@dataclass(frozen=True, slots=True)
class Noise:
    """Noise of one history: ``sigma`` per build, ``long_run`` for means of many builds."""

    sigma: float
    long_run: float


@dataclass(frozen=True, slots=True)
class Change:
    """One persistent level shift."""

    index: int  # first build after the change (0-based, missing builds counted)
    before: float  # robust level before (median of the segment, at most `window` builds)
    after: float  # level after
    delta: float  # after - before, in the series' unit
    delta_pct: float | None  # 100 * delta / |before| (None if before == 0)
    delta_sigma: float  # delta / sigma
    sigma: float  # noise per build, in the series' unit
    verdict: str  # "worse" | "better" | "changed" (Direction.NONE, or delta == 0)


def settle_builds(tuning: Tuning | None = None) -> int:
    """Builds after a window's start from which its change points equal a full run's."""
    t = tuning or Tuning()
    return t.window + max(t.scales) + t.refine


def _finite(values: Values) -> tuple[FloatArray, IntArray]:
    """The present values and their positions."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError("values must be one-dimensional")
    pos = np.flatnonzero(np.isfinite(arr))
    return arr[pos], pos


def _mad_sd(v: FloatArray) -> float:
    if v.size == 0:
        return 0.0
    dev = np.abs(v - np.median(v))
    sd = _MAD_TO_SD * float(np.median(dev))
    return sd if sd > 0 else _MEAN_ABS_TO_SD * float(dev.mean())


def _noise_of(y: FloatArray, max_phi: float) -> Noise:
    s1 = _mad_sd(np.diff(y)) / math.sqrt(2)
    if s1 <= 0:
        return Noise(0.0, 0.0)
    phi = 0.0
    if y.size >= 30:
        s2 = _mad_sd(y[2:] - y[:-2]) / math.sqrt(2)
        phi = min(max((s2 / s1) ** 2 - 1.0, 0.0), max_phi)
    sigma = s1 / math.sqrt(1.0 - phi)
    return Noise(sigma, sigma * math.sqrt((1.0 + phi) / (1.0 - phi)))


def estimate_noise(values: Values, *, max_phi: float = MAX_PHI) -> Noise:
    """Robust per-build and long-run noise of a history (0 when constant or too short)."""
    return _noise_of(_finite(values)[0], max_phi)


def _despike(y: FloatArray, limit: float) -> FloatArray:
    """Clip each value to ±limit around the median of the 5 builds centred on it."""
    if y.size < 5:
        return y
    padded = np.pad(y, 2, mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 5)
    med = np.partition(windows, 2, axis=1)[:, 2]
    return np.clip(y, med - limit, med + limit)


def _candidates(z: FloatArray, s: FloatArray, t: Tuning) -> IntArray:
    """Peaks of MOSUM excursions over all scales (positions 1..n-1 of the right part)."""
    n, m = z.size, t.min_segment
    k = np.arange(m, n - m + 1)
    found = []
    for g in t.scales:
        nl, nr = np.minimum(g, k), np.minimum(g, n - k)
        d = np.abs((s[k + nr] - s[k]) / nr - (s[k] - s[k - nl]) / nl) / np.sqrt(1 / nl + 1 / nr)
        idx = np.flatnonzero(d >= t.candidate_threshold)
        if idx.size == 0:
            continue
        run = np.concatenate(([0], np.cumsum(np.diff(idx) > 1)))
        order = np.lexsort((d[idx], run))
        last = np.flatnonzero(np.diff(np.concatenate((run[order], [-1]))) != 0)
        found.append(k[idx[order[last]]])
        if g >= n:
            break
    if not found:
        return np.empty(0, dtype=np.intp)
    return np.unique(np.concatenate(found))


@dataclass(frozen=True, slots=True)
class _Sums:
    """Prefix sums of the clipped, standardised series for O(1) segment statistics."""

    s: FloatArray  # Σ z
    st: FloatArray  # Σ t
    stt: FloatArray  # Σ t²
    sty: FloatArray  # Σ t z
    szz: FloatArray  # Σ z²

    @classmethod
    def of(cls, z: FloatArray) -> _Sums:
        t = np.arange(z.size, dtype=float)
        zero = np.zeros(1)
        cum = [np.concatenate((zero, np.cumsum(a))) for a in (z, t, t * t, t * z, z * z)]
        return cls(*cum)


@dataclass(frozen=True, slots=True)
class _Frame:
    """One history in noise units: z = (clipped value - centre) / scale."""

    z: FloatArray
    sums: _Sums
    centre: float
    scale: float  # long-run noise, metric units
    sigma_z: float  # per-build noise in z units (<= 1)
    min_abs: float
    min_pct: float


def _side_sums(p: _Sums, a: IntArray, b: IntArray, c: IntArray) -> list[FloatArray]:
    """n, Σu, Σu², Σz, Σuz over [a, b) with u = t - c."""
    cf = c.astype(float)
    n = (b - a).astype(float)
    st, sz = p.st[b] - p.st[a], p.s[b] - p.s[a]
    su = st - n * cf
    suu = (p.stt[b] - p.stt[a]) - 2 * cf * st + n * cf * cf
    return [n, su, suu, sz, (p.sty[b] - p.sty[a]) - cf * sz]


def _trend_jump(
    c: IntArray, lo: IntArray, hi: IntArray, f: _Frame, t: Tuning
) -> tuple[FloatArray, FloatArray]:
    """Drift guard: the t of the jump at c between linear trends fitted on [lo, c) and
    [c, hi) (a slow drift has none), and the residual scale of that fit (z units).

    A side shorter than ``trend_min`` builds is taken as flat.
    """
    nl, sul, suul, szl, suzl = _side_sums(f.sums, lo, c, c)
    nr, sur, suur, szr, suzr = _side_sums(f.sums, c, hi, c)
    zero = np.zeros_like(nl)
    # Columns: 1, u on the left, u on the right, step (1 on the right).
    rows = [
        [nl + nr, sul, sur, nr],
        [sul, suul, zero, zero],
        [sur, zero, suur, sur],
        [nr, zero, sur, nr],
    ]
    mat = np.stack([np.stack(r, -1) for r in rows], 1)
    rhs = np.stack([szl + szr, suzl, suzr, szr], -1)
    for col, flat in ((1, nl < t.trend_min), (2, nr < t.trend_min)):
        mat[flat, col, :] = 0.0
        mat[flat, :, col] = 0.0
        mat[flat, col, col] = 1.0
        rhs[flat, col] = 0.0
    inv = np.linalg.inv(mat)
    beta = np.einsum("kij,kj->ki", inv, rhs)
    rss = (f.sums.szz[hi] - f.sums.szz[lo]) - np.einsum("ki,ki->k", beta, rhs)
    scale = np.sqrt(np.maximum(rss / np.maximum(nl + nr - 4.0, 1.0), 0.0))
    return beta[:, 3] / np.sqrt(np.maximum(inv[:, 3, 3], 1e-300)), scale


def _strengths(c: IntArray, f: _Frame, t: Tuning) -> FloatArray:
    """min(t / threshold, jump-t / drift_threshold) of each candidate (< 1 fails)."""
    z, p = f.z, f.sums
    n = z.size
    prev = np.concatenate(([0], c[:-1]))
    nxt = np.concatenate((c[1:], [n]))
    lo, hi = np.maximum(prev, c - t.window), np.minimum(nxt, c + t.window)
    nl, nr = (c - lo).astype(float), (hi - c).astype(float)
    ml, mr = (p.s[c] - p.s[lo]) / nl, (p.s[hi] - p.s[c]) / nr
    tstat = (mr - ml) / np.sqrt(1 / nl + 1 / nr)
    jump, spread = _trend_jump(c, lo, hi, f, t)
    if t.residual_scale:
        # A history that wanders between builds (random walk, sawtooth) needs bigger shifts:
        # scale by the trend fit's residual spread where it exceeds the noise (1 in z units).
        scale = np.maximum(spread, 1.0)
        tstat, jump = tstat / scale, jump / scale
    jump = np.where(np.sign(jump) == np.sign(tstat), np.abs(jump), 0.0)
    strength = np.minimum(np.abs(tstat) / t.threshold, jump / t.drift_threshold)
    inner = ((c - prev < t.min_inner) & (prev > 0)) | ((nxt - c < t.min_inner) & (nxt < n))
    strength = np.where((nl < t.min_segment) | (nr < t.min_segment) | inner, 0.0, strength)
    gap = t.confirm_sigma * f.sigma_z
    for i in np.flatnonzero((nl < t.confirm) | (nr < t.confirm)):
        # A short segment must lie wholly beyond the other side's level.
        up = 1.0 if mr[i] >= ml[i] else -1.0
        if nr[i] < t.confirm and (up * (z[c[i] : hi[i]] - ml[i])).min() < gap:
            strength[i] = 0.0
        if nl[i] < t.confirm and (up * (mr[i] - z[lo[i] : c[i]])).min() < gap:
            strength[i] = 0.0
    if f.min_abs > 0 or f.min_pct > 0:
        delta = np.abs(mr - ml) * f.scale
        base = np.abs(ml * f.scale + f.centre)
        small = (delta < f.min_abs) | ((base > 0) & (100 * delta < f.min_pct * base))
        strength = np.where(small, 0.0, strength)
    return strength


def _prune(c: IntArray, f: _Frame, t: Tuning) -> IntArray:
    """Drop failing candidates, weakest first (local minima of strength), until all pass."""
    while c.size:
        strength = _strengths(c, f, t)
        fail = strength < 1.0
        if not fail.any():
            break
        left = np.concatenate(([np.inf], strength[:-1]))
        right = np.concatenate((strength[1:], [np.inf]))
        drop = fail & (strength <= left) & (strength < right)
        if not drop.any():
            drop[int(np.argmin(strength))] = True
        c = c[~drop]
    return c


def _refine(c: IntArray, f: _Frame, t: Tuning) -> IntArray:
    """Move each change to the best split between its neighbours, within ±``refine`` builds."""
    n, m, s = f.z.size, t.min_segment, f.sums.s
    out = c.copy()
    for i in range(c.size):
        a = int(out[i - 1]) if i else 0
        b = int(c[i + 1]) if i + 1 < c.size else n
        k = np.arange(max(a + m, int(c[i]) - t.refine), min(b - m, int(c[i]) + t.refine) + 1)
        if k.size == 0:
            continue
        lo, hi = np.maximum(a, k - t.window), np.minimum(b, k + t.window)
        nl, nr = k - lo, hi - k
        d = np.abs((s[hi] - s[k]) / nr - (s[k] - s[lo]) / nl) / np.sqrt(1 / nl + 1 / nr)
        out[i] = k[int(np.argmax(d))]
    return out


def _frame(x: FloatArray, noise: Noise, t: Tuning, min_abs: float, min_pct: float) -> _Frame:
    centre = float(np.median(x))
    y = _despike(x, t.outlier_sigma * noise.sigma)
    z = (y - centre) / noise.long_run
    return _Frame(
        z, _Sums.of(z), centre, noise.long_run, noise.sigma / noise.long_run, min_abs, min_pct
    )


def _locate(x: FloatArray, noise: Noise, t: Tuning, min_abs: float, min_pct: float) -> IntArray:
    """Change indices into the present values ``x``."""
    if x.size < 2 * t.min_segment or noise.long_run <= 0 or not math.isfinite(noise.long_run):
        return np.empty(0, dtype=np.intp)
    f = _frame(x, noise, t, min_abs, min_pct)
    c = _prune(_candidates(f.z, f.sums.s, t), f, t)
    if c.size:
        c = _prune(np.unique(_refine(c, f, t)), f, t)
    return c


def _verdict(delta: float, direction: Direction) -> str:
    if direction is Direction.NONE or delta == 0:
        return "changed"
    return "worse" if (delta > 0) == (direction is Direction.LOWER) else "better"


def detect_changes(
    values: Values,
    *,
    direction: Direction = Direction.LOWER,
    min_abs: float = 0.0,
    min_pct: float = 0.0,
    noise: Noise | None = None,
    index_offset: int = 0,
    **tuning: Any,
) -> list[Change]:
    """Persistent level shifts of a history, oldest first.

    ``min_abs`` (metric units) and ``min_pct`` (% of the level before) are floors: a smaller
    change is not reported. ``noise`` overrides the history's own estimate (see the module
    docstring on windows); ``index_offset`` is added to every index. ``tuning`` overrides
    fields of ``Tuning``.

    Raises:
        ValueError: values not one-dimensional, or an unknown tuning name.
    """
    t = Tuning(**tuning)
    x, pos = _finite(values)
    noise = noise or _noise_of(x, t.max_phi)
    cps = [int(v) for v in _locate(x, noise, t, min_abs, min_pct)]
    bounds = [0, *cps, x.size]
    out = []
    for i, k in enumerate(cps):
        before = float(np.median(x[max(bounds[i], k - t.window) : k]))
        after = float(np.median(x[k : min(bounds[i + 2], k + t.window)]))
        delta = after - before
        pct = 100 * delta / abs(before) if before != 0 else None
        if abs(delta) < min_abs or (pct is not None and abs(pct) < min_pct):
            continue
        out.append(
            Change(
                index=int(pos[k]) + index_offset,
                before=before,
                after=after,
                delta=delta,
                delta_pct=pct,
                delta_sigma=delta / noise.sigma,
                sigma=noise.sigma,
                verdict=_verdict(delta, direction),
            )
        )
    return out


def change_points(values: Values, **tuning: Any) -> list[int]:
    """Indices of the first build after each change (the ``specwatch detect`` contract)."""
    t = Tuning(**tuning)
    x, pos = _finite(values)
    return [int(pos[k]) for k in _locate(x, _noise_of(x, t.max_phi), t, 0.0, 0.0)]


def detect_many(series: Sequence[Values], **tuning: Any) -> list[list[int]]:
    """``change_points`` of many histories (one parameter set)."""
    return [change_points(v, **tuning) for v in series]
