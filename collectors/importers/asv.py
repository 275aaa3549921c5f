"""Import airspeed velocity (asv) results: one job per result file (a commit in one environment).

asv's results directory (``.asv/results``) holds ``benchmarks.json`` (each benchmark's
``type``, ``unit``, ``param_names``) and, per machine, ``<machine>/machine.json`` and
``<machine>/<commit[:8]>-<env>.json`` in asv's format version 2 (``result_columns``, and per
benchmark a row of those columns: ``result`` is a list with one value per combination of
``params``, in ``itertools.product`` order).  Older files (version 1) need ``asv update``.

Names (see :mod:`.names` for the character rules):

- ``benchmarks.TimeSuite.time_keys`` → ``benchmarks.TimeSuite:time_keys``: the module (first
  component) is the package; with ``--package P`` the whole name is the metric part:
  ``P.benchmarks:TimeSuite:time_keys``.
- A parameterized benchmark gives one metric per combination, the values in the name:
  ``TimeSuite:time_keys(n=10,kind=a:b)`` for ``n=10, kind='a.b'`` (quotes of string values are
  dropped; the decimal point of ``0.5`` gives ``0p5``).  The raw values are in the notes.

Units and directions: ``time`` → ``s``, ``memory`` and ``peakmemory`` → ``byte``; ``track``
(and any other type) → its ``unit`` if astropy reads it, else dimensionless (``unit``, asv's
default) with the unit in the description.  Lower is better, as asv assumes, except for rates
(units of 1/s): higher.  A failed
(null) or skipped (NaN) result is sent as null: not measured.  Benchmarks missing from
``benchmarks.json`` get their type from their name's prefix (``time_``, ``mem_``, …), as asv's.

Meta: ``commit`` (``commit_hash``), ``time`` (``date``, the commit's date, ms since 1970),
``machine`` (``machine.json``), ``asv_env`` (environment name, python, requirements).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from specwatch.collectors.cli import one_line_errors
from specwatch.collectors.emit import JobOutput, NamedJob, emit_jobs, job_output_options
from specwatch.collectors.errors import BadInputError
from specwatch.collectors.job import Direction, read_json_file

from .imported_job import ImportedJob, finite_items, iso_time, number
from .names import checked_name, derived_package, metric_part

FORMAT_VERSION = 2
_TYPES_BY_PREFIX = {"time": "time", "mem": "memory", "peakmem": "peakmemory", "track": "track"}
_DEFAULT_UNITS = {"time": "seconds", "memory": "bytes", "peakmemory": "bytes"}
_UNIT_SPELLINGS = {"seconds": "s", "bytes": "byte", "unit": "", "": ""}
_STATS_COLUMNS = ("ci_99_a", "ci_99_b", "q_25", "q_75", "number", "repeat")
_UNIT_CHARS = 64


def _unit(text: str) -> str:
    """An astropy unit string for asv's ``unit`` ("" when astropy cannot read it).

    astropy is optional here (the collector installs without it): without it, only the
    spellings asv itself writes are known, and a track's own unit counts as dimensionless.
    """
    spelled = _UNIT_SPELLINGS.get(text.strip(), text.strip())
    if spelled in _UNIT_SPELLINGS.values():
        return spelled
    if len(spelled) > _UNIT_CHARS:
        return ""
    try:
        import astropy.units as u
    except ImportError:
        return ""
    try:
        unit = u.Unit(spelled, parse_strict="silent")
    except (ValueError, TypeError):
        return ""
    return "" if isinstance(unit, u.UnrecognizedUnit) else spelled


def _direction(unit: str) -> Direction:
    """Lower is better, as asv assumes, except for rates."""
    if not unit or unit in _UNIT_SPELLINGS.values():
        return "lower"
    import astropy.units as u  # a unit other than asv's own passed _unit: astropy is here

    return "higher" if u.Unit(unit).is_equivalent(1 / u.s) else "lower"


def _benchmark_type(name: str, info: Mapping[str, Any]) -> str:
    kind = info.get("type")
    if isinstance(kind, str):
        return kind
    prefix = name.rsplit(".", 1)[-1].split("_", 1)[0]
    return _TYPES_BY_PREFIX.get(prefix, "track")


def _param_text(value: Any) -> str:
    text = str(value)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _load_benchmarks(results_dir: Path) -> dict[str, Mapping[str, Any]]:
    path = results_dir / "benchmarks.json"
    if not path.is_file():
        raise BadInputError(
            f"{results_dir}: no benchmarks.json: give asv's results directory (.asv/results)"
        )
    data = read_json_file(path, "asv's benchmarks.json")
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: not an object of benchmarks, so not asv's benchmarks.json")
    return {name: info for name, info in data.items() if isinstance(info, dict)}


def _load_results(path: Path) -> dict[str, Any]:
    data = read_json_file(path, "an asv result file")
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: not a JSON object, so not an asv result file")
    version = data.get("version")
    if version != FORMAT_VERSION:
        raise BadInputError(
            f"{path}: asv result format version {version!r}; only {FORMAT_VERSION} is read "
            "(run `asv update` on older results)"
        )
    for key, kind in (("commit_hash", str), ("result_columns", list), ("results", dict)):
        if not isinstance(data.get(key), kind):
            raise BadInputError(f"{path}: {key!r} is missing or not a {kind.__name__}")
    for column in ("result", "params"):
        if column not in data["result_columns"]:
            raise BadInputError(f"{path}: result_columns has no {column!r}")
    if not isinstance(data.get("date"), int | float) or isinstance(data.get("date"), bool):
        raise BadInputError(f"{path}: 'date' is not a number of milliseconds since 1970")
    return data


def _add_benchmark(
    job: ImportedJob,
    name: str,
    row: Sequence[Any],
    columns: Sequence[str],
    info: Mapping[str, Any],
    package: str | None,
) -> None:
    cells = dict(zip(columns, row, strict=False))
    params = cells.get("params") or []
    if not isinstance(params, list) or not all(isinstance(p, list) for p in params):
        raise BadInputError(f"{job.source}: the params of {name!r} are not a list of lists")
    values = cells.get("result")
    combinations = list(itertools.product(*params))
    if values is None:  # every combination failed
        values = [None] * len(combinations)
    if not isinstance(values, list) or len(values) != len(combinations):
        count = len(values) if isinstance(values, list) else "no list of"
        raise BadInputError(
            f"{job.source}: benchmark {name!r} has {count} results for "
            f"{len(combinations)} parameter combinations"
        )
    kind = _benchmark_type(name, info)
    raw_unit = str(info.get("unit") or _DEFAULT_UNITS.get(kind, ""))
    unit = _unit(raw_unit)
    direction = _direction(unit)
    module, _, rest = name.partition(".")
    stem = name if package is not None or not rest else rest
    names = info.get("param_names")
    if not isinstance(names, list) or len(names) != len(params):
        names = [f"param{i + 1}" for i in range(len(params))]
    description = f"asv {kind} benchmark {name}" + (
        f" (unit {raw_unit!r})" if not unit and raw_unit.strip() not in _UNIT_SPELLINGS else ""
    )
    package_name = package or derived_package(module if rest else "", "asv")
    for index, (combination, value) in enumerate(zip(combinations, values, strict=True)):
        suffix = ",".join(f"{n}={_param_text(v)}" for n, v in zip(names, combination, strict=True))
        full = f"{stem}({suffix})" if params else stem
        notes: dict[str, Any] = finite_items(
            {
                "benchmark": name,
                "version": cells.get("version"),
                "started_at_ms": cells.get("started_at"),
                "duration_s": cells.get("duration"),
            }
        )
        if params:
            notes["params"] = dict(zip(names, combination, strict=True))
        stats = {
            key: column[index]
            for key in _STATS_COLUMNS
            if isinstance(column := cells.get(f"stats_{key}"), list) and index < len(column)
        }
        if stats := finite_items(stats):
            notes["stats"] = stats
        job.measure(
            f"{package_name}.{metric_part(full)}",
            number(value),
            unit,
            origin=f"{name}{combination!r}" if params else name,
            direction=direction,
            description=description,
            notes=notes,
        )


def _result_files(results_dir: Path, machine: str | None) -> list[tuple[Path, Mapping[str, Any]]]:
    """Each result file with its machine.json (machines without one are skipped, as asv does)."""
    files: list[tuple[Path, Mapping[str, Any]]] = []
    for machine_file in sorted(results_dir.glob("*/machine.json")):
        info = read_json_file(machine_file, "asv's machine.json")
        if not isinstance(info, dict):
            raise BadInputError(f"{machine_file}: not a JSON object, so not asv's machine.json")
        name = str(info.get("machine") or machine_file.parent.name)
        if machine is not None and machine not in (name, machine_file.parent.name):
            continue
        files += [
            (path, info)
            for path in sorted(machine_file.parent.glob("*.json"))
            if path.name != "machine.json"
        ]
    return files


def jobs_from_asv(
    results_dir: Path,
    *,
    package: str | None = None,
    machine: str | None = None,
    commit: str | None = None,
) -> list[NamedJob]:
    """One job per asv result file under ``results_dir``, oldest commit first.

    ``machine`` keeps one machine's results; ``commit`` those whose hash starts with it.

    Raises:
        BadInputError: not asv's results directory, a file of the wrong shape or format
            version, no result file left, two benchmarks mapping to one metric.
    """
    if package is not None:
        checked_name(package, "--package")
    benchmarks = _load_benchmarks(results_dir)
    found: list[tuple[float, str, NamedJob]] = []
    for path, machine_info in _result_files(results_dir, machine):
        data = _load_results(path)
        commit_hash: str = data["commit_hash"]
        if commit is not None and not commit_hash.lower().startswith(commit.lower()):
            continue
        job = ImportedJob(path)
        for name, row in sorted(data["results"].items()):
            if not isinstance(row, list):
                raise BadInputError(f"{path}: the results of {name!r} are not a list")
            _add_benchmark(
                job, name, row, data["result_columns"], benchmarks.get(name, {}), package
            )
        date_ms = float(data["date"])
        if not math.isfinite(date_ms):
            raise BadInputError(f"{path}: 'date' is not a finite number")
        machine_name = str(machine_info.get("machine") or path.parent.name)
        job.builder.meta.update(
            commit=commit_hash,
            time=iso_time(datetime.fromtimestamp(date_ms / 1000, UTC)),
            machine={k: v for k, v in machine_info.items() if k != "version"},
            asv_env=finite_items(
                {
                    "name": data.get("env_name"),
                    "python": data.get("python"),
                    "requirements": data.get("requirements"),
                }
            ),
        )
        found.append((date_ms, path.as_posix(), job.named(f"asv-{machine_name}-{path.stem}")))
    if not found:
        wanted = "".join(
            f" {label} {value!r}"
            for label, value in (("machine", machine), ("commit", commit))
            if value is not None
        )
        raise BadInputError(f"{results_dir}: no asv result file{' for' + wanted if wanted else ''}")
    return [job for _, _, job in sorted(found, key=lambda item: item[:2])]


@click.command("asv")
@click.argument("results_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--package",
    help="The metrics' package; the whole benchmark name becomes the metric part "
    "(default: each benchmark's module is its package).",
)
@click.option("--machine", help="Only this machine's results (asv's machine name).")
@click.option("--commit", help="Only the results of this commit (a hash or its prefix).")
@job_output_options
@one_line_errors
def asv_command(
    results_dir: Path,
    package: str | None,
    machine: str | None,
    commit: str | None,
    output: JobOutput,
) -> None:
    """Import airspeed velocity results (RESULTS_DIR: .asv/results): one job per result file,
    that is per commit and environment."""
    jobs = jobs_from_asv(results_dir, package=package, machine=machine, commit=commit)
    emit_jobs(jobs, output)
