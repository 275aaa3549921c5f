"""Import a pytest-benchmark ``--benchmark-json`` file: one job, one metric per benchmark.

The file holds ``machine_info``, ``commit_info`` (``id``, ``branch``, ``time``, ``dirty``,
``project``), ``datetime`` (when the session ran) and ``benchmarks``: each with ``fullname``
(the pytest node id), ``group``, ``params`` and ``stats`` in seconds (``min``, ``max``,
``mean``, ``stddev``, ``median``, ``iqr``, ``ops``, ``rounds``, …).

Names (see :mod:`.names` for the character rules): the node id
``tests/perf/test_io.py::TestRead::test_read[1.5-big]`` gives, by default, the test file's stem
as package and the rest as metric part: ``test_io.TestRead:test_read[1p5-big]``; with
``--package P`` the whole id is the metric part (``.py`` dropped, ``/`` and ``::`` → ``:``):
``P.tests:perf:test_io:TestRead:test_read[1p5-big]``.

Values: the ``--stat`` (median by default; or min, mean) in ``s``, lower is better; the other
statistics, group, params and extra_info are the measurement's notes.  Meta: ``commit``,
``branch`` (unless pytest-benchmark wrote ``unknown``/``(unknown)``), ``time`` (``datetime``,
when the benchmarks ran), ``commit_time``, ``dirty``, ``project``, ``machine`` (machine_info
without the CPU flags) and ``pytest_benchmark_version``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import click

from specwatch.collectors.cli import one_line_errors
from specwatch.collectors.emit import JobOutput, NamedJob, emit_jobs, job_output_options
from specwatch.collectors.errors import BadInputError
from specwatch.collectors.job import read_json_file

from .imported_job import ImportedJob, finite_items, number
from .names import checked_name, derived_package, metric_part

Stat = Literal["min", "mean", "median"]
STATS: tuple[Stat, ...] = ("min", "mean", "median")
_UNKNOWN = frozenset({"", "unknown", "unversioned", "(unknown)", "(detached head)"})
_NOTE_KEYS = ("group", "param", "params", "extra_info")


def _split_node_id(node_id: str) -> tuple[str, list[str]]:
    """``path/test_x.py::Class::test[id]`` → (``path/test_x``, [``Class``, ``test[id]``])."""
    head, bracket, tail = node_id.partition("[")
    parts = head.split("::")
    parts[-1] += bracket + tail
    module = parts[0].removesuffix(".py") if len(parts) > 1 else ""
    return module, parts[1:] if len(parts) > 1 else parts


def metric_name(node_id: str, package: str | None) -> str:
    """The metric of the benchmark with pytest node id ``node_id`` (see the module's doc)."""
    module, names = _split_node_id(node_id)
    if package is not None:
        return f"{package}.{metric_part(':'.join([module, *names] if module else names))}"
    stem = module.rsplit("/", 1)[-1]
    return f"{derived_package(stem, 'pytest_benchmark')}.{metric_part(':'.join(names))}"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip().lower() not in _UNKNOWN else None


def _meta(data: Mapping[str, Any]) -> dict[str, Any]:
    commit = data.get("commit_info")
    commit = commit if isinstance(commit, dict) else {}
    machine = data.get("machine_info")
    machine = dict(machine) if isinstance(machine, dict) else {}
    if isinstance(machine.get("cpu"), dict):
        machine["cpu"] = {k: v for k, v in machine["cpu"].items() if k != "flags"}
    return finite_items(
        {
            "commit": _text(commit.get("id")),
            "branch": _text(commit.get("branch")),
            "time": _text(data.get("datetime")),
            "commit_time": _text(commit.get("time")),
            "dirty": commit.get("dirty"),
            "project": _text(commit.get("project")),
            "machine": machine or None,
            "pytest_benchmark_version": _text(data.get("version")),
        }
    )


def job_from_pytest_benchmark(
    path: Path, *, package: str | None = None, stat: Stat = "median"
) -> NamedJob:
    """The job of a pytest-benchmark JSON file.

    Raises:
        BadInputError: not JSON, not pytest-benchmark's shape, a benchmark without ``stat``,
            two benchmarks mapping to one metric.
    """
    if package is not None:
        checked_name(package, "--package")
    if stat not in STATS:
        raise BadInputError(f"--stat {stat!r}: give one of {', '.join(STATS)}")
    data = read_json_file(path, "a pytest-benchmark JSON file")
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BadInputError(
            f"{path}: no 'benchmarks' list, so not a pytest-benchmark --benchmark-json file"
        )
    job = ImportedJob(path)
    for index, bench in enumerate(data["benchmarks"]):
        if not isinstance(bench, dict):
            raise BadInputError(f"{path}: benchmark {index} is not an object")
        node_id = bench.get("fullname") or bench.get("name")
        if not isinstance(node_id, str) or not node_id:
            raise BadInputError(f"{path}: benchmark {index} has no name")
        stats = bench.get("stats")
        if stats is not None and (not isinstance(stats, dict) or stat not in stats):
            raise BadInputError(f"{path}: benchmark {node_id!r} has no {stat!r} in its stats")
        notes = finite_items({key: bench.get(key) for key in _NOTE_KEYS})
        if stats:
            notes["stats"] = finite_items({k: v for k, v in stats.items() if k != "data"})
        job.measure(
            metric_name(node_id, package),
            number(stats.get(stat) if stats else None),
            "s",
            origin=node_id,
            direction="lower",
            description=f"pytest-benchmark {stat} time of {node_id}",
            notes=notes,
        )
    job.builder.meta.update(_meta(data))
    return job.named(f"pytest-benchmark-{path.stem}")


@click.command("pytest-benchmark")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--package",
    help="The metrics' package; the whole node id becomes the metric part "
    "(default: each test file's stem is its package).",
)
@click.option(
    "--stat",
    type=click.Choice(STATS),
    default="median",
    show_default=True,
    help="The statistic measured; the others go to the notes.",
)
@job_output_options
@one_line_errors
def pytest_benchmark_command(
    file: Path, package: str | None, stat: Stat, output: JobOutput
) -> None:
    """Import a pytest-benchmark --benchmark-json FILE: one metric per benchmark, in seconds."""
    emit_jobs([job_from_pytest_benchmark(file, package=package, stat=stat)], output)
