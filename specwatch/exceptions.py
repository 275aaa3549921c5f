"""The one error vocabulary of Specwatch.

Services and the core raise these; the API renders every ``ClientError`` as an RFC 9457
problem body with its ``status``, a stable ``code`` and, where known, the ``location`` of the
bad input (e.g. ``["body", "measurements", 3, "unit"]``).  The CLI prints ``str(error)`` on
one line and exits with a non-zero code.

::

    SpecwatchError
    ├── ClientError                      (4xx: the caller can fix it)
    │   ├── InvalidInputError            422 invalid_input
    │   │   ├── DefinitionError          422 invalid_definition
    │   │   ├── UnknownMetricError       422 unknown_metric
    │   │   └── UnitConversionError      422 unit_mismatch
    │   ├── NotFoundError                404 not_found
    │   ├── AuthenticationError          401 not_authenticated
    │   ├── PermissionDeniedError        403 permission_denied
    │   ├── IdempotencyConflictError     409 idempotency_conflict
    │   └── PayloadTooLargeError         413 payload_too_large
    └── ServerError                      (5xx or refusal to start: the operator must act)
        ├── DatabaseNotReadyError        the schema is not at the latest migration
        └── SeriesStoreError             the time-series backend failed
"""

from __future__ import annotations

from collections.abc import Sequence

Location = Sequence[str | int]


class SpecwatchError(Exception):
    """Base of every error Specwatch raises on purpose."""


class ClientError(SpecwatchError):
    """Bad request: the caller can fix it."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, location: Location | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = list(location) if location is not None else None


class InvalidInputError(ClientError):
    status = 422
    code = "invalid_input"


class DefinitionError(InvalidInputError):
    """A metric or specification definition is malformed."""

    code = "invalid_definition"


class UnknownMetricError(InvalidInputError):
    """A measurement names a metric defined nowhere."""

    code = "unknown_metric"


class UnitConversionError(InvalidInputError):
    """A value's unit cannot be converted to the metric's unit."""

    code = "unit_mismatch"


class NotFoundError(ClientError):
    status = 404
    code = "not_found"


class AuthenticationError(ClientError):
    status = 401
    code = "not_authenticated"


class PermissionDeniedError(ClientError):
    status = 403
    code = "permission_denied"


class IdempotencyConflictError(ClientError):
    """The same idempotency key was used for a different body."""

    status = 409
    code = "idempotency_conflict"


class PayloadTooLargeError(ClientError):
    status = 413
    code = "payload_too_large"


class ServerError(SpecwatchError):
    """The service cannot do its job; an operator must act."""


class DatabaseNotReadyError(ServerError):
    """The SQL schema is not at the latest migration."""


class SeriesStoreError(ServerError):
    """The time-series backend refused or failed a request."""


# SQLSTATE classes of a lost connection: 08 connection exception, 57P operator intervention
# (admin shutdown, crash shutdown, cannot connect now).
_LOST_STATES = ("08", "57P")
_LOST_WORDS = (
    "connection was closed",
    "connection is closed",
    "another operation is in progress",
    "the database system is",
    "terminating connection",
    "connection refused",
    "connection reset",
)


def is_connection_lost(error: BaseException) -> bool:
    """Whether a database error means the connection or the server went away (retry later)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str) and state.startswith(_LOST_STATES):
            return True
        if any(words in str(current).lower() for words in _LOST_WORDS):
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False
