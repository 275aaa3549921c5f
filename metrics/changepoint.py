"""Change points: persistent shifts in the level of one metric's history. Pure (numpy only).

A history is one metric's values over the builds of one branch and dataset, oldest first;
``None``, NaN or ±inf is a build without a value. An index is the 0-based position, missing
builds counted, of the first build with a value after a change.

Algorithm (parameters in ``Tuning``; tests are in noise units):

1. Noise: σ = MAD of first differences / √2 (blind to steps and spikes); the ratio of lag-2 to
   lag-1 difference variance gives the autocorrelation φ; means are tested against the
   long-run deviation σ·√((1+φ)/(1−φ)).
2. Outliers: each value is clipped to ±``outlier_sigma`` σ around the median of the 5 builds
   centred on it: a lone spike, or a pair, cannot make a level.
3. Candidates: a multiscale MOSUM, the t of the means of up to G builds before and after each
   position (G in ``scales``; near the end, what exists after); the peak of each excursion
   above ``candidate_threshold``, one per ``min_inner`` builds.
4. Pruning, on each candidate's neighbouring segments: the two-sample t (``window`` builds
   each side at most) must reach ``threshold``; a new last segment shorter than ``confirm``
   needs only ``tail_threshold`` but all its builds ``confirm_sigma`` σ beyond the old level
   (so a step is reported 3–4 builds after it lands). Drift guard: the jump between lines
   fitted on each side (``trend_window`` builds) must reach ``drift_threshold`` and the step
   must fit better than any of ``ramps`` (a gradual change through the point). Both t are
   divided by the fits' residual spread where it exceeds the noise, so a history that wanders
   needs bigger shifts. The weakest failing candidates go first and the rest are tested again;
   survivors move to their strongest split (±``refine``) and are tested once more.
5. Floors: a change smaller than ``min_abs`` (metric units) or ``min_pct`` (% of the level
   before) fails like a weak one (its neighbours then see one segment).

Drifts: a linear drift of 2–8 σ over 1000 builds yields a change in 7–15 % of histories, a
ramp of 2.5 σ over 100 builds in ~15 %, of 4 σ over 150 in ~3 %; a wave of ±1 σ over 300
builds often does (bench/detect_quality.py and tests/test_changepoint.py measure these).

Windows and incremental use: a decision about a change at i reads only builds within
``settle_builds()`` of i, apart from the noise estimate. So a caller may run the detector on
the last N builds (bounded work per new build), with ``index_offset=len(history) - N`` and
``noise=estimate_noise(history)`` (cache it: it changes slowly), and gets the change points of
a full run for every change at least ``settle_builds()`` after the window's start. Without
``noise`` the window's own estimate is used, and only changes near a threshold can differ.
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
# Ramps a step must out-fit: from 16 to 128 builds each side of the change, 64 in all or more.
_RAMPS = tuple((a, b) for a in (16, 32, 64, 128) for b in (16, 32, 64, 128) if a + b >= 64)


@dataclass(frozen=True, slots=True)
class Tuning:
    """Detector parameters (the defaults are the benchmarked ones)."""

    threshold: float = 5.0  # two-sample t of a change, in long-run noise units
    tail_threshold: float = 4.0  # the same for a new last segment shorter than ``confirm``
    drift_threshold: float = 3.0  # t of the jump between local linear trends
    candidate_threshold: float = 4.0  # MOSUM screening
    scales: tuple[int, ...] = (4, 8, 16, 32, 64, 128)  # MOSUM half-widths, builds
    window: int = 200  # builds each side that test and measure a change
    min_segment: int = 3  # builds in the first and last segment (the last may be new)
    min_inner: int = 6  # builds between two changes
    confirm: int = 8  # a shorter segment must lie wholly beyond the other level …
    confirm_sigma: float = 1.0  # … by this many σ
    outlier_sigma: float = 3.0  # clip beyond this many σ from the local median
    max_phi: float = MAX_PHI  # cap on the lag-1 autocorrelation estimate
    refine: int = 64  # builds a survivor may move when re-located
    trend_window: int = 120  # builds each side for the drift guard (0: ``window``)
    trend_min: int = 10  # builds a side needs for its own trend in the drift guard
    ramps: tuple[tuple[int, int], ...] = _RAMPS  # builds before/after c of gradual changes …
    ramp_margin: float = 0.0  # … by this much (RSS, noise units²)


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


def _mad_sd(v: FloatArray) -> tuple[float, float]:
    """Median and robust standard deviation (MAD; the mean absolute deviation if that is 0)."""
    if v.size == 0:
        return 0.0, 0.0
    med = float(np.median(v))
    dev = np.abs(v - med)
    sd = _MAD_TO_SD * float(np.median(dev))
    return med, sd if sd > 0 else _MEAN_ABS_TO_SD * float(dev.mean())


def _noise_of(y: FloatArray, max_phi: float) -> Noise:
    d1 = np.diff(y)
    med1, sd1 = _mad_sd(d1)
    if sd1 <= 0:
        return Noise(0.0, 0.0)
    phi = 0.0
    if y.size >= 30:
        # Lag-2 over lag-1 difference variance is 1 + φ; clipped at 3 robust σ, a step or a
        # spike weighs little and the ratio stays unbiased.
        d2 = y[2:] - y[:-2]
        med2, sd2 = _mad_sd(d2)
        v1 = float(np.mean(np.clip(d1 - med1, -3 * sd1, 3 * sd1) ** 2))
        v2 = float(np.mean(np.clip(d2 - med2, -3 * sd2, 3 * sd2) ** 2))
        phi = min(max(v2 / v1 - 1.0, 0.0), max_phi) if v1 > 0 else 0.0
    sigma = sd1 / math.sqrt(2.0 * (1.0 - phi))
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
    """Peaks of MOSUM excursions over all scales, one per cluster closer than ``min_inner``."""
    n, m = z.size, t.min_segment
    k = np.arange(m, n - m + 1)
    g = np.array([g for g in t.scales if g < n] or [n])[:, None]
    nl, nr = np.minimum(g, k), np.minimum(g, n - k)
    d = np.abs((s[k + nr] - s[k]) / nr - (s[k] - s[k - nl]) / nl) / np.sqrt(1 / nl + 1 / nr)
    flat = d.ravel()
    idx = np.flatnonzero(flat >= t.candidate_threshold)
    if idx.size == 0:
        return np.empty(0, dtype=np.intp)
    # Excursions: runs of consecutive positions on one scale; keep each one's peak.
    breaks = (np.diff(idx) > 1) | (np.diff(idx // k.size) != 0)
    run = np.concatenate(([0], np.cumsum(breaks)))
    order = np.lexsort((flat[idx], run))
    peaks = idx[order[np.flatnonzero(np.diff(np.concatenate((run[order], [-1]))) != 0)]]
    # One candidate per cluster (closer than ``min_inner``): the strongest.
    pos: IntArray = k[peaks % k.size]
    stat: FloatArray = flat[peaks]
    order = np.lexsort((-stat, pos))
    pos, stat = pos[order], stat[order]
    keep: list[int] = []
    for i in range(pos.size):
        if keep and pos[i] - pos[keep[-1]] < t.min_inner:
            if stat[i] > stat[keep[-1]]:
                keep[-1] = i
        else:
            keep.append(i)
    return pos[keep]


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
    """Drift guard: the t of the jump at c between lines fitted on [lo, c) and [c, hi) (flat
    on a side shorter than ``trend_min``), and the fits' residual scale (z units)."""
    level, var, rss = [], [], []
    dof: FloatArray = np.full(c.shape, -2.0)
    for a, b, n in ((lo, c, c - lo), (c, hi, hi - c)):
        m, su, suu, sz, suz = _side_sums(f.sums, a, b, c)
        ubar, zbar = su / m, sz / m
        sxx, sxy = suu - su * ubar, suz - su * zbar
        sloped = (n >= t.trend_min) & (sxx > 0)
        slope = np.where(sloped, sxy / np.where(sloped, sxx, 1.0), 0.0)
        level.append(zbar - slope * ubar)  # the line's value at c
        var.append(1 / m + np.where(sloped, ubar * ubar / np.where(sloped, sxx, 1.0), 0.0))
        rss.append((f.sums.szz[b] - f.sums.szz[a]) - sz * zbar - slope * sxy)
        dof = dof + n - sloped
    scale = np.sqrt(np.maximum((rss[0] + rss[1]) / np.maximum(dof, 1.0), 0.0))
    return (level[1] - level[0]) / np.sqrt(var[0] + var[1]), scale


