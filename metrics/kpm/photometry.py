"""Photometric repeatability KPMs of LPM-17 (PA1, PA2, PF1), as faro computes them.

faro (``utils/phot_repeat.py`` and the PA1/PF1 tasks of ``MatchedCatalogMeasurementTasks.py``):

- objects: :func:`~.selection.select_objects` with median PSF S/N in ``[200, inf]``, point
  sources, at least 2 sources all with finite PSF magnitude; pixel flags and isPrimary are *not*
  applied by the PA1/PF1 tasks;
- not measured unless the selected objects hold more than ``n_min_phot_repeat`` sources *and*
  more than ``n_min_phot_repeat`` of them have more than 2 non-zero magnitudes ("stars");
- per object: the population standard deviation (``np.nanstd``, ddof 0) of its PSF magnitudes,
  and the residuals of each magnitude from the object's mean;
- PA1: the median of the per-star standard deviations, in mmag;
- PF1: the percentage of the stars' residuals larger than PA2's threshold (15 mmag);
- PA2: the ``100 - PF1`` percentile (90th) of the absolute residuals, in mmag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np
from numpy.typing import NDArray

from .result import KpmValue
from .selection import MatchedCatalog, ObjectSelection, select_objects

PA2_THRESHOLD = 15.0 * u.mmag
"""faro's ``threshPA2`` default (LPM-17 design, gri)."""
PF1_THRESHOLD = 10.0 * u.percent
"""faro's ``threshPF1`` default (LPM-17 design)."""
MIN_MEASUREMENTS = 3
"""A star needs more than 2 measurements (faro's ``count > 2``)."""


@dataclass(frozen=True)
class PhotometricRepeatability:
    """PA1 and the distributions PA2 and PF1 are computed from.

    Per star (objects with more than 2 measurements), in faro's object order: ``star_mag`` mean
    PSF magnitude (mag), ``star_rms`` standard deviation (mmag), ``star_count`` measurements,
    ``star_mag_err`` median PSF magnitude error (mag; NaN without that column).  ``residuals``
    holds every star's magnitudes minus its mean (mmag).
    """

    pa1: KpmValue
    star_mag: u.Quantity
    star_rms: u.Quantity
    star_count: NDArray[np.intp]
    star_mag_err: u.Quantity
    residuals: u.Quantity
    n_objects: int
    n_sources: int


def _unmeasured(reason: str, n_objects: int, n_sources: int) -> PhotometricRepeatability:
    empty: NDArray[np.float64] = np.zeros(0)
    return PhotometricRepeatability(
        KpmValue.unmeasured(u.mmag, reason),
        empty * u.mag,
        empty * u.mmag,
        np.zeros(0, dtype=np.intp),
        empty * u.mag,
        empty * u.mmag,
        n_objects,
        n_sources,
    )


def photometric_repeatability(
    catalog: MatchedCatalog,
    *,
    snr_min: float = 200.0,
    snr_max: float = math.inf,
    n_min_phot_repeat: int = 50,
    extended: bool = False,
    do_flags: bool = False,
    is_primary: bool = False,
) -> PhotometricRepeatability:
    """PA1 (mmag) and the per-star statistics, with faro's PA1 task defaults.

    ``snr_min``/``snr_max`` bound the median PSF S/N of a bright star (faro's ``brightSnrMin``,
    ``brightSnrMax``); ``n_min_phot_repeat`` is faro's ``nMinPhotRepeat``.
    """
    selection = ObjectSelection(
        snr_min=snr_min,
        snr_max=snr_max,
        extended=extended,
        do_flags=do_flags,
        is_primary=is_primary,
    )
    groups = catalog.groups
    keep = select_objects(catalog, selection)
    n_objects = int(keep.sum())
    n_sources = int(groups.sizes[keep].sum())
    criteria = f"median S/N in [{snr_min:g}, {snr_max:g}], {'extended' if extended else 'point'}"
    if n_sources <= n_min_phot_repeat:
        return _unmeasured(
            f"{n_sources} sources of {n_objects} objects pass the selection ({criteria}); "
            f"more than {n_min_phot_repeat} are needed",
            n_objects,
            n_sources,
        )
    mag = catalog.psf_mag
    rows = keep[groups.index]
    count = groups.counts(rows & (mag != 0))
    stars = keep & (count >= MIN_MEASUREMENTS)
    n_stars = int(stars.sum())
    if n_stars <= n_min_phot_repeat:
        return _unmeasured(
            f"{n_stars} objects with more than 2 measurements pass the selection "
            f"({criteria}); more than {n_min_phot_repeat} are needed",
            n_objects,
            n_sources,
        )
    star_rows = stars[groups.index]
    rms = groups.reduce(mag, np.nanstd, where=star_rows)[stars].astype(np.float64)
    mean = groups.reduce(mag, np.mean, where=star_rows)
    ordered = groups.order[star_rows[groups.order]]
    residuals = mag[ordered] - mean[groups.index[ordered]]
    if catalog.psf_mag_err is None:
        mag_err: NDArray[Any] = np.full(n_stars, np.nan)
    else:
        mag_err = groups.reduce(catalog.psf_mag_err, np.median, where=star_rows)[stars]
    rms_mmag = (rms * u.mag).to(u.mmag)
    return PhotometricRepeatability(
        KpmValue(np.median(rms_mmag)),
        mean[stars].astype(np.float64) * u.mag,
        rms_mmag,
        count[stars],
        mag_err.astype(np.float64) * u.mag,
        (residuals * u.mag).to(u.mmag),
        n_objects,
        n_sources,
    )


def pa2(
    repeatability: PhotometricRepeatability, pf1_threshold: u.Quantity = PF1_THRESHOLD
) -> KpmValue:
    """PA2 (mmag): at most ``pf1_threshold`` of the residuals are larger than this."""
    if not repeatability.pa1.measured:
        return KpmValue.unmeasured(u.mmag, repeatability.pa1.reason or "PA1 was not measured")
    percentile = 100.0 - float(pf1_threshold.to_value(u.percent))
    value = np.percentile(np.abs(repeatability.residuals.to_value(u.mmag)), percentile)
    return KpmValue(float(value) * u.mmag)


def pf1(
    repeatability: PhotometricRepeatability, pa2_threshold: u.Quantity = PA2_THRESHOLD
) -> KpmValue:
    """PF1 (%): the percentage of residuals larger than ``pa2_threshold``."""
    if not repeatability.pa1.measured:
        return KpmValue.unmeasured(u.percent, repeatability.pa1.reason or "PA1 was not measured")
    residuals = np.abs(repeatability.residuals.to_value(u.mmag))
    share = np.mean(residuals > float(pa2_threshold.to_value(u.mmag)))
    return KpmValue(100.0 * float(share) * u.percent)
