"""The benchmark importers (asv, pytest-benchmark, Google Benchmark) on files in each tool's
real format, checked with the server's own job and definition parsers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from specwatch.collectors.emit import NamedJob
from specwatch.collectors.errors import BadInputError
from specwatch.collectors.importers.asv import asv_command, jobs_from_asv
from specwatch.collectors.importers.gbench import gbench_command, job_from_gbench
from specwatch.collectors.importers.names import checked_name, metric_part
from specwatch.collectors.importers.pytest_benchmark import (
    job_from_pytest_benchmark,
    pytest_benchmark_command,
)
from specwatch.metrics.definitions import parse_job_metrics
from specwatch.metrics.jobs import convert_measurements, parse_job_document

NAN = float("nan")


def server_reads(document: dict[str, Any]) -> None:
    """The server parses the job, its definitions, and converts every measurement."""
    parsed = parse_job_document(json.loads(json.dumps(document)))
    metrics = {m.full_name: m for m in parse_job_metrics(parsed.metric_definitions)}
    assert len(convert_measurements(parsed.measurements, metrics)) == len(parsed.measurements)


def values(job: NamedJob) -> dict[str, float | None]:
    return {m["metric"]: m["value"] for m in job.document["measurements"]}


def definitions(job: NamedJob) -> dict[str, tuple[str, str]]:
    return {m["name"]: (m["unit"], m["direction"]) for m in job.document["metrics"]}


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))  # NaN as the NaN token, as asv and gbench write it
    return path


# --- names -------------------------------------------------------------------------------


def test_metric_part_maps_separators_decimals_and_control_characters() -> None:
    assert (
        metric_part("TimeSuite.time_keys(n=0.5,kind=a.b)") == "TimeSuite:time_keys(n=0p5,kind=a:b)"
    )
    assert metric_part("tests/x.py::t[a b\tc\x00]") == "tests:x:py::t[a_b_c]"
    assert metric_part("v1.2.x") == "v1p2:x"


def test_long_metric_parts_are_cut_with_a_stable_hash() -> None:
    long_a, long_b = "b" * 300 + "_a", "b" * 300 + "_b"
    assert len(metric_part(long_a)) == 200
    assert metric_part(long_a) == metric_part(long_a) != metric_part(long_b)


@pytest.mark.parametrize("bad", ["", "a.b", "a/b", "a b", "a\x01", "x" * 201])
def test_user_names_are_checked(bad: str) -> None:
    with pytest.raises(BadInputError, match="--package"):
        checked_name(bad, "--package")


# --- asv ---------------------------------------------------------------------------------

ASV_COLUMNS = [
    "result",
    "params",
    "version",
    "started_at",
    "duration",
    "stats_ci_99_a",
    "stats_ci_99_b",
    "stats_q_25",
    "stats_q_75",
    "stats_number",
    "stats_repeat",
    "samples",
    "profile",
]
TIME_KEYS_PARAMS = [["10", "0.5"], ["'a.b'", "'c'"]]


def asv_benchmarks() -> dict[str, Any]:
    def bench(name: str, kind: str, unit: str, params: Any = (), names: Any = ()) -> Any:
        return {
            "code": "def f(): pass",
            "name": name,
            "param_names": list(names),
            "params": list(params),
            "timeout": 60.0,
            "type": kind,
            "unit": unit,
            "version": "0" * 64,
        }

    benches = [
        bench("benchmarks.TimeSuite.time_keys", "time", "seconds", TIME_KEYS_PARAMS, ["n", "kind"]),
        bench("benchmarks.mem_list", "memory", "bytes"),
        bench("benchmarks.peakmem_list", "peakmemory", "bytes"),
        bench("benchmarks.track_rate", "track", "1/s"),
        bench("benchmarks.track_value", "track", "widgets"),
        bench("benchmarks.time_fail", "time", "seconds"),
    ]
    return {**{b["name"]: b for b in benches}, "version": 2}


def asv_result(commit: str, date_ms: int, time_keys: list[Any]) -> dict[str, Any]:
    version = "0" * 64
    return {
        "commit_hash": commit,
        "env_name": "virtualenv-py3.11-numpy",
        "date": date_ms,
        "params": {"arch": "x86_64", "machine": "cheetah", "python": "3.11", "numpy": ""},
        "python": "3.11",
        "requirements": {"numpy": ""},
        "env_vars": {},
        "result_columns": ASV_COLUMNS,
        "results": {
            "benchmarks.TimeSuite.time_keys": [
                time_keys,
                TIME_KEYS_PARAMS,
                version,
                date_ms + 5000,
                1.25,
                [-math.inf, 1e-6, None, None],
                [math.inf, 3e-6, None, None],
                [1.1e-6, 2.1e-6, None, None],
                [1.2e-6, 2.2e-6, None, None],
                [1000, 1000, None, None],
                [10, 10, None, None],
            ],
            "benchmarks.mem_list": [[856], [], version, date_ms + 6000, 0.38],
            "benchmarks.peakmem_list": [[24633344], [], version, date_ms + 7000, 0.37],
            "benchmarks.track_rate": [[3.0], [], version, date_ms + 8000, 0.09],
            "benchmarks.track_value": [[42.0], [], version, date_ms + 9000, 0.09],
            "benchmarks.time_fail": [None, [], version, date_ms + 9500, 0.09],
            "benchmarks.time_removed": [[0.5], [], version, date_ms + 9900, 0.09],
        },
        "durations": {"<build>": 12.5},
        "version": 2,
    }


COMMIT_A = "aaaaaaaa" + "1" * 32
COMMIT_B = "bbbbbbbb" + "2" * 32


@pytest.fixture
def asv_dir(tmp_path: Path) -> Path:
    return make_asv_results(tmp_path)


def make_asv_results(root: Path) -> Path:
    """An asv results tree under ``root``: two commits of one machine; returns .asv/results."""
    results = root / ".asv" / "results"
    write_json(results / "benchmarks.json", asv_benchmarks())
    machine = {
        "arch": "x86_64",
        "cpu": "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz",
        "machine": "cheetah",
        "num_cpu": "8",
        "os": "Linux 6.1.0",
        "ram": "16GB",
        "version": 1,
    }
    write_json(results / "cheetah" / "machine.json", machine)
    # Written out of date order: jobs come out oldest first.
    write_json(
        results / "cheetah" / "bbbbbbbb-virtualenv-py3.11-numpy.json",
        asv_result(COMMIT_B, 1_700_086_400_000, [2e-6, 3e-6, 4e-6, 5e-6]),
    )
    write_json(
        results / "cheetah" / "aaaaaaaa-virtualenv-py3.11-numpy.json",
        asv_result(COMMIT_A, 1_700_000_000_000, [1e-6, 2e-6, NAN, None]),
    )
    return results


def test_asv_one_job_per_commit_with_names_values_units(asv_dir: Path) -> None:
    jobs = jobs_from_asv(asv_dir)
    assert [job.name for job in jobs] == [
        "asv-cheetah-aaaaaaaa-virtualenv-py3.11-numpy",
        "asv-cheetah-bbbbbbbb-virtualenv-py3.11-numpy",
    ]
    first = jobs[0]
    assert values(first) == {
        "benchmarks.TimeSuite:time_keys(n=10,kind=a:b)": 1e-6,
        "benchmarks.TimeSuite:time_keys(n=10,kind=c)": 2e-6,
        "benchmarks.TimeSuite:time_keys(n=0p5,kind=a:b)": None,  # skipped (NaN)
        "benchmarks.TimeSuite:time_keys(n=0p5,kind=c)": None,  # failed (null)
        "benchmarks.mem_list": 856.0,
        "benchmarks.peakmem_list": 24633344.0,
        "benchmarks.track_rate": 3.0,
        "benchmarks.track_value": 42.0,
        "benchmarks.time_fail": None,
        "benchmarks.time_removed": 0.5,  # not in benchmarks.json: a time_ benchmark
    }
    assert definitions(first) == {
        "benchmarks.TimeSuite:time_keys(n=10,kind=a:b)": ("s", "lower"),
        "benchmarks.TimeSuite:time_keys(n=10,kind=c)": ("s", "lower"),
        "benchmarks.TimeSuite:time_keys(n=0p5,kind=a:b)": ("s", "lower"),
        "benchmarks.TimeSuite:time_keys(n=0p5,kind=c)": ("s", "lower"),
        "benchmarks.mem_list": ("byte", "lower"),
        "benchmarks.peakmem_list": ("byte", "lower"),
        "benchmarks.track_rate": ("1/s", "higher"),
        "benchmarks.track_value": ("", "lower"),  # 'widgets' is no astropy unit
        "benchmarks.time_fail": ("s", "lower"),
        "benchmarks.time_removed": ("s", "lower"),
    }
    units = {m["metric"]: m["unit"] for m in first.document["measurements"]}
    assert units["benchmarks.mem_list"] == "byte"
    widgets = next(m for m in first.document["metrics"] if m["name"].endswith("track_value"))
    assert "'widgets'" in widgets["description"]
    assert values(jobs[1])["benchmarks.TimeSuite:time_keys(n=0p5,kind=c)"] == 5e-6
    for job in jobs:
        server_reads(job.document)


def test_asv_meta_and_notes(asv_dir: Path) -> None:
    first = jobs_from_asv(asv_dir)[0].document
    assert first["meta"] == {
        "commit": COMMIT_A,
        "time": "2023-11-14T22:13:20+00:00",
        "machine": {
            "arch": "x86_64",
            "cpu": "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz",
            "machine": "cheetah",
            "num_cpu": "8",
            "os": "Linux 6.1.0",
            "ram": "16GB",
        },
        "asv_env": {
            "name": "virtualenv-py3.11-numpy",
            "python": "3.11",
            "requirements": {"numpy": ""},
        },
    }
    notes = {m["metric"]: m.get("notes") for m in first["measurements"]}
    assert notes["benchmarks.TimeSuite:time_keys(n=10,kind=c)"] == {
        "benchmark": "benchmarks.TimeSuite.time_keys",
        "version": "0" * 64,
        "started_at_ms": 1_700_000_005_000,
        "duration_s": 1.25,
        "params": {"n": "10", "kind": "'c'"},
        "stats": {
            "ci_99_a": 1e-6,
            "ci_99_b": 3e-6,
            "q_25": 2.1e-6,
            "q_75": 2.2e-6,
            "number": 1000,
            "repeat": 10,
        },
    }
    # asv's infinite confidence bounds of a quick run are left out, not sent as null
    assert "ci_99_a" not in notes["benchmarks.TimeSuite:time_keys(n=10,kind=a:b)"]["stats"]


def test_asv_package_machine_and_commit_options(asv_dir: Path) -> None:
    jobs = jobs_from_asv(asv_dir, package="astro", commit="BBBB")
    assert len(jobs) == 1
    assert jobs[0].document["meta"]["commit"] == COMMIT_B
    assert "astro.benchmarks:TimeSuite:time_keys(n=10,kind=a:b)" in values(jobs[0])
    assert "astro.benchmarks:mem_list" in values(jobs[0])
    with pytest.raises(BadInputError, match="no asv result file for machine 'lynx'"):
        jobs_from_asv(asv_dir, machine="lynx")
    with pytest.raises(BadInputError, match="commit 'cccc'"):
        jobs_from_asv(asv_dir, commit="cccc")
    with pytest.raises(BadInputError, match=r"--package 'a\.b'"):
        jobs_from_asv(asv_dir, package="a.b")


def test_asv_bad_inputs_name_the_file(asv_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"no benchmarks\.json: give asv's results directory"):
        jobs_from_asv(tmp_path)
    old = asv_dir / "cheetah" / "cccccccc-py2.7.json"
    write_json(old, {"commit_hash": "c" * 40, "date": 1, "results": {}, "version": 1})
    with pytest.raises(BadInputError, match=r"cccccccc-py2\.7\.json: asv result format version 1"):
        jobs_from_asv(asv_dir)
    old.write_text("{not json")
    with pytest.raises(BadInputError, match=r"cccccccc-py2\.7\.json: not JSON"):
        jobs_from_asv(asv_dir)
    broken = asv_result("c" * 40, 1, [1.0, 2.0])  # 2 results for 4 combinations
    write_json(old, broken)
    with pytest.raises(BadInputError, match="has 2 results for 4 parameter combinations"):
        jobs_from_asv(asv_dir)


def test_asv_command_writes_a_directory(asv_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "jobs"
    result = CliRunner().invoke(asv_command, [str(asv_dir), "--output", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "asv-cheetah-aaaaaaaa-virtualenv-py3.11-numpy.json",
        "asv-cheetah-bbbbbbbb-virtualenv-py3.11-numpy.json",
    ]
    server_reads(json.loads((out / files[0]).read_text()))
    missing = CliRunner().invoke(asv_command, [str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert missing.output.strip().startswith("specwatch: error: ")
    assert len(missing.output.strip().splitlines()) == 1


# --- pytest-benchmark --------------------------------------------------------------------


def pytest_stats(median: float, **extra: Any) -> dict[str, Any]:
    return {
        "min": median * 0.9,
        "max": median * 2,
        "mean": median * 1.1,
        "stddev": median * 0.05,
        "rounds": 1581,
        "median": median,
        "iqr": median * 0.01,
        "q1": median * 0.99,
        "q3": median * 1.01,
        "iqr_outliers": 149,
        "stddev_outliers": 66,
        "outliers": "66;149",
        "ld15iqr": median * 0.9,
        "hd15iqr": median * 1.2,
        "ops": 1 / (median * 1.1),
        "total": median * 1581,
        "iterations": 10,
        **extra,
    }


def pytest_benchmark_file(path: Path, commit_id: str = "4d29a44c" + "0" * 32) -> Path:
    def bench(fullname: str, group: str | None, params: Any, param: Any, median: float) -> Any:
        return {
            "group": group,
            "name": fullname.rsplit("::", 1)[-1],
            "fullname": fullname,
            "params": params,
            "param": param,
            "extra_info": {"rows": 100},
            "options": {
                "disable_gc": False,
                "timer": "perf_counter",
                "min_rounds": 5,
                "max_time": 1.0,
                "min_time": 5e-06,
                "warmup": False,
            },
            "stats": pytest_stats(median, data=[median] * 3),
        }

    data = {
        "machine_info": {
            "node": "ci-runner-7",
            "processor": "x86_64",
            "machine": "x86_64",
            "python_compiler": "GCC 12.2.0",
            "python_implementation": "CPython",
            "python_implementation_version": "3.11.7",
            "python_version": "3.11.7",
            "python_build": ["main", "Dec  4 2023 18:10:11"],
            "release": "6.1.0",
            "system": "Linux",
            "cpu": {
                "arch": "X86_64",
                "bits": 64,
                "count": 8,
                "brand_raw": "AMD EPYC",
                "flags": ["avx", "avx2", "sse4_2"],
            },
        },
        "commit_info": {
            "id": commit_id,
            "time": "2024-03-01T10:00:00+01:00",
            "author_time": "2024-03-01T09:59:00+01:00",
            "dirty": True,
            "project": "pipe_tasks",
            "branch": "tickets/DM-1234",
        },
        "benchmarks": [
            bench(
                "tests/perf/test_io.py::TestRead::test_read[1.5-big]",
                "io",
                {"scale": 1.5, "size": "big"},
                "1.5-big",
                0.002,
            ),
            bench(
                "tests/perf/test_io.py::TestRead::test_read[a.b/c]",
                "io",
                {"scale": "a.b/c"},
                "a.b/c",
                0.003,
            ),
            bench("tests/test_sort.py::test_sort", None, None, None, 4.8e-7),
        ],
        "datetime": "2024-03-01T09:12:53.913196+00:00",
        "version": "5.1.0",
    }
    return write_json(path, data)


def test_pytest_benchmark_names_values_and_units(tmp_path: Path) -> None:
    job = job_from_pytest_benchmark(pytest_benchmark_file(tmp_path / "bench.json"))
    assert job.name == "pytest-benchmark-bench"
    assert values(job) == {
        "test_io.TestRead:test_read[1p5-big]": 0.002,
        "test_io.TestRead:test_read[a:b:c]": 0.003,
        "test_sort.test_sort": 4.8e-7,
    }
    assert set(definitions(job).values()) == {("s", "lower")}
    described = {m["name"]: m["description"] for m in job.document["metrics"]}
    assert described["test_sort.test_sort"] == (
        "pytest-benchmark median time of tests/test_sort.py::test_sort"
    )
    first = job.document["measurements"][0]
    assert first["unit"] == "s"
    assert first["notes"]["group"] == "io"
    assert first["notes"]["params"] == {"scale": 1.5, "size": "big"}
    assert first["notes"]["extra_info"] == {"rows": 100}
    assert first["notes"]["stats"]["ops"] == pytest.approx(1 / 0.0022)
    assert "data" not in first["notes"]["stats"]  # the raw timings stay in the file
    server_reads(job.document)


def test_pytest_benchmark_package_stat_and_meta(tmp_path: Path) -> None:
    path = pytest_benchmark_file(tmp_path / "bench.json")
    job = job_from_pytest_benchmark(path, package="pipe_tasks", stat="min")
    assert values(job) == {
        "pipe_tasks.tests:perf:test_io:TestRead:test_read[1p5-big]": pytest.approx(0.0018),
        "pipe_tasks.tests:perf:test_io:TestRead:test_read[a:b:c]": pytest.approx(0.0027),
        "pipe_tasks.tests:test_sort:test_sort": pytest.approx(4.32e-7),
    }
    meta = job.document["meta"]
    assert {k: v for k, v in meta.items() if k != "machine"} == {
        "commit": "4d29a44c" + "0" * 32,
        "branch": "tickets/DM-1234",
        "time": "2024-03-01T09:12:53.913196+00:00",
        "commit_time": "2024-03-01T10:00:00+01:00",
        "dirty": True,
        "project": "pipe_tasks",
        "pytest_benchmark_version": "5.1.0",
    }
    assert meta["machine"]["cpu"] == {
        "arch": "X86_64",
        "bits": 64,
        "count": 8,
        "brand_raw": "AMD EPYC",
    }
    server_reads(job.document)


def test_pytest_benchmark_outside_git_has_no_commit(tmp_path: Path) -> None:
    path = pytest_benchmark_file(tmp_path / "bench.json", commit_id="unversioned")
    data = json.loads(path.read_text())
    data["commit_info"]["branch"] = "(unknown)"
    write_json(path, data)
    meta = job_from_pytest_benchmark(path).document["meta"]
    assert "commit" not in meta and "branch" not in meta


def test_pytest_benchmark_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"nothing\.json: no such file"):
        job_from_pytest_benchmark(tmp_path / "nothing.json")
    other = write_json(tmp_path / "other.json", {"context": {}, "benchmarks": {}})
    with pytest.raises(BadInputError, match=r"other\.json: no 'benchmarks' list"):
        job_from_pytest_benchmark(other)
    path = pytest_benchmark_file(tmp_path / "bench.json")
    data = json.loads(path.read_text())
    del data["benchmarks"][2]["stats"]["median"]
    write_json(path, data)
    with pytest.raises(BadInputError, match=r"'tests/test_sort\.py::test_sort' has no 'median'"):
        job_from_pytest_benchmark(path)
    data["benchmarks"].append(dict(data["benchmarks"][0]))
    data["benchmarks"][-1]["fullname"] = "tests/perf/test_io.py::TestRead::test_read[1p5-big]"
    write_json(path, data)
    with pytest.raises(BadInputError, match="both map to metric"):
        job_from_pytest_benchmark(path, stat="mean")


def test_pytest_benchmark_command(tmp_path: Path) -> None:
    path = pytest_benchmark_file(tmp_path / "bench.json")
    out = tmp_path / "job.json"
    args = [str(path), "--stat", "mean", "--package", "pt", "-o", str(out)]
    result = CliRunner().invoke(pytest_benchmark_command, args)
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert {m["metric"]: m["value"] for m in document["measurements"]}[
        "pt.tests:test_sort:test_sort"
    ] == pytest.approx(4.8e-7 * 1.1)
    server_reads(document)
    bad = CliRunner().invoke(pytest_benchmark_command, [str(path), "--package", "a/b"])
    assert bad.exit_code == 2
    assert "--package 'a/b'" in bad.output


# --- Google Benchmark --------------------------------------------------------------------

GBENCH_CONTEXT = {
    "date": "2024-03-01T10:18:24+01:00",
    "host_name": "ci-runner-7",
    "executable": "/build/bench/sort_bench",
    "num_cpus": 8,
    "mhz_per_cpu": 2596,
    "cpu_scaling_enabled": False,
    "caches": [{"type": "Data", "level": 1, "size": 32768, "num_sharing": 1}],
    "load_avg": [0.52, 0.32, 0.15],
    "library_version": "v1.8.3",
    "library_build_type": "release",
    "json_schema_version": 1,
}


def gbench_row(name: str, real: float, cpu: float, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "family_index": 0,
        "per_family_instance_index": 0,
        "run_name": name,
        "run_type": "iteration",
        "repetitions": 1,
        "repetition_index": 0,
        "threads": 1,
        "iterations": 1000,
        "real_time": real,
        "cpu_time": cpu,
        "time_unit": "ns",
    }
    row.update(fields)
    return row


def gbench_rows() -> list[dict[str, Any]]:
    run = "BM_Sort/1024"
    counters = {"bytes_per_second": 2.0e8, "items_per_second": 2.5e7, "collisions": 3.0}
    reps = [
        gbench_row(run, real, real - 10, repetitions=3, repetition_index=i, **counters)
        for i, real in enumerate((500.0, 700.0, 560.0))
    ]
    aggregates = [
        gbench_row(
            f"{run}_{name}",
            real,
            real - 10,
            run_type="aggregate",
            repetitions=3,
            aggregate_name=name,
            aggregate_unit=unit,
            iterations=3,
            run_name=run,
            **counters,
        )
        for name, real, unit in (
            ("mean", 586.7, "time"),
            ("median", 560.0, "time"),
            ("stddev", 101.9, "time"),
            ("cv", 0.17, "percentage"),
        )
    ]
    for row in aggregates:
        del row["repetition_index"]
    return [
        *reps,
        *aggregates,
        gbench_row(
            "BM_Parse/real_time",
            2.5,
            2.4,
            time_unit="us",
            label="json",
            max_bytes_used=4096,
            allocs_per_iter=12.0,
        ),
        gbench_row("BM_Broken", 0.0, 0.0, error_occurred=True, error_message="no input"),
        # complexity rows of a family: nothing to measure
        {
            "name": "BM_Grow_BigO",
            "run_name": "BM_Grow",
            "run_type": "aggregate",
            "repetitions": 1,
            "threads": 1,
            "aggregate_name": "BigO",
            "aggregate_unit": "time",
            "cpu_coefficient": 1.2,
            "real_coefficient": 1.3,
            "big_o": "N",
            "time_unit": "ns",
        },
        {
            "name": "BM_Grow_RMS",
            "run_name": "BM_Grow",
            "run_type": "aggregate",
            "repetitions": 1,
            "threads": 1,
            "aggregate_name": "RMS",
            "aggregate_unit": "percentage",
            "rms": 0.05,
        },
    ]


def gbench_file(path: Path, rows: list[dict[str, Any]] | None = None, **context: Any) -> Path:
    return write_json(
        path, {"context": {**GBENCH_CONTEXT, **context}, "benchmarks": rows or gbench_rows()}
    )


def test_gbench_median_aggregates_counters_and_units(tmp_path: Path) -> None:
    job = job_from_gbench(gbench_file(tmp_path / "out.json"))
    assert job.name == "gbench-sort_bench"
    assert values(job) == {
        "sort_bench.BM_Sort:1024": 560.0,
        "sort_bench.BM_Sort:1024:cpu": 550.0,
        "sort_bench.BM_Sort:1024:bytes_per_second": 2.0e8,
        "sort_bench.BM_Sort:1024:collisions": 3.0,
        "sort_bench.BM_Sort:1024:items_per_second": 2.5e7,
        "sort_bench.BM_Parse:real_time": 2.5,
        "sort_bench.BM_Parse:real_time:cpu": 2.4,
        "sort_bench.BM_Parse:real_time:allocs_per_iter": 12.0,
        "sort_bench.BM_Parse:real_time:max_bytes_used": 4096.0,
        "sort_bench.BM_Broken": None,
        "sort_bench.BM_Broken:cpu": None,
    }
    assert definitions(job) == {
        "sort_bench.BM_Sort:1024": ("ns", "lower"),
        "sort_bench.BM_Sort:1024:cpu": ("ns", "lower"),
        "sort_bench.BM_Sort:1024:bytes_per_second": ("byte/s", "higher"),
        "sort_bench.BM_Sort:1024:collisions": ("", "none"),
        "sort_bench.BM_Sort:1024:items_per_second": ("1/s", "higher"),
        "sort_bench.BM_Parse:real_time": ("us", "lower"),
        "sort_bench.BM_Parse:real_time:cpu": ("us", "lower"),
        "sort_bench.BM_Parse:real_time:allocs_per_iter": ("", "lower"),
        "sort_bench.BM_Parse:real_time:max_bytes_used": ("byte", "lower"),
        "sort_bench.BM_Broken": ("ns", "lower"),
        "sort_bench.BM_Broken:cpu": ("ns", "lower"),
    }
    notes = {m["metric"]: m.get("notes") for m in job.document["measurements"]}
    assert notes["sort_bench.BM_Sort:1024"] == {
        "iterations": 3,
        "repetitions": 3,
        "threads": 1,
        "aggregate_name": "median",
    }
    assert notes["sort_bench.BM_Parse:real_time"]["label"] == "json"
    assert notes["sort_bench.BM_Broken"]["error_message"] == "no input"
    meta = job.document["meta"]
    assert meta["time"] == "2024-03-01T10:18:24+01:00"
    assert meta["executable"] == "/build/bench/sort_bench"
    assert meta["machine"]["host_name"] == "ci-runner-7"
    assert "date" not in meta["machine"]
    server_reads(job.document)


def test_gbench_mean_option_and_repetitions_without_aggregates(tmp_path: Path) -> None:
    job = job_from_gbench(gbench_file(tmp_path / "out.json"), aggregate="mean", package="sort")
    assert values(job)["sort.BM_Sort:1024"] == 586.7
    rows = [r for r in gbench_rows() if r.get("run_type") == "iteration"]
    job = job_from_gbench(gbench_file(tmp_path / "reps.json", rows))
    assert values(job)["sort_bench.BM_Sort:1024"] == 560.0  # the median of 500, 700, 560
    assert values(job)["sort_bench.BM_Sort:1024:cpu"] == 550.0
    mean = job_from_gbench(gbench_file(tmp_path / "reps.json", rows), aggregate="mean")
    assert values(mean)["sort_bench.BM_Sort:1024"] == pytest.approx(586.6667, rel=1e-6)


def test_gbench_bad_inputs(tmp_path: Path) -> None:
    no_executable = gbench_file(tmp_path / "a.json", executable=None)
    with pytest.raises(BadInputError, match=r"a\.json: the context names no executable"):
        job_from_gbench(no_executable)
    assert values(job_from_gbench(no_executable, package="p"))["p.BM_Sort:1024"] == 560.0
    odd_unit = gbench_file(tmp_path / "b.json", [gbench_row("BM_X", 1.0, 1.0, time_unit="min")])
    with pytest.raises(BadInputError, match=r"b\.json: run 'BM_X' has time_unit 'min'"):
        job_from_gbench(odd_unit)
    pytest_file = pytest_benchmark_file(tmp_path / "c.json")
    with pytest.raises(BadInputError, match=r"c\.json: no 'context' object"):
        job_from_gbench(pytest_file)
    (tmp_path / "d.json").write_text("BM_Sort  560 ns  550 ns  1000\n")
    with pytest.raises(BadInputError, match=r"d\.json: not JSON"):
        job_from_gbench(tmp_path / "d.json")


def test_gbench_command(tmp_path: Path) -> None:
    path = gbench_file(tmp_path / "out.json")
    out = tmp_path / "job.json"
    result = CliRunner().invoke(gbench_command, [str(path), "--output", str(out)])
    assert result.exit_code == 0, result.output
    server_reads(json.loads(out.read_text()))
    stdout = CliRunner().invoke(gbench_command, [str(path), "--package", "sort"])
    assert stdout.exit_code == 0
    assert json.loads(stdout.output)["measurements"][0]["metric"] == "sort.BM_Sort:1024"