def _gain(
    base: list[FloatArray], sg: FloatArray, sgg: FloatArray, sug: FloatArray, sgz: FloatArray
) -> FloatArray:
    """RSS drop from adding a regressor g to [1, u]: <g, z>² / <g, g>, both projected off
    [1, u]. ``base`` is n, Σu, Σu², Σz, Σuz and the determinant of [1, u]."""
    n, su, suu, sz, suz, det = base
    gz = sgz - (sg * (suu * sz - su * suz) + sug * (n * suz - su * sz)) / det
    gg = sgg - (sg * (suu * sg - su * sug) + sug * (n * sug - su * sg)) / det
    return np.where(gg > 1e-12, gz * gz / np.where(gg > 1e-12, gg, 1.0), 0.0)


def _ramp_excess(c: IntArray, lo: IntArray, hi: IntArray, f: _Frame, t: Tuning) -> FloatArray:
    """How much better a step at c fits [lo, hi) than the best of ``ramps`` through c, each
    over a common linear trend: RSS(best ramp) - RSS(step), z units². Negative: gradual."""
    p = f.sums
    base = _side_sums(p, lo, hi, c)
    det = base[0] * base[2] - base[1] ** 2
    base.append(np.where(det > 0, det, np.inf))
    nr, sur, _, szr, _ = _side_sums(p, c, hi, c)
    step = _gain(base, nr, nr, sur, szr)
    # All ramps at once, as (candidates, ramps) arrays; g = (u + before) / length on the
    # ramp, 1 after it.
    before, after = (np.array(side)[None, :] for side in zip(*t.ramps, strict=True))
    length = (before + after).astype(float)
    c2, lo2, hi2 = c[:, None], lo[:, None], hi[:, None]
    a, b = np.clip(c2 - before, lo2, hi2), np.clip(c2 + after, lo2, hi2)
    nm, sum_, suum, szm, suzm = _side_sums(p, a, b, c2)
    n1, su1, _, sz1, _ = _side_sums(p, b, np.broadcast_to(hi2, b.shape), c2)
    sg = (sum_ + before * nm) / length + n1
    sgg = (suum + 2 * before * sum_ + before * before * nm) / length**2 + n1
    sug = (suum + before * sum_) / length + su1
    sgz = (suzm + before * szm) / length + sz1
    best: FloatArray = _gain([v[:, None] for v in base], sg, sgg, sug, sgz).max(axis=1)
    return step - best


