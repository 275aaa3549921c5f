"""LPM-17 (the LSST Science Requirements Document) thresholds and the catalogue's metric names.

validate_drp names a threshold-dependent KPM after its level, and PA2/PF1 also after the band
group: ``PA2_design_gri`` is the residual PA2 such that at most ``PF1_design_gri``'s 10 % of
magnitudes deviate more; ``AD1_design`` is the same for astrometry.  Values from LPM-17 as
validate_drp's specifications hold them.
faro's defaults (``threshPA2 = 15 mmag``, ``threshPF1 = threshAF = 10 %``, ``threshAD = 20
mas``) are the design values.
"""

from __future__ import annotations

from typing import Literal

import astropy.units as u

Level = Literal["minimum", "design", "stretch"]
LEVELS: tuple[Level, ...] = ("minimum", "design", "stretch")
BandGroup = Literal["gri", "uzy"]
BAND_GROUPS: tuple[BandGroup, ...] = ("gri", "uzy")

_PA2_MMAG: dict[BandGroup, dict[Level, float]] = {
    "gri": {"minimum": 15.0, "design": 15.0, "stretch": 10.0},
    "uzy": {"minimum": 22.5, "design": 22.5, "stretch": 15.0},
}
_OUTLIER_PERCENT: dict[Level, float] = {"minimum": 20.0, "design": 10.0, "stretch": 5.0}
_AD_MARCSEC: dict[int, dict[Level, float]] = {
    1: {"minimum": 40.0, "design": 20.0, "stretch": 10.0},
    2: {"minimum": 40.0, "design": 20.0, "stretch": 10.0},
    3: {"minimum": 50.0, "design": 30.0, "stretch": 20.0},
}

UNITS = {
    "PA1": "mmag",
    "PA2": "mmag",
    "PF1": "%",
    "AM": "marcsec",
    "AD": "milliarcsecond",
    "AF": "%",
}
"""The unit of each KPM family in validate_drp's metric catalogue."""


def pa2_threshold(level: Level, band_group: BandGroup) -> u.Quantity:
    """PA2 of ``level``: the residual PF1 counts beyond (mmag)."""
    return _PA2_MMAG[band_group][level] * u.mmag


def pf1_threshold(level: Level) -> u.Quantity:
    """PF1 of ``level``: the largest share of residuals beyond PA2 (percent)."""
    return _OUTLIER_PERCENT[level] * u.percent


def ad_threshold(index: int, level: Level) -> u.Quantity:
    """ADx of ``level`` (x = 1, 2, 3): the deviation AFx counts beyond (marcsec)."""
    return _AD_MARCSEC[index][level] * u.marcsec


def af_threshold(level: Level) -> u.Quantity:
    """AFx of ``level``: the largest share of deviations beyond ADx (percent)."""
    return _OUTLIER_PERCENT[level] * u.percent


def band_group(filter_name: str) -> BandGroup | None:
    """``gri`` or ``uzy`` for a filter (``i``, ``HSC-I``, ``HSC-I2``, ``r2``…); else None."""
    name = filter_name.strip().lower().rsplit("-", 1)[-1].rsplit("_", 1)[-1]
    band = name[:1]
    if band and band in "gri":
        return "gri"
    if band and band in "uzy":
        return "uzy"
    return None
