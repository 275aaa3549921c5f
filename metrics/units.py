"""Units, with astropy: parsing, validation and cached conversion factors.

Parsing a unit string with astropy costs tens of microseconds; an ingest converts thousands
of values a second, so factors are cached per (from, to) pair.
"""

from __future__ import annotations

from functools import lru_cache

import astropy.units as u

from specwatch.exceptions import DefinitionError, UnitConversionError

# Spellings that lsst.verify writes but astropy does not read.
_ALIASES = {"": "", "dimensionless": "", "dimensionless_unscaled": "", "count": "ct"}


@lru_cache(maxsize=4096)
def parse_unit(text: str) -> u.UnitBase:
    """The astropy unit of ``text`` ("" is dimensionless).

    Raises:
        DefinitionError: astropy cannot read it.
    """
    spelled = _ALIASES.get(text.strip(), text.strip())
    if spelled == "":
        return u.dimensionless_unscaled
    try:
        return u.Unit(spelled)
    except ValueError as error:
        raise DefinitionError(f"unit {text!r} is not a unit astropy can read") from error


def normalize_unit(text: str) -> str:
    """The canonical spelling of a unit string, checked (``"%"`` stays ``"%"``)."""
    parse_unit(text)
    return text.strip()


@lru_cache(maxsize=4096)
def conversion_factor(from_unit: str, to_unit: str) -> float:
    """The factor that turns a value in ``from_unit`` into ``to_unit``.

    Raises:
        UnitConversionError: the units are not convertible (message names both units).
        DefinitionError: a unit string cannot be read.
    """
    if from_unit == to_unit:
        return 1.0
    source, target = parse_unit(from_unit), parse_unit(to_unit)
    try:
        factor = float(source.to(target))
    except u.UnitConversionError as error:
        raise UnitConversionError(
            f"unit {from_unit or 'dimensionless'!r} cannot be converted to "
            f"{to_unit or 'dimensionless'!r}"
        ) from error
    # astropy composes scales in binary floating point (arcsec -> marcsec = 999.9999999999999);
    # 15 significant digits give the exact decimal factor back.
    return float(f"{factor:.15g}")
