"""One HTTP client for the Specwatch API that retries what can succeed later, and nothing else.

Connection errors, timeouts, 408, 429 (after its ``Retry-After``) and 5xx are retried with
exponential back-off and full jitter until a deadline shared by every request of the command;
any other 4xx fails at once (``RefusedError``: sending the same thing again cannot help).
Every job is sent with an ``Idempotency-Key`` (the SHA-256 of its body), so a retry after a
lost answer never stores a job twice.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from specwatch import __version__
from specwatch.retry_after import retry_after_s

from .errors import BadInputError, RefusedError, UnreachableError

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
CHUNK_BYTES = 256 * 1024


def idempotency_key(body: bytes) -> str:
    """The key of a job body: the same bytes always get the same key."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def problem_text(response: httpx.Response) -> str:
    """The server's explanation of an error: an RFC 9457 problem's detail and first error."""
    try:
        problem = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if not isinstance(problem, Mapping):
        return str(problem)[:300]
    text = str(problem.get("detail") or problem.get("title") or response.reason_phrase)
    errors = problem.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        first = errors[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = str(first.get("msg", ""))
        if message and message not in text:
            text += f" ({where}: {message})" if where else f" ({message})"
    return text


@dataclass(frozen=True)
class JobReceipt:
    """The server's answer to one job."""

    id: int
    url: str
    created: bool
    specs_ignored: int


class Deadline:
    """The time left for the whole command (``--retry-for``)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.end = clock() + seconds

    def left(self) -> float:
        return self.end - self._clock()


class SpecwatchClient:
    """The API as a collector uses it: post jobs, read verdicts and comparisons."""

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        deadline: Deadline,
        timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        on_retry: Callable[[str, float], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not server.startswith(("http://", "https://")):
            raise BadInputError(f"--server {server!r} is not an http:// or https:// URL")
        headers = {"User-Agent": f"specwatch-collector/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.server = server.rstrip("/")
        self.deadline = deadline
        self._sleep = sleep
        self._jitter = jitter
        self._on_retry = on_retry
        self._http = httpx.Client(
            base_url=self.server, headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SpecwatchClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def post_job(self, body: bytes, *, progress: Callable[[int], None] | None = None) -> JobReceipt:
        """Send one job; an answer of 200 (already stored) or 201 (created) is a receipt."""
        key = idempotency_key(body)

        def send() -> httpx.Response:
            return self._http.post(
                "/api/v1/jobs",
                content=_chunks(body, progress) if progress else body,
                headers={
                    "Content-Type": "application/json",
                    "Content-Length": str(len(body)),
                    "Idempotency-Key": key,
                },
            )

        data = self._json(self._with_retries("POST /api/v1/jobs", send))
        try:
            return JobReceipt(
                int(data["id"]),
                str(data["url"]),
                bool(data["created"]),
                int(data.get("specs_ignored", 0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise RefusedError(
                f"the server's answer is not a job receipt: {data!r:.200}", 200
            ) from error

    def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """GET an API path's JSON, with the same retries."""
        return self._json(
            self._with_retries(f"GET {path}", lambda: self._http.get(path, params=params))
        )

    def _with_retries(self, what: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        attempt = 0
        while True:
            wait: float | None = None
            try:
                response = send()
            except httpx.TransportError as error:
                reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise RefusedError(
                        f"{what}: {response.status_code} {problem_text(response)}",
                        response.status_code,
                    )
                reason = f"{response.status_code} {problem_text(response)}"
                wait = retry_after_s(response.headers.get("Retry-After"))
            if wait is None:  # full jitter: spreads the retries of many CI jobs
                wait = self._jitter() * min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2**attempt)
            attempt += 1
            if wait > self.deadline.left():
                raise UnreachableError(f"{what}: no answer after {attempt} attempt(s): {reason}")
            if self._on_retry:
                self._on_retry(reason, wait)
            self._sleep(wait)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as error:
            raise RefusedError(
                f"the server's answer is not JSON ({response.status_code})", response.status_code
            ) from error


def _chunks(body: bytes, progress: Callable[[int], None]) -> Iterator[bytes]:
    """The body in pieces, reporting each as it leaves (a progress bar for large jobs)."""
    for start in range(0, len(body), CHUNK_BYTES):
        piece = body[start : start + CHUNK_BYTES]
        yield piece
        progress(len(piece))
