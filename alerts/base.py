"""What every notifier shares: the interface, the delivery error and how answers are judged.

A notifier renders a ``Message`` for one channel and sends it once.  It raises
``DeliveryError`` when that fails, saying whether trying again can help (``permanent``) and,
when the receiver said so, after how long (``retry_after``).  Retries, back-off and
de-duplication belong to the alert service, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from specwatch.exceptions import SpecwatchError
from specwatch.metrics.alerts import (
    Alert,
    AlertItem,
    AlertKind,
    AlertState,
    Culprit,
    Links,
    Message,
    NotificationEvent,
)
from specwatch.retry_after import retry_after_s

BODY_EXCERPT_CHARS = 200  # of a refusal's body, in the error message
USER_AGENT = "specwatch-alerts"


class DeliveryError(SpecwatchError):
    """A message was not delivered.

    ``permanent``: sending it again will fail the same way (a bad URL, token or payload).
    ``retry_after``: seconds the receiver asked to wait (429, a rate limit), else None.
    ``status``: the HTTP status of the answer, None when there was none (a connection error).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        permanent: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.permanent = permanent


class Notifier(Protocol):
    """One channel's adapter: which messages it takes, and how it sends one."""

    channel: str

    def accepts(self, message: Message) -> bool:
        """Whether this channel has anything to say about ``message``."""
        ...

    async def send(self, message: Message) -> None:
        """Deliver ``message`` once.  Raises ``DeliveryError``."""
        ...


def retry_after_seconds(
    headers: Mapping[str, str] | httpx.Headers, now: datetime | None = None
) -> float | None:
    """Seconds to wait from a response's ``Retry-After`` header (seconds or an HTTP date);
    None if absent or unreadable, 0 for a date in the past."""
    return retry_after_s(httpx.Headers(headers).get("retry-after"), now)


def _excerpt(response: httpx.Response) -> str:
    try:
        text = response.text.strip()
    except (UnicodeDecodeError, LookupError):
        text = ""
    text = " ".join(text.split())  # one line, whatever the receiver sent
    if len(text) > BODY_EXCERPT_CHARS:
        text = text[: BODY_EXCERPT_CHARS - 1] + "…"
    return text or response.reason_phrase


def _host(response: httpx.Response) -> str:
    """The receiver's host, never its whole URL: a Slack webhook's path is its secret."""
    try:
        return response.request.url.host or "the receiver"
    except RuntimeError:  # a response built without a request
        return "the receiver"


def classify(response: httpx.Response) -> None:
    """Return on 2xx; otherwise raise the ``DeliveryError`` the answer calls for.

    429: retry after ``Retry-After``; 408 and 5xx: transient (``Retry-After`` honoured when
    given); any other status: permanent.  The message names the status and at most 200
    characters of the body.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    text = f"{_host(response)} answered HTTP {status}: {_excerpt(response)}"
    if status == 429 or status == 408 or status >= 500:
        raise DeliveryError(text, status=status, retry_after=retry_after_seconds(response.headers))
    raise DeliveryError(text, status=status, permanent=True)


def transport_failure(error: httpx.HTTPError | httpx.InvalidURL) -> DeliveryError:
    """The ``DeliveryError`` of a request that got no answer.

    Connection errors and timeouts are transient; a URL httpx cannot use is permanent.
    """
    permanent = isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL)
    # str(error) names the host at most (httpx puts no URL in transport errors)
    detail = str(error) or type(error).__name__
    return DeliveryError(f"no answer ({type(error).__name__}): {detail}"[:300], permanent=permanent)


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    content: bytes | None = None,
) -> httpx.Response:
    """Send one request; raise ``DeliveryError`` for no answer or a non-2xx one (``classify``)."""
    response = await send_unchecked(
        client, method, url, headers=headers, json=json, content=content
    )
    classify(response)
    return response


async def send_unchecked(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    content: bytes | None = None,
) -> httpx.Response:
    """Send one request and return whatever answer came; ``DeliveryError`` if none did."""
    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    try:
        return await client.request(method, url, headers=sent, json=json, content=content)
    except (httpx.TransportError, httpx.InvalidURL) as error:
        raise transport_failure(error) from error


def sample_message(now: datetime, links: Links | None = None) -> Message:
    """A realistic regression alert (event TEST) for ``specwatch alerts test --channel X``.

    ``now``: the alert's time (the caller's clock; this module reads none).
    """
    created = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    compare = "https://github.com/lsst/validate_drp/compare/4f2c9a1...9be07d3"
    culprits = (
        Culprit(
            name="meas_algorithms",
            change="changed",
            version_before="w.2026.47",
            version_after="w.2026.48",
            sha_before="1a2b3c4d5e6f",
            sha_after="6f5e4d3c2b1a",
            url="https://github.com/lsst/meas_algorithms/compare/1a2b3c4d5e6f...6f5e4d3c2b1a",
        ),
        Culprit(
            name="pipe_tasks",
            change="changed",
            version_before="w.2026.47",
            version_after="w.2026.48",
            sha_before="77aa01",
            sha_after="88bb02",
            url="https://github.com/lsst/pipe_tasks/compare/77aa01...88bb02",
        ),
    )
    common: dict[str, Any] = {
        "unit": "mmag",
        "dataset": "HSC-RC2",
        "instrument": "HSC",
        "branch": "main",
        "requirements": ("OSS-REQ-0387",),
        "confirming_builds": 3,
        "commit_before": "4f2c9a1",
        "commit_after": "9be07d3",
        "compare_url": compare,
        "culprits": culprits,
        "job_id": 1234,
    }
    items = (
        AlertItem(
            dedup_key="regression:validate_drp.PA1:HSC-RC2:HSC-I:main:41",
            metric="validate_drp.PA1",
            filter="HSC-I",
            before=6.012,
            after=7.43,
            delta=1.418,
            delta_pct=23.59,
            delta_sigma=7.9,
            sigma=0.18,
            change_id=41,
            summary="validate_drp.PA1 on HSC-RC2/HSC-I: 6.012 → 7.43 mmag (+23.59 %, 7.9σ)",
            **common,
        ),
        AlertItem(
            dedup_key="regression:validate_drp.PA1:HSC-RC2:HSC-R:main:42",
            metric="validate_drp.PA1",
            filter="HSC-R",
            before=5.871,
            after=6.644,
            delta=0.773,
            delta_pct=13.17,
            delta_sigma=4.3,
            sigma=0.18,
            change_id=42,
            summary="validate_drp.PA1 on HSC-RC2/HSC-R: 5.871 → 6.644 mmag (+13.17 %, 4.3σ)",
            **common,
        ),
    )
    alert = Alert(
        id=0,
        rule="regression",
        kind=AlertKind.REGRESSION,
        state=AlertState.OPEN,
        title="validate_drp.PA1 regressed on HSC-RC2 (2 series)",
        created_at=created - timedelta(minutes=5),
        updated_at=created,
        branch="main",
        commit="9be07d3",
        job_id=1234,
        repository="https://github.com/lsst/validate_drp",
        ci_url="https://github.com/lsst/validate_drp/actions/runs/1234",
        note="A test message from `specwatch alerts test`: nothing is wrong.",
        items=items,
    )
    return Message(
        event=NotificationEvent.TEST,
        delivery_id=f"test-{int(created.timestamp())}",
        alert=alert,
        links=links or Links(),
    )
