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

The resource usage is that of exactly this command (``os.wait4``), not a delta of
``getrusage(RUSAGE_CHILDREN)``, whose ``ru_maxrss`` is the largest of every child the collector
ever waited for: a peak cannot be subtracted.  The command is started by a tiny launcher
(``python -S -I``, a few MB), not by the collector itself: Linux counts the pages of the
process that ``exec``-s into a command's peak RSS, and a collector forked from a large
process (a test runner, a pipeline driver) would add its own size to every command's.  The
launcher times the command and reports its ``wait4`` usage on a pipe.

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


# Runs in ``python -S -I``: no site, no imports beyond the built-ins, so that its size, which
# Linux counts into the command's peak RSS, stays a few MB.  Protocol: argv = [fd, command…];
# writes "ok status utime stime maxrss wall" or "error ErrorName strerror" on fd.
LAUNCHER = """
import os, signal, sys, time
fd, command = int(sys.argv[1]), sys.argv[2:]
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal sends it to the command too
start = time.perf_counter()
try:
    pid = os.posix_spawnp(command[0], command, os.environ)
except OSError as error:
    os.write(fd, f"error {type(error).__name__} {error.strerror}".encode())
    sys.exit(127)
for forwarded in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(forwarded, lambda number, _: os.kill(pid, number))
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
line = f"ok {status} {usage.ru_utime!r} {usage.ru_stime!r} {usage.ru_maxrss} {wall!r}"
os.write(fd, line.encode())
"""


def run_command_timed(command: list[str]) -> CommandRun:
    """Run ``command`` (stdio inherited) through the launcher and measure it.

    Raises:
        BadInputError: the command does not exist or cannot be executed.
    """
    started_at = datetime.now(UTC)
    read_end, write_end = os.pipe()
    try:
        launcher = subprocess.Popen(
            [sys.executable, "-S", "-I", "-c", LAUNCHER, str(write_end), *command],
            pass_fds=(write_end,),
        )
    finally:
        os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            report = pipe.read().decode().split(" ", 2)
        launcher.wait()
    except BaseException:  # interrupted: do not leave the command running
        launcher.terminate()
        launcher.wait()
        raise
    if report[0] == "error":
        kind, reason = report[1], report[2] if len(report) > 2 else ""
        what = {
            "FileNotFoundError": "command not found",
            "PermissionError": "command not executable",
        }
        raise BadInputError(
            f"{what.get(kind, 'cannot run')}: {command[0]}"
            + ("" if kind in what else f" ({reason})")
        )
    if report[0] != "ok":
        raise BadInputError(f"cannot run {command[0]}: the launcher exited {launcher.returncode}")
    status, utime, stime, maxrss, wall = report[1], *report[2].split()
    return CommandRun(
        started_at=started_at,
        wall_time_s=float(wall),
        user_time_s=float(utime),
        system_time_s=float(stime),
        max_rss_bytes=int(maxrss) * _MAXRSS_BYTES,
        exit_status=os.waitstatus_to_exitcode(int(status)),
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
