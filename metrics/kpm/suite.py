"""Every LPM-17 KPM of one matched catalog, named as validate_drp's metric catalogue names them.

PA1, then ``PA2_<level>_<bands>`` and ``PF1_<level>_<bands>`` for each level asked; AM1-3, and
``AD<x>_<level>``/``AF<x>_<level>``.  Each value comes with notes (the selection's counts, and
why it is NaN when it is) and, for PA1 and AMx, a blob for drill-down plots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import astropy.units as u
import numpy as np
from numpy.typing import NDArray

from . import lpm17
from .astrometry import (
    ANNULUS_ARCMIN,
    PairSeparations,
    adx,
    afx,
    amx,
    histogram_bins,
    pair_separations,
)
from .photometry import PhotometricRepeatability, pa2, pf1, photometric_repeatability
from .result import KpmValue
from .selection import MatchedCatalog, ObjectSelection


@dataclass(frozen=True)
class PhotometryConfig:
    """faro's PA1/PF1 task parameters, with faro's defaults (S/N dimensionless)."""

    snr_min: float = 200.0
    snr_max: float = math.inf
    n_min_phot_repeat: int = 50


@dataclass(frozen=True)
class AstrometryConfig:
    """faro's AMx/ADx/AFx task parameters (arcmin, mag) and ``filterMatches`` defaults."""

    annuli_arcmin: Mapping[int, float] = field(default_factory=lambda: dict(ANNULUS_ARCMIN))
    width_arcmin: float = 2.0
    bright_mag_cut: float = 17.0
    faint_mag_cut: float = 21.5
    selection: ObjectSelection = field(default_factory=ObjectSelection)
    bins_marcsec: tuple[float, ...] = tuple(histogram_bins().tolist())


@dataclass(frozen=True)
class SuiteConfig:
    """What to measure: the parameters, the LPM-17 levels and the band group (gri or uzy)."""

    photometry: PhotometryConfig = field(default_factory=PhotometryConfig)
    astrometry: AstrometryConfig = field(default_factory=AstrometryConfig)
    levels: Sequence[lpm17.Level] = ("design",)
    band_group: lpm17.BandGroup = "gri"


@dataclass(frozen=True)
class BlobColumn:
    """One array of a drill-down blob, with its unit (``""`` for plain numbers)."""

    values: NDArray[Any]
    unit: str
    label: str
    description: str


@dataclass(frozen=True)
class KpmMeasurement:
    """A KPM's value in its catalogue unit, notes, and the name of its blob (if any)."""

    metric: str
    value: KpmValue
    unit: str
    notes: Mapping[str, Any]
    blob: str | None = None


@dataclass(frozen=True)
class CatalogKpms:
    """The measurements of one catalog and their blobs (by name)."""

    measurements: list[KpmMeasurement]
    blobs: dict[str, dict[str, BlobColumn]]


def _notes(value: KpmValue, **counts: int) -> dict[str, Any]:
    notes: dict[str, Any] = dict(counts)
    if value.reason:
        notes["reason"] = value.reason
    return notes


def _photometry(
    catalog: MatchedCatalog, config: SuiteConfig
) -> tuple[list[KpmMeasurement], dict[str, BlobColumn]]:
    params = config.photometry
    phot: PhotometricRepeatability = photometric_repeatability(
        catalog,
        snr_min=params.snr_min,
        snr_max=params.snr_max,
        n_min_phot_repeat=params.n_min_phot_repeat,
    )
    counts = {"n_objects": phot.n_objects, "n_sources": phot.n_sources}
    counts["n_stars"] = len(phot.star_rms)
    result = [
        KpmMeasurement("PA1", phot.pa1, lpm17.UNITS["PA1"], _notes(phot.pa1, **counts), "PA1")
    ]
    for level in config.levels:
        group = config.band_group
        spread = pa2(phot, lpm17.pf1_threshold(level))
        share = pf1(phot, lpm17.pa2_threshold(level, group))
        result.append(
            KpmMeasurement(
                f"PA2_{level}_{group}", spread, lpm17.UNITS["PA2"], _notes(spread, **counts)
            )
        )
        result.append(
            KpmMeasurement(
                f"PF1_{level}_{group}", share, lpm17.UNITS["PF1"], _notes(share, **counts)
            )
        )
    blob = {
        "mag": BlobColumn(phot.star_mag.to_value(u.mag), "mag", "mag", "mean PSF magnitude"),
        "rms": BlobColumn(
            phot.star_rms.to_value(u.mmag), "mmag", "RMS", "PSF magnitude RMS of each star"
        ),
        "count": BlobColumn(phot.star_count, "ct", "count", "measurements of each star"),
        "mag_err": BlobColumn(
            phot.star_mag_err.to_value(u.mag), "mag", "magErr", "median PSF magnitude error"
        ),
    }
    return result, blob


def _astrometry(
    catalog: MatchedCatalog, index: int, config: SuiteConfig
) -> tuple[list[KpmMeasurement], dict[str, BlobColumn]]:
    params = config.astrometry
    separations: PairSeparations = pair_separations(
        catalog,
        annulus_r_arcmin=params.annuli_arcmin[index],
        width_arcmin=params.width_arcmin,
        bright_mag_cut=params.bright_mag_cut,
        faint_mag_cut=params.faint_mag_cut,
        selection=params.selection,
    )
    counts = {
        "n_objects": separations.n_objects,
        "n_pairs": separations.n_pairs,
        "n_pairs_measured": len(separations.rms),
    }
    repeatability = amx(separations, np.asarray(params.bins_marcsec))
    name = f"AM{index}"
    result = [
        KpmMeasurement(
            name, repeatability.amx, lpm17.UNITS["AM"], _notes(repeatability.amx, **counts), name
        )
    ]
    for level in config.levels:
        spread = adx(separations, lpm17.af_threshold(level))
        share = afx(separations, lpm17.ad_threshold(index, level))
        result.append(
            KpmMeasurement(
                f"AD{index}_{level}", spread, lpm17.UNITS["AD"], _notes(spread, **counts)
            )
        )
        result.append(
            KpmMeasurement(f"AF{index}_{level}", share, lpm17.UNITS["AF"], _notes(share, **counts))
        )
    blob = {
        "bins": BlobColumn(repeatability.bins.to_value(u.marcsec), "marcsec", "binvalues", "bins"),
        "values": BlobColumn(repeatability.counts, "ct", "counts", "icounts in bins"),
        "rms": BlobColumn(
            separations.rms.to_value(u.marcsec), "marcsec", "RMS", "separation RMS of each pair"
        ),
    }
    return result, blob


def measure_catalog(catalog: MatchedCatalog, config: SuiteConfig | None = None) -> CatalogKpms:
    """PA1, PA2, PF1 and AM/AD/AF 1-3 of ``catalog``; NaN (with a reason) where unmeasurable."""
    config = config or SuiteConfig()
    measurements, phot_blob = _photometry(catalog, config)
    blobs = {"PA1": phot_blob}
    for index in sorted(config.astrometry.annuli_arcmin):
        found, blob = _astrometry(catalog, index, config)
        measurements.extend(found)
        blobs[f"AM{index}"] = blob
    return CatalogKpms(measurements, blobs)
