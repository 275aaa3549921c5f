"""What a collector command can fail with, and the exit code each one gives a CI script.

CollectorError            exit 2: bad input or usage (also click's own usage errors)
├── BadInputError         a file that is not a job, a catalog without a column, …
├── RefusedError          the server answered 4xx (not 408/429): sending again cannot help
├── GateFailedError       exit 1: the server's verdicts crossed ``--fail-on``
└── UnreachableError      exit 3: the server stayed unreachable; the jobs are in the spool
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes of ``specwatch upload`` and ``specwatch collect … --upload``."""

    OK = 0
    GATE_FAILED = 1
    BAD_INPUT = 2
    SPOOLED = 3


class CollectorError(Exception):
    """A failure the command reports in one line, with its exit code."""

    exit_code = ExitCode.BAD_INPUT


class BadInputError(CollectorError):
    """An input file, option or environment the command cannot use."""


class RefusedError(CollectorError):
    """The server refused a request (a 4xx other than 408 and 429); retrying cannot help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class GateFailedError(CollectorError):
    """The server's verdicts on the uploaded jobs crossed the ``--fail-on`` line."""

    exit_code = ExitCode.GATE_FAILED


class UnreachableError(CollectorError):
    """The server did not answer before the deadline (jobs spooled, if a spool is set)."""

    exit_code = ExitCode.SPOOLED
