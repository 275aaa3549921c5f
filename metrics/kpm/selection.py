"""A matched multi-visit source catalog as arrays, and faro's selection of matched objects.

One row per source (a detection in one visit); sources of the same astrophysical object share an
``object_id``.  :func:`select_objects` is faro's ``filterMatches`` (``utils/filtermatches.py``):
an object is kept when all of these hold over its sources:

- at least ``n_matches_min`` sources, every PSF magnitude finite;
- the median of the finite PSF S/N values within ``[snr_min, snr_max]`` (both inclusive; an
  object without a finite S/N fails);
- point source: the largest extendedness below ``extendedness_cut`` (for ``extended``, the
  smallest above it); a NaN extendedness fails both;
- with ``do_flags``: no source flagged (saturated, cosmic ray, bad or edge pixels);
- with ``is_primary``: every source ``detect_isPrimary``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .grouping import Groups


@dataclass(frozen=True)
class MatchedCatalog:
    """The columns faro's KPMs read, one row per source.

    ``ra_rad``/``dec_rad`` in radians, ``psf_mag`` in mag, ``psf_snr`` dimensionless,
    ``extendedness`` 0 (point) to 1 (extended).  ``flagged`` is true for a source with any of
    the excluded pixel flags; ``is_primary`` is ``detect_isPrimary``.  Either may be ``None``
    when the selection does not need it.  Raises ``ValueError`` on columns of unequal length.
    """

    object_id: NDArray[np.int64]
    visit: NDArray[np.int64]
    ra_rad: NDArray[np.float64]
    dec_rad: NDArray[np.float64]
    psf_mag: NDArray[np.floating[Any]]
    psf_snr: NDArray[np.floating[Any]]
    extendedness: NDArray[np.floating[Any]]
    flagged: NDArray[np.bool_] | None = None
    is_primary: NDArray[np.bool_] | None = None
    psf_mag_err: NDArray[np.floating[Any]] | None = None

    def __post_init__(self) -> None:
        rows = len(self.object_id)
        for name in (
            "visit",
            "ra_rad",
            "dec_rad",
            "psf_mag",
            "psf_snr",
            "extendedness",
            "flagged",
            "is_primary",
            "psf_mag_err",
        ):
            column = getattr(self, name)
            if column is not None and len(column) != rows:
                raise ValueError(f"column {name} has {len(column)} rows, object_id has {rows}")

    @property
    def rows(self) -> int:
        """The number of sources."""
        return len(self.object_id)

    @cached_property
    def groups(self) -> Groups:
        """The sources grouped by object, objects in increasing id (faro's order)."""
        return Groups.build(self.object_id)


@dataclass(frozen=True)
class ObjectSelection:
    """faro's ``filterMatches`` parameters, with its defaults."""

    snr_min: float = 50.0
    snr_max: float = math.inf
    extended: bool = False
    extendedness_cut: float = 0.9
    do_flags: bool = True
    is_primary: bool = True
    n_matches_min: int = 2


def select_objects(catalog: MatchedCatalog, selection: ObjectSelection) -> NDArray[np.bool_]:
    """Which objects (``catalog.groups`` order) pass ``selection``.

    Raises ``ValueError`` if the selection needs ``flagged``/``is_primary`` and they are absent.
    """
    groups = catalog.groups
    keep = groups.sizes >= selection.n_matches_min
    keep &= groups.all(np.isfinite(catalog.psf_mag))
    snr = catalog.psf_snr
    median_snr = groups.reduce(snr, np.median, where=np.isfinite(snr))
    with np.errstate(invalid="ignore"):
        keep &= (selection.snr_min <= median_snr) & (median_snr <= selection.snr_max)
        if selection.extended:
            lowest = groups.reduce(catalog.extendedness, np.min)
            keep &= lowest > selection.extendedness_cut
        else:
            highest = groups.reduce(catalog.extendedness, np.max)
            keep &= highest < selection.extendedness_cut
    if selection.do_flags:
        if catalog.flagged is None:
            raise ValueError("the flag selection needs the pixel flags of every source")
        keep &= groups.all(~catalog.flagged)
    if selection.is_primary:
        if catalog.is_primary is None:
            raise ValueError("the isPrimary selection needs detect_isPrimary of every source")
        keep &= groups.all(catalog.is_primary)
    return np.asarray(keep, dtype=bool)
