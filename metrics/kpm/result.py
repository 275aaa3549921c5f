"""A KPM's value, or NaN and the reason it could not be measured."""

from __future__ import annotations

import math
from dataclasses import dataclass

import astropy.units as u


@dataclass(frozen=True)
class KpmValue:
    """A measured quantity; NaN (in the same unit) with a ``reason`` when not measurable."""

    quantity: u.Quantity
    reason: str | None = None

    @classmethod
    def unmeasured(cls, unit: u.UnitBase, reason: str) -> KpmValue:
        """NaN in ``unit``, because of ``reason``."""
        return cls(math.nan * unit, reason)

    @property
    def measured(self) -> bool:
        """Whether the value is finite."""
        return bool(math.isfinite(float(self.quantity.value)))

    def value_in(self, unit: u.UnitBase | str) -> float:
        """The value as a float in ``unit``."""
        return float(self.quantity.to_value(unit))
