"""``specwatch collect run``: run a pipeline step and record what it cost.

``specwatch collect run --package P [--name N] -- COMMAND…`` runs COMMAND (its stdin, stdout
and stderr are the collector's) and writes one job with the metrics

- ``P.N_wall_time`` (``s``): wall-clock time, from ``time.perf_counter``;
- ``P.N_cpu_time`` (``s``): user + system CPU time of the command and the children it waited
  for (the user and system parts are in the notes);
- ``P.N_max_rss`` (``MiB``): its peak resident set size (the largest of its processes);
- ``P.N_exit_status``: its exit status, ``-S`` when signal S killed it;

all lower is better.  N defaults to the command's file name, characters other than letters,
digits, ``_`` and ``-`` replaced by ``_`` (``./step.sh`` → ``step_sh``).

The resource usage is that of exactly this child (``os.wait4``), not a delta of
``getrusage(RUSAGE_CHILDREN)``, whose ``ru_maxrss`` is the largest of every child the collector
ever waited for: a peak cannot be subtracted.

The command's output shares stdout with the job when there is no ``--output``/``--upload``:
give one of them when something reads the job from stdout.

Exit status: the job is written (or uploaded) even when the command fails; then the collector
exits with the command's status (128 + S for signal S), so that a CI step still fails.  A
collector error wins (2 bad input, 3 server unreachable, 1 gate failed); a command that cannot
be started is bad input (2), and no job is written.
"""

from __future__ import annotations

import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click

from .cli import one_line_errors
from .emit import JobOutput, NamedJob, emit_jobs, job_output_options
from .errors import BadInputError
from .importers.names import PART_CHARS, checked_name, derived_package
from .job import JobBuilder

# ru_maxrss is in KiB on Linux and the BSDs, in bytes on macOS.
_MAXRSS_BYTES = 1 if sys.platform == "darwin" else 1024
_MIB = 1024 * 1024
_NAME_CHARS = PART_CHARS - len("_exit_status")  # room for the longest suffix


@dataclass(frozen=True)
class CommandRun:
    """What running a command cost."""

    started_at: datetime
    wall_time_s: float
    user_time_s: float
    system_time_s: float
    max_rss_bytes: int
    exit_status: int  # -S when signal S killed it

    @property
    def shell_status(self) -> int:
        """The status a shell reports: 128 + S for signal S."""
        return 128 - self.exit_status if self.exit_status < 0 else self.exit_status


def run_command_timed(command: list[str]) -> CommandRun:
    """Run ``command`` (stdio inherited) and measure it.

    Raises:
        BadInputError: the command does not exist or cannot be executed.
    """
    started_at = datetime.now(UTC)
    start = time.perf_counter()
    try:
        process = subprocess.Popen(command)
    except FileNotFoundError:
        raise BadInputError(f"command not found: {command[0]}") from None
    except PermissionError:
        raise BadInputError(f"command not executable: {command[0]}") from None
    except OSError as error:
        raise BadInputError(f"cannot run {command[0]}: {error.strerror}") from None
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:  # interrupted: do not leave the command running
        process.kill()
        process.wait()
        raise
    wall_time_s = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return CommandRun(
        started_at=started_at,
        wall_time_s=wall_time_s,
        user_time_s=usage.ru_utime,
        system_time_s=usage.ru_stime,
        max_rss_bytes=usage.ru_maxrss * _MAXRSS_BYTES,
        exit_status=process.returncode,
    )


def default_name(command: list[str]) -> str:
    """The metric prefix of ``command``: its file name, as a plain identifier."""
    return derived_package(Path(command[0]).name, "command")[:_NAME_CHARS]


def job_from_run(package: str, name: str, command: list[str], run: CommandRun) -> NamedJob:
    """The job recording ``run`` of ``command`` as ``package.name_*`` metrics."""
    builder = JobBuilder()
    cpu_time_s = run.user_time_s + run.system_time_s
    exit_note = {}
    if run.exit_status < 0:
        exit_note["signal"] = signal.strsignal(-run.exit_status) or str(-run.exit_status)
    for metric, value, unit, what, notes in (
        ("wall_time", run.wall_time_s, "s", "Wall-clock time", {}),
        (
            "cpu_time",
            cpu_time_s,
            "s",
            "User + system CPU time",
            {"user_time_s": run.user_time_s, "system_time_s": run.system_time_s},
        ),
        ("max_rss", run.max_rss_bytes / _MIB, "MiB", "Peak resident set size", {}),
        ("exit_status", float(run.exit_status), "", "Exit status", exit_note),
    ):
        full_name = f"{package}.{name}_{metric}"
        builder.define_metric(full_name, unit, f"{what} of {name} (specwatch collect run)")
        builder.add_measurement(full_name, value, unit, notes=notes)
    builder.meta.update(
        time=run.started_at.isoformat(),
        command=shlex.join(command),
        hostname=platform.node(),
    )
    return NamedJob(f"run-{package}-{name}", builder.document())


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--package", required=True, help="The metrics' package.")
@click.option(
    "--name",
    help="The metrics' prefix: NAME_wall_time, … (default: the command's file name).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@job_output_options
@one_line_errors
def run_command(
    package: str, name: str | None, command: tuple[str, ...], output: JobOutput
) -> None:
    """Run COMMAND (after --) and record its wall time, CPU time, peak memory and exit status.

    The job is written even when COMMAND fails; then this exits with COMMAND's status."""
    checked_name(package, "--package")
    if name is not None and len(checked_name(name, "--name")) > _NAME_CHARS:
        raise BadInputError(f"--name: at most {_NAME_CHARS} characters")
    argv = list(command)
    run = run_command_timed(argv)
    emit_jobs([job_from_run(package, name or default_name(argv), argv, run)], output)
    if run.exit_status != 0:
        click.get_current_context().exit(run.shell_status)
