"""Import a Google Benchmark ``--benchmark_format=json`` (or ``--benchmark_out``) file: one job.

The file holds ``context`` (``date``, ``host_name``, ``executable``, ``num_cpus``,
``mhz_per_cpu``, ``library_build_type``, …) and ``benchmarks``: rows with ``name``,
``run_name``, ``run_type`` (``iteration`` or ``aggregate`` with ``aggregate_name``),
``real_time`` and ``cpu_time`` in ``time_unit``, ``iterations``, and counters
(``bytes_per_second``, ``items_per_second``, user counters) as further numeric keys.

One value per run (``run_name``): with repetitions, the ``--aggregate`` row (median by default)
and not the repetitions; without that aggregate, the run's only row, or the median (mean) of
its repetitions.  Complexity rows (BigO, RMS) and percentage aggregates (cv) are skipped; a run
with ``error_occurred`` (or skipped) is sent as null: not measured.

Names (see :mod:`.names` for the character rules), for ``BM_Sort/1024/real_time``:
package ``--package``, else the executable's name (``./sort_bench`` → ``sort_bench``);
``BM_Sort:1024:real_time`` real time, in the file's ``time_unit`` (``ns``, ``us``, ``ms``,
``s``), lower is better; ``…:cpu`` CPU time, likewise; ``…:bytes_per_second`` (``byte/s``) and
``…:items_per_second`` (``1/s``), higher is better; ``…:max_bytes_used`` and the memory
manager's other byte counts (``byte``) and ``…:allocs_per_iter``, lower; ``…:<counter>`` any
user counter, dimensionless, direction ``none`` (the file does not say which way is better).

Meta: ``time`` (``context.date``; a date without offset, as before benchmark 1.5.1, is read as
UTC by the server), ``executable``, ``machine`` (the rest of the context).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import click

from specwatch.collectors.cli import one_line_errors
from specwatch.collectors.emit import JobOutput, NamedJob, emit_jobs, job_output_options
from specwatch.collectors.errors import BadInputError
from specwatch.collectors.job import Direction, read_json_file

from .imported_job import ImportedJob, finite_items, number
from .names import checked_name, derived_package, metric_part

Aggregate = Literal["median", "mean"]
AGGREGATES: tuple[Aggregate, ...] = ("median", "mean")
TIME_UNITS = frozenset({"ns", "us", "ms", "s"})
# Counters whose meaning the library fixes: (unit, direction).
_KNOWN_COUNTERS: dict[str, tuple[str, Direction]] = {
    "bytes_per_second": ("byte/s", "higher"),
    "items_per_second": ("1/s", "higher"),
    "max_bytes_used": ("byte", "lower"),
    "total_allocated_bytes": ("byte", "lower"),
    "net_heap_growth": ("byte", "lower"),
    "allocs_per_iter": ("", "lower"),
}
_NOT_COUNTERS = frozenset(
    {
        "name",
        "family_index",
        "per_family_instance_index",
        "run_name",
        "run_type",
        "repetitions",
        "repetition_index",
        "threads",
        "aggregate_name",
        "aggregate_unit",
        "error_occurred",
        "error_message",
        "skipped",
        "iterations",
        "real_time",
        "cpu_time",
        "time_unit",
        "label",
        "big_o",
        "cpu_coefficient",
        "real_coefficient",
        "rms",
    }
)


def _numbers(row: Mapping[str, Any]) -> dict[str, float]:
    """The counters of a row: numeric keys other than the library's own fields."""
    return {
        key: float(value)
        for key, value in row.items()
        if key not in _NOT_COUNTERS and isinstance(value, int | float)
        if not isinstance(value, bool)
    }


def _failed(row: Mapping[str, Any]) -> bool:
    return bool(row.get("error_occurred") or row.get("skipped") or "error_message" in row)


def _combine(rows: Sequence[Mapping[str, Any]], aggregate: Aggregate) -> dict[str, Any]:
    """One row of the repetitions ``rows`` (none failed): their median or mean, per field."""
    combine = statistics.median if aggregate == "median" else statistics.fmean
    combined: dict[str, Any] = dict(rows[0])
    for key in ("real_time", "cpu_time", *_numbers(rows[0])):
        values = [number(row.get(key)) for row in rows]
        combined[key] = combine(values)
    combined["aggregate_name"] = f"{aggregate} of {len(rows)} repetitions"
    return combined


