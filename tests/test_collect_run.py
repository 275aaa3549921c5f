"""``specwatch collect run`` on real commands: times, peak memory, exit status."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from specwatch.collectors.run import run_command
from specwatch.metrics.definitions import parse_job_metrics
from specwatch.metrics.jobs import convert_measurements, parse_job_document

MIB = 1024 * 1024
# Allocates and writes 64 MiB, then sleeps 0.2 s with it held.
ALLOCATE_AND_SLEEP = (
    "import sys, time\n"
    "block = bytearray(64 * 1024 * 1024)\n"
    "for i in range(0, len(block), 4096): block[i] = 1\n"
    "time.sleep(0.2)\n"
    "sys.exit(int(sys.argv[1]))\n"
)


def collect(tmp_path: Path, *args: str) -> tuple[Result, dict[str, Any] | None]:
    out = tmp_path / "job.json"
    result = CliRunner().invoke(run_command, ["--output", str(out), *args])
    return result, json.loads(out.read_text()) if out.exists() else None


def measured(document: dict[str, Any]) -> dict[str, tuple[float, str]]:
    return {m["metric"]: (m["value"], m["unit"]) for m in document["measurements"]}


def test_records_wall_cpu_memory_and_exit_status(tmp_path: Path) -> None:
    result, document = collect(
        tmp_path, "--package", "pipe", "--name", "alloc", "--",
        sys.executable, "-c", ALLOCATE_AND_SLEEP, "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert document is not None
    values = measured(document)
    assert set(values) == {
        "pipe.alloc_wall_time",
        "pipe.alloc_cpu_time",
        "pipe.alloc_max_rss",
        "pipe.alloc_exit_status",
    }
    wall_time_s, unit = values["pipe.alloc_wall_time"]
    assert unit == "s" and wall_time_s >= 0.2
    cpu_time_s, unit = values["pipe.alloc_cpu_time"]
    assert unit == "s" and 0 < cpu_time_s < wall_time_s  # sleeping costs no CPU
    max_rss_mib, unit = values["pipe.alloc_max_rss"]
    assert unit == "MiB" and 64 <= max_rss_mib < 64 + 48  # the block, and Python itself
    assert values["pipe.alloc_exit_status"] == (0.0, "")
    cpu = next(m for m in document["measurements"] if m["metric"] == "pipe.alloc_cpu_time")
    assert cpu["notes"]["user_time_s"] + cpu["notes"]["system_time_s"] == cpu_time_s
    assert {m["name"]: m["direction"] for m in document["metrics"]} == dict.fromkeys(
        values, "lower"
    )
    assert document["meta"]["command"].startswith(sys.executable)
    assert document["meta"]["time"].endswith("+00:00")
    parsed = parse_job_document(document)
    metrics = {m.full_name: m for m in parse_job_metrics(parsed.metric_definitions)}
    assert len(convert_measurements(parsed.measurements, metrics)) == 4


def test_the_peak_memory_is_the_commands_not_the_collectors(tmp_path: Path) -> None:
    """Linux counts the pages of the process that exec-s into a command's peak RSS: started
    straight from this (large) test process, `true` would seem to use hundreds of MB."""
    ballast = bytearray(b"\x01") * (300 * MIB)  # touched: resident, as a big driver is
    result, document = collect(tmp_path, "--package", "pipe", "--", "true")
    del ballast
    assert result.exit_code == 0, result.output
    assert document is not None
    max_rss_mib, _ = measured(document)["pipe.true_max_rss"]
    assert 0 < max_rss_mib < 32


def test_a_failing_command_is_recorded_then_its_status_returned(tmp_path: Path) -> None:
    result, document = collect(
        tmp_path, "--package", "pipe", "--", sys.executable, "-c", ALLOCATE_AND_SLEEP, "3"
    )
    assert result.exit_code == 3
    assert document is not None
    name = Path(sys.executable).name.replace(".", "_")  # python3.11 → python3_11
    assert measured(document)[f"pipe.{name}_exit_status"] == (3.0, "")


def test_a_command_killed_by_a_signal_exits_128_plus_the_signal(tmp_path: Path) -> None:
    kill_self = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    result, document = collect(
        tmp_path, "--package", "pipe", "--name", "killed", "--", sys.executable, "-c", kill_self
    )
    assert result.exit_code == 128 + signal.SIGTERM
    assert document is not None
    exit_status = next(m for m in document["measurements"] if m["metric"].endswith("status"))
    assert exit_status["value"] == -signal.SIGTERM
    assert exit_status["notes"] == {"signal": signal.strsignal(signal.SIGTERM)}


def test_options_after_the_command_belong_to_it(tmp_path: Path) -> None:
    script = "import sys; sys.exit(0 if sys.argv[1:] == ['--name', 'x'] else 1)"
    result, document = collect(
        tmp_path, "--package", "p", "--", sys.executable, "-c", script, "--name", "x"
    )
    assert result.exit_code == 0, result.output
    assert document is not None


def test_a_missing_command_is_bad_input_in_one_line(tmp_path: Path) -> None:
    result, document = collect(tmp_path, "--package", "pipe", "--", "no-such-command-xyz")
    assert result.exit_code == 2
    assert document is None
    assert result.output.splitlines() == [
        "specwatch: error: command not found: no-such-command-xyz"
    ]


def test_bad_names_are_refused_before_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    touch = f"open({str(marker)!r}, 'w').close()"
    result, _ = collect(tmp_path, "--package", "a.b", "--", sys.executable, "-c", touch)
    assert result.exit_code == 2
    assert "--package 'a.b'" in result.output
    result, _ = collect(tmp_path, "--package", "p", "--name", "x/y", "--", sys.executable)
    assert result.exit_code == 2
    assert not marker.exists()
