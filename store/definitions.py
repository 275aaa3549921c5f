"""Metrics and specifications in the SQL store.  Never commits: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from specwatch.exceptions import DefinitionError, UnitConversionError
from specwatch.metrics.model import Direction, Level, Metric, Reference, Specification
from specwatch.metrics.units import conversion_factor

from .models import SQLDefinitionDigest, SQLMetric, SQLSpecification

# PostgreSQL accepts at most 32767 bind parameters per statement: chunk IN (...) lists.
_IN_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    # Metrics whose direction or regression floor changed: their stored changes are stale.
    detection_changed: tuple[str, ...] = ()


def _to_metric(row: SQLMetric) -> Metric:
    reference = row.reference or {}
    return Metric(
        package=row.package,
        name=row.name,
        unit=row.unit,
        description=row.description,
        tags=tuple(row.tags or ()),
        reference=Reference(reference.get("doc"), reference.get("url"), reference.get("page")),
        direction=Direction(row.direction),
        floor_abs=row.floor_abs,
        floor_pct=row.floor_pct,
    )


def _to_spec(row: SQLSpecification) -> Specification:
    return Specification(
        package=row.package,
        metric=row.metric,
        name=row.name,
        threshold=row.threshold,
        unit=row.unit,
        operator=row.operator,
        metadata_query=dict(row.metadata_query or {}),
        tags=tuple(row.tags or ()),
        level=Level(row.level) if row.level else None,
        requirements=tuple(row.requirements or ()),
        description=row.description,
    )


def _chunks(names: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(names), _IN_CHUNK):
        yield names[start : start + _IN_CHUNK]


class DefinitionStore:
    """Repository of metrics, specifications and seen definition digests."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _metric_rows(self, full_names: Sequence[str]) -> dict[str, SQLMetric]:
        rows: dict[str, SQLMetric] = {}
        for chunk in _chunks(sorted(set(full_names))):
            result = await self._session.scalars(
                select(SQLMetric).where(SQLMetric.full_name.in_(chunk))
            )
            rows.update((row.full_name, row) for row in result)
        return rows

    async def get_metrics(self, full_names: Sequence[str]) -> dict[str, Metric]:
        """The known metrics among ``full_names``, by full name."""
        return {
            name: _to_metric(row) for name, row in (await self._metric_rows(full_names)).items()
        }

    async def get_metric(self, full_name: str) -> Metric | None:
        row = await self._session.scalar(select(SQLMetric).where(SQLMetric.full_name == full_name))
        return _to_metric(row) if row else None

    async def list_metrics(
        self, *, package: str | None, after: str | None, limit: int
    ) -> list[Metric]:
        """Metrics ordered by full name, after the cursor ``after``."""
        query = select(SQLMetric).order_by(SQLMetric.full_name).limit(limit)
        if package:
            query = query.where(SQLMetric.package == package)
        if after:
            query = query.where(SQLMetric.full_name > after)
        return [_to_metric(row) for row in await self._session.scalars(query)]

    async def upsert_metrics(
        self, metrics: Sequence[Metric], now: datetime, *, only_new: bool = False
    ) -> UpsertCounts:
        """Insert new metrics and update changed ones (``only_new``: leave existing ones alone).

        Raises:
            DefinitionError: a metric's unit would change meaning (stored values are in the
                old unit); a respelling of the same unit (``marcsec`` / ``milliarcsecond``) is fine.
        """
        existing = await self._metric_rows([m.full_name for m in metrics])
        added = updated = unchanged = 0
        detection_changed = []
        for metric in metrics:
            row = existing.get(metric.full_name)
            if row is None:
                existing[metric.full_name] = SQLMetric(
                    full_name=metric.full_name,
                    package=metric.package,
                    name=metric.name,
                    unit=metric.unit,
                    description=metric.description,
                    tags=list(metric.tags),
                    reference=metric.reference.as_dict(),
                    direction=metric.direction.value,
                    floor_abs=metric.floor_abs,
                    floor_pct=metric.floor_pct,
                    created_at=now,
                    updated_at=now,
                )
                self._session.add(existing[metric.full_name])
                added += 1
                continue
            if only_new:
                unchanged += 1
                continue
            _check_unit_change(metric, row.unit)
            if _to_metric(row) == Metric(
                package=metric.package,
                name=metric.name,
                unit=row.unit,
                description=metric.description,
                tags=metric.tags,
                reference=metric.reference,
                direction=metric.direction,
                floor_abs=metric.floor_abs,
                floor_pct=metric.floor_pct,
            ):
                unchanged += 1
                continue
            if (row.direction, row.floor_abs, row.floor_pct) != (
                metric.direction.value,
                metric.floor_abs,
                metric.floor_pct,
            ):
                detection_changed.append(metric.full_name)
            row.description = metric.description
            row.tags = list(metric.tags)
            row.reference = metric.reference.as_dict()
            row.direction = metric.direction.value
            row.floor_abs, row.floor_pct = metric.floor_abs, metric.floor_pct
            row.updated_at = now
            updated += 1
        await self._session.flush()
        return UpsertCounts(added, updated, unchanged, tuple(sorted(detection_changed)))

    async def upsert_specs(
        self, specs: Sequence[Specification], now: datetime, *, source: str, only_new: bool = False
    ) -> UpsertCounts:
        """Insert new specifications, update changed ones, bring retired ones back.

        ``only_new``: leave the existing ones (retired or not) as they are.
        """
        rows: dict[str, SQLSpecification] = {}
        for chunk in _chunks(sorted({s.full_name for s in specs})):
            result = await self._session.scalars(
                select(SQLSpecification).where(SQLSpecification.full_name.in_(chunk))
            )
            rows.update((row.full_name, row) for row in result)
        added = updated = unchanged = 0
        for spec in specs:
            row = rows.get(spec.full_name)
            if row is None:
                rows[spec.full_name] = row = SQLSpecification(
                    full_name=spec.full_name,
                    metric_full_name=spec.metric_full_name,
                    package=spec.package,
                    metric=spec.metric,
                    name=spec.name,
                    source=source,
                    created_at=now,
                )
                self._session.add(row)
                added += 1
            elif only_new or (
                row.retired_at is None and _to_spec(row) == spec and row.source == source
            ):
                unchanged += 1
                continue
            else:
                updated += 1
            row.threshold = float(spec.threshold)
            row.unit = spec.unit
            row.operator = spec.operator
            row.level = spec.level.value if spec.level else None
            row.metadata_query = dict(spec.metadata_query)
            row.tags = list(spec.tags)
            row.requirements = list(spec.requirements)
            row.description = spec.description
            row.retired_at = None
            row.source = source  # an import takes over what a job registered first
            row.updated_at = now
        await self._session.flush()
        return UpsertCounts(added, updated, unchanged)

    async def retire_specs(self, packages: Iterable[str], keep: set[str], now: datetime) -> int:
        """Retire the imported specs of ``packages`` not in ``keep``; returns how many."""
        query = select(SQLSpecification.full_name).where(
            SQLSpecification.package.in_(sorted(set(packages))),
            SQLSpecification.retired_at.is_(None),
            SQLSpecification.source == "import",
        )
        gone = [name for name in await self._session.scalars(query) if name not in keep]
        for chunk in _chunks(gone):
            await self._session.execute(
                update(SQLSpecification)
                .where(SQLSpecification.full_name.in_(chunk))
                .values(retired_at=now, updated_at=now)
            )
        return len(gone)

    async def specs_for_metric(self, full_name: str) -> list[Specification]:
        """The active specifications of a metric, by name."""
        query = (
            select(SQLSpecification)
            .where(
                SQLSpecification.metric_full_name == full_name,
                SQLSpecification.retired_at.is_(None),
            )
            .order_by(SQLSpecification.full_name)
        )
        return [_to_spec(row) for row in await self._session.scalars(query)]

    async def specs_for_metrics(self, full_names: Sequence[str]) -> list[Specification]:
        """The active specifications of several metrics, by name."""
        return await self._active_specs_in(SQLSpecification.metric_full_name, full_names)

    async def specs_for_packages(self, packages: Sequence[str]) -> list[Specification]:
        """The active specifications of the metrics of several packages, by name."""
        return await self._active_specs_in(SQLSpecification.package, packages)

    async def _active_specs_in(
        self, column: InstrumentedAttribute[str], values: Sequence[str]
    ) -> list[Specification]:
        specs: list[Specification] = []
        for chunk in _chunks(sorted(set(values))):
            query = select(SQLSpecification).where(
                column.in_(chunk), SQLSpecification.retired_at.is_(None)
            )
            specs.extend(_to_spec(row) for row in await self._session.scalars(query))
        return sorted(specs, key=lambda spec: spec.full_name)

    async def active_specs(self, *, limit: int = 100_000) -> list[Specification]:
        """Every active specification (thousands at most: LSST's catalogue has 1,705)."""
        query = (
            select(SQLSpecification)
            .where(SQLSpecification.retired_at.is_(None))
            .order_by(SQLSpecification.full_name)
            .limit(limit)
        )
        return [_to_spec(row) for row in await self._session.scalars(query)]

    async def digest_seen(self, digest: str) -> bool:
        return await self._session.get(SQLDefinitionDigest, digest) is not None

    async def remember_digest(self, digest: str, now: datetime) -> None:
        self._session.add(SQLDefinitionDigest(digest=digest, created_at=now))
        await self._session.flush()


def _check_unit_change(metric: Metric, stored_unit: str) -> None:
    try:
        factor = conversion_factor(metric.unit, stored_unit)
    except UnitConversionError:
        factor = float("nan")
    if factor != 1.0:
        raise DefinitionError(
            f"metric {metric.full_name!r} is stored in {stored_unit or 'dimensionless'!r}; "
            f"redefining it in {metric.unit or 'dimensionless'!r} would change the meaning of "
            "its stored values"
        )