def _run_rows(
    path: Path, rows: Sequence[Any], aggregate: Aggregate
) -> list[tuple[str, dict[str, Any]]]:
    """Each run's name and the one row that stands for it, in the file's order."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            raise BadInputError(f"{path}: benchmark {index} is not an object with a name")
        run_name = row.get("run_name")
        runs.setdefault(run_name if isinstance(run_name, str) else row["name"], []).append(row)
    chosen = []
    for run_name, run in runs.items():
        aggregates = {r.get("aggregate_name"): r for r in run if r.get("run_type") == "aggregate"}
        repetitions = [r for r in run if r.get("run_type") != "aggregate"]
        if aggregate in aggregates:
            chosen.append((run_name, aggregates[aggregate]))
        elif len(repetitions) == 1 or any(_failed(r) for r in repetitions):
            chosen.append((run_name, next((r for r in repetitions if _failed(r)), run[0])))
        elif repetitions:
            chosen.append((run_name, _combine(repetitions, aggregate)))
        # else: only complexity (BigO, RMS) or other aggregates: nothing to measure
    return chosen


def _add_run(job: ImportedJob, package: str, run_name: str, row: Mapping[str, Any]) -> None:
    time_unit = row.get("time_unit", "ns")
    if time_unit not in TIME_UNITS:
        raise BadInputError(f"{job.source}: run {run_name!r} has time_unit {time_unit!r}")
    failed = _failed(row)
    notes = finite_items(
        {
            key: row.get(key)
            for key in ("iterations", "repetitions", "threads", "aggregate_name", "label")
        }
    )
    if failed:
        notes["error_message"] = str(row.get("error_message") or "skipped")
    values: list[tuple[str, float, str, Direction, str]] = [
        ("", number(row.get("real_time")), time_unit, "lower", "real time"),
        (":cpu", number(row.get("cpu_time")), time_unit, "lower", "CPU time"),
    ]
    for counter, value in sorted(_numbers(row).items()):
        unit, direction = _KNOWN_COUNTERS.get(counter, ("", "none"))
        values.append((f":{counter}", value, unit, direction, f"counter {counter}"))
    for suffix, value, unit, direction, what in values:
        job.measure(
            f"{package}.{metric_part(run_name + suffix)}",
            float("nan") if failed else value,
            unit,
            origin=f"{run_name} {what}",
            direction=direction,
            description=f"Google Benchmark {what} of {run_name}",
            notes=notes,
        )


def job_from_gbench(
    path: Path, *, package: str | None = None, aggregate: Aggregate = "median"
) -> NamedJob:
    """The job of a Google Benchmark JSON file.

    Raises:
        BadInputError: not JSON, not Google Benchmark's shape, an unknown time unit, no
            package (neither ``package`` nor ``context.executable``), two runs mapping to one
            metric.
    """
    if aggregate not in AGGREGATES:
        raise BadInputError(f"--aggregate {aggregate!r}: give one of {', '.join(AGGREGATES)}")
    data = read_json_file(path, "a Google Benchmark JSON file")
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("context"), dict)
        or not isinstance(data.get("benchmarks"), list)
    ):
        raise BadInputError(
            f"{path}: no 'context' object and 'benchmarks' list, so not Google Benchmark's "
            "--benchmark_format=json output"
        )
    context: dict[str, Any] = data["context"]
    executable = context.get("executable")
    if package is not None:
        checked_name(package, "--package")
    elif isinstance(executable, str) and executable.strip():
        stem = Path(executable.replace("\\", "/")).name.removesuffix(".exe")
        package = derived_package(stem, "gbench")
    else:
        raise BadInputError(f"{path}: the context names no executable: give --package")
    job = ImportedJob(path)
    for run_name, row in _run_rows(path, data["benchmarks"], aggregate):
        _add_run(job, package, run_name, row)
    job.builder.meta.update(
        finite_items(
            {
                "time": context.get("date") if isinstance(context.get("date"), str) else None,
                "executable": executable if isinstance(executable, str) else None,
                "machine": {k: v for k, v in context.items() if k not in ("date", "executable")},
            }
        )
    )
    return job.named(f"gbench-{package}")


@click.command("gbench")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--package", help="The metrics' package (default: the benchmark executable's name).")
@click.option(
    "--aggregate",
    type=click.Choice(AGGREGATES),
    default="median",
    show_default=True,
    help="With repetitions, the aggregate measured.",
)
@job_output_options
@one_line_errors
def gbench_command(
    file: Path, package: str | None, aggregate: Aggregate, output: JobOutput
) -> None:
    """Import a Google Benchmark --benchmark_format=json FILE: real and CPU time and counters
    of each run (with repetitions, their median)."""
    emit_jobs([job_from_gbench(file, package=package, aggregate=aggregate)], output)
