"""Points and row views shared by the series-store tests."""

from __future__ import annotations

from specwatch.store.series.base import Series, SeriesPoint

PKG = "validate_drp"
T0 = 1_732_530_000_000_000_000


def point(
    t: int,
    job_id: int,
    values: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    commit: str | None = None,
    package: str = PKG,
) -> SeriesPoint:
    values = {"PA1": float(job_id)} if values is None else values
    return SeriesPoint(package, T0 + t, job_id, values, tags or {}, commit)


def rows(series: Series) -> list[tuple[int, float | None, int, str | None]]:
    return list(
        zip(
            [t - T0 for t in series.time_ns],
            series.value,
            series.job_id,
            series.commit,
            strict=True,
        )
    )