def _strengths(
    c: IntArray, prev: IntArray, nxt: IntArray, f: _Frame, t: Tuning, guards: bool = True
) -> FloatArray:
    """min(t / threshold, jump-t / drift_threshold) of a change at each c between its
    neighbours prev and nxt (< 1 fails)."""
    z, p = f.z, f.sums
    n = z.size
    lo, hi = np.maximum(prev, c - t.window), np.minimum(nxt, c + t.window)
    nl, nr = (c - lo).astype(float), (hi - c).astype(float)
    ml, mr = (p.s[c] - p.s[lo]) / nl, (p.s[hi] - p.s[c]) / nr
    tstat = (mr - ml) / np.sqrt(1 / nl + 1 / nr)
    tw = t.trend_window or t.window
    jump, spread = _trend_jump(c, np.maximum(prev, c - tw), np.minimum(nxt, c + tw), f, t)
    # A history that wanders (random walk, sawtooth) needs bigger shifts: divide by the
    # trend fits' residual spread where it exceeds the noise (1 in z units).
    tstat, jump = tstat / np.maximum(spread, 1.0), jump / np.maximum(spread, 1.0)
    jump = np.where(np.sign(jump) == np.sign(tstat), np.abs(jump), 0.0)
    strong = np.flatnonzero(
        np.minimum(np.abs(tstat) / t.tail_threshold, jump / t.drift_threshold) >= 1
    )
    if guards and t.ramps and strong.size:
        # Gradual changes: drop a jump that a ramp through c fits as well as the step.
        cs, ps, ns = c[strong], prev[strong], nxt[strong]
        excess = _ramp_excess(cs, np.maximum(ps, cs - tw), np.minimum(ns, cs + tw), f, t)
        ramp = excess < t.ramp_margin * np.maximum(spread[strong], 1.0) ** 2
        jump[strong[ramp]] = 0.0
    # A new last segment, still short, passes a lower bar: it must also clear ``confirm``.
    tail = (nxt == n) & (nr < t.confirm)
    bar = np.where(tail, t.tail_threshold, t.threshold)
    strength = np.minimum(np.abs(tstat) / bar, jump / t.drift_threshold)
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
        prev = np.concatenate(([0], c[:-1]))
        nxt = np.concatenate((c[1:], [f.z.size]))
        strength = _strengths(c, prev, nxt, f, t)
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
    """Move each change to its strongest position between its neighbours (±``refine``)."""
    n, m = f.z.size, t.min_segment
    prev = np.concatenate(([0], c[:-1]))
    nxt = np.concatenate((c[1:], [n]))
    first = np.maximum(prev + m, c - t.refine)
    count = np.maximum(np.minimum(nxt - m, c + t.refine) - first + 1, 0)
    group = np.repeat(np.arange(c.size), count)
    k = first[group] + np.arange(group.size) - np.repeat(np.cumsum(count) - count, count)
    strength = _strengths(k, prev[group], nxt[group], f, t, guards=False)
    strength -= 1e-9 * np.abs(k - c[group])  # ties: stay
    order = np.lexsort((strength, group))
    best = order[np.flatnonzero(np.diff(np.concatenate((group[order], [-1]))) != 0)]
    out = c.copy()
    out[group[best]] = k[best]
    return out


def _frame(x: FloatArray, noise: Noise, t: Tuning, min_abs: float, min_pct: float) -> _Frame:
    centre = float(x.mean())  # any offset; the mean is cheap
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
        ValueError: values not one-dimensional.
        TypeError: an unknown tuning name.
    """
    t = Tuning(**tuning)
    direction = Direction(direction)
    x, pos = _finite(values)
    noise = noise or _noise_of(x, t.max_phi)
    sigma = noise.sigma
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
        verdict = _verdict(delta, direction)
        index = int(pos[k]) + index_offset
        out.append(Change(index, before, after, delta, pct, delta / sigma, sigma, verdict))
    return out


def change_points(values: Values, **tuning: Any) -> list[int]:
    """Indices of the first build after each change (the ``specwatch detect`` contract)."""
    t = Tuning(**tuning)
    x, pos = _finite(values)
    return [int(pos[k]) for k in _locate(x, _noise_of(x, t.max_phi), t, 0.0, 0.0)]


def detect_many(series: Sequence[Values], **tuning: Any) -> list[list[int]]:
    """``change_points`` of many histories (one parameter set)."""
    return [change_points(v, **tuning) for v in series]
