"""Astrometric repeatability KPMs of LPM-17 (AMx, ADx, AFx), as faro computes them.

faro (``utils/separations.py``, the AMx/ADx/AFx tasks of ``MatchedCatalogMeasurementTasks.py``):

- objects: :func:`~.selection.select_objects` with its defaults (median S/N ≥ 50, point sources,
  no flagged pixels, all isPrimary, ≥ 2 sources with finite PSF magnitudes), then the median
  PSF magnitude in ``[bright_mag_cut, faint_mag_cut)``;
- each object's mean position (mean unit vector), and every pair of objects whose mean
  positions are ``annulus_r ± width/2`` apart (``lower ≤ d < upper``, haversine distance);
- per pair, for each source of the first object, the distance to the *first* source of the
  second object in the same visit (both positions finite), in visit order;
- AMx: the median over pairs of the sample standard deviation (ddof 1) of those distances
  (pairs with at least 2 distances), in marcsec, with its histogram;
- ADx/AFx use, for pairs with at least 3 distances, the non-zero distances' absolute
  differences from their median; minus the median of all of them: ADx is the ``100 - AF``
  percentile of these signed values (marcsec) and AFx the percentage of absolute values above
  AD.  faro's ADx/AFx also need more than 2 sources in the selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import astropy.units as u
import numpy as np
from numpy.typing import NDArray

from .grouping import reduce_runs
from .pairs import annulus_pairs
from .result import KpmValue
from .selection import MatchedCatalog, ObjectSelection, select_objects
from .visits import VisitSources

ANNULUS_ARCMIN = {1: 5.0, 2: 20.0, 3: 200.0}
"""The pair separation D (arcmin) of AM1, AM2, AM3 (LPM-17, faro's ``annulus_r``)."""
AD_THRESHOLD = 20.0 * u.marcsec
"""faro's ``threshAD`` default (LPM-17 AD1/AD2 design)."""
AF_THRESHOLD = 10.0 * u.percent
"""faro's ``threshAF`` default (LPM-17 design)."""
_HISTOGRAM_CHUNK = 1 << 20


def histogram_bins(window: float = 30.0, count: int = 200) -> NDArray[np.float64]:
    """faro's AMx histogram edges: ``count + 1`` edges ``i * window / count`` (marcsec)."""
    return np.asarray(np.arange(count + 1) * (window / count), dtype=np.float64)


def histogram(values: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.int64]:
    """``np.histogram(values, edges)[0]`` for finite values, without sorting them.

    Each value's bin is guessed from the mean bin width, then corrected against the edges
    themselves (exact); values a few bins off fall back to a binary search.  By chunks, so
    that the temporaries stay small.
    """
    counts = np.zeros(max(len(edges) - 1, 0), dtype=np.int64)
    for start in range(0, len(values), _HISTOGRAM_CHUNK):
        counts += _histogram_chunk(values[start : start + _HISTOGRAM_CHUNK], edges)
    return counts


def _histogram_chunk(values: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.int64]:
    values = values[np.isfinite(values) & (values >= edges[0]) & (values <= edges[-1])]
    last = len(edges) - 2
    if last < 0 or len(values) == 0:
        return np.zeros(max(last + 1, 0), dtype=np.int64)
    width = (edges[-1] - edges[0]) / (last + 1)
    guess = np.clip(((values - edges[0]) // width if width > 0 else 0), 0, last).astype(np.intp)
    for _ in range(2):
        guess -= values < edges[guess]
        guess += (values >= edges[guess + 1]) & (guess < last)
    wrong = (values < edges[guess]) | ((values >= edges[guess + 1]) & (guess < last))
    if wrong.any():
        found = np.searchsorted(edges, values[wrong], side="right") - 1
        guess[wrong] = np.minimum(found, last)
    return np.bincount(guess, minlength=last + 1).astype(np.int64)


@dataclass(frozen=True)
class PairSeparations:
    """The separation statistics of the star pairs of one annulus.

    ``rms``: per pair with ≥ 2 shared visits, the sample standard deviation of its per-visit
    separations (marcsec), in no particular order.  ``deviations``: faro's ``calcSepOutliers``
    residuals minus their median (marcsec), what ADx and AFx read.  ``n_sources``: the
    sources of the objects the selection keeps (before the magnitude cut); ``n_objects`` the
    objects kept after it; ``n_pairs`` the pairs in the annulus.  ``reason``: why there is no
    RMS, if there is none.
    """

    rms: u.Quantity
    deviations: u.Quantity
    n_objects: int
    n_pairs: int
    n_sources: int
    reason: str | None


def pair_separations(
    catalog: MatchedCatalog,
    *,
    annulus_r_arcmin: float = 5.0,
    width_arcmin: float = 2.0,
    bright_mag_cut: float = 17.0,
    faint_mag_cut: float = 21.5,
    selection: ObjectSelection | None = None,
) -> PairSeparations:
    """Per-pair separation RMS and residuals for pairs ``annulus_r ± width/2`` arcmin apart."""
    selection = selection or ObjectSelection()
    groups = catalog.groups
    keep = select_objects(catalog, selection)
    n_sources = int(groups.sizes[keep].sum())
    mag = catalog.psf_mag
    median_mag = groups.reduce(mag, np.median, where=keep[groups.index] & np.isfinite(mag))
    with np.errstate(invalid="ignore"):
        keep &= (bright_mag_cut <= median_mag) & (median_mag < faint_mag_cut)
    objects = np.flatnonzero(keep)
    empty = np.zeros(0) * u.marcsec
    if len(objects) < 2:
        too_few = f"{len(objects)} objects pass the selection and magnitude cut; 2 are needed"
        return PairSeparations(empty, empty, len(objects), 0, n_sources, too_few)
    sources = VisitSources.build(groups, objects, catalog.visit, catalog.ra_rad, catalog.dec_rad)
    mean_ra, mean_dec = sources.mean_positions()
    annulus = np.deg2rad(
        np.array([annulus_r_arcmin - width_arcmin / 2, annulus_r_arcmin + width_arcmin / 2]) / 60
    )
    rms_parts: list[NDArray[np.float64]] = []
    residual_parts: list[NDArray[np.float64]] = []
    n_pairs = 0
    sample_std = partial(np.std, ddof=1)
    placed = np.flatnonzero(np.isfinite(mean_ra) & np.isfinite(mean_dec))
    for i, j in annulus_pairs(mean_ra[placed], mean_dec[placed], *map(float, annulus)):
        n_pairs += len(i)
        distance, per_pair = sources.distances(placed[i], placed[j])
        several = per_pair > 1
        values = distance[np.repeat(several, per_pair)]
        rms_parts.append(reduce_runs(values, per_pair[several], sample_std))
        residual_parts.append(_outlier_residuals(distance, per_pair))
    rms = np.concatenate(rms_parts) if rms_parts else np.zeros(0)
    del rms_parts
    # In place, the very product astropy's ``(rms * u.radian).to(u.marcsec)`` computes.
    rms *= u.radian.to(u.marcsec)
    deviations = np.concatenate(residual_parts) if residual_parts else np.zeros(0)
    del residual_parts
    # faro's ADx/AFx values, in place: (residuals - median(residuals)).to(u.marcsec).
    if len(deviations):
        deviations -= np.median(deviations)
    deviations *= u.radian.to(u.marcsec)
    reason: str | None = (
        None if len(rms) else f"no pair of the {len(objects)} objects shares 2 visits"
    )
    if n_pairs == 0:
        reason = f"no pair of the {len(objects)} selected objects is in the annulus"
    return PairSeparations(
        u.Quantity(rms, u.marcsec, copy=False),
        u.Quantity(deviations, u.marcsec, copy=False),
        len(objects),
        n_pairs,
        n_sources,
        reason,
    )


def _outlier_residuals(distance: NDArray[np.float64], per_pair: NDArray[np.intp]) -> Any:
    """faro's ``calcSepOutliers``: |d - median(d)| over non-zero d of pairs with ≥ 3 d (rad)."""
    pair_of = np.repeat(np.arange(len(per_pair), dtype=np.intp), per_pair)
    real = (per_pair[pair_of] >= 3) & (distance > 0)
    real_per_pair = np.bincount(pair_of[real], minlength=len(per_pair)).astype(np.intp)
    medians = reduce_runs(distance[real], real_per_pair, np.median)
    return np.abs(distance[real] - medians[pair_of[real]])


@dataclass(frozen=True)
class AstrometricRepeatability:
    """AMx (marcsec) and faro's histogram of the separation RMS (``bins`` edges, marcsec)."""

    amx: KpmValue
    bins: u.Quantity
    counts: NDArray[np.int64]


def amx(
    separations: PairSeparations, bins: NDArray[np.float64] | None = None
) -> AstrometricRepeatability:
    """AMx: the median separation RMS of the pairs, and the RMS histogram over ``bins``."""
    edges = histogram_bins() if bins is None else np.asarray(bins, dtype=np.float64)
    values = separations.rms.to_value(u.marcsec)
    counts = histogram(values, edges)
    if len(values) == 0:
        value = KpmValue.unmeasured(u.marcsec, separations.reason or "no star pairs")
    else:
        value = KpmValue(float(np.median(values)) * u.marcsec)
    return AstrometricRepeatability(value, edges * u.marcsec, counts)


def _measurable(separations: PairSeparations) -> bool:
    """faro needs more than 2 sources in the selection and more than 1 residual."""
    return separations.n_sources > 2 and len(separations.deviations) > 1


def adx(separations: PairSeparations, af_threshold: u.Quantity = AF_THRESHOLD) -> KpmValue:
    """ADx (marcsec): the ``100 - af_threshold`` percentile of faro's separation deviations."""
    if not _measurable(separations):
        return KpmValue.unmeasured(u.marcsec, _too_few(separations))
    percentile = 100.0 - float(af_threshold.to_value(u.percent))
    value = np.percentile(separations.deviations.to_value(u.marcsec), percentile)
    return KpmValue(float(value) * u.marcsec)


def afx(separations: PairSeparations, ad_threshold: u.Quantity = AD_THRESHOLD) -> KpmValue:
    """AFx (%): the percentage of faro's separation deviations beyond ``ad_threshold``."""
    if not _measurable(separations):
        return KpmValue.unmeasured(u.percent, _too_few(separations))
    deviations = separations.deviations.to_value(u.marcsec)
    limit = float(ad_threshold.to_value(u.marcsec))
    beyond = np.count_nonzero(deviations > limit) + np.count_nonzero(deviations < -limit)
    return KpmValue(100.0 * (beyond / len(deviations)) * u.percent)


def _too_few(separations: PairSeparations) -> str:
    if separations.reason and separations.n_pairs == 0:
        return separations.reason
    return (
        f"{len(separations.deviations)} separation residuals (pairs sharing at least 3 visits); "
        "more than 1 is needed"
    )
