"""A generic JSON webhook: every field of the event, signed like GitHub's webhooks.

The body is stable JSON (sorted keys, no spaces, UTF-8) so a receiver can check the
``X-Specwatch-Signature-256`` header, ``sha256=`` and the hex HMAC-SHA256 of the exact body
bytes under the shared secret, and de-duplicate on ``X-Specwatch-Delivery``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import json
import math
from datetime import UTC, datetime
from typing import Any

import httpx

from specwatch.metrics.alerts import Message

from .base import request

EVENT_HEADER = "X-Specwatch-Event"
DELIVERY_HEADER = "X-Specwatch-Delivery"
SIGNATURE_HEADER = "X-Specwatch-Signature-256"


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC, ``2026-12-03T05:27:00Z`` (a naive time is taken as UTC)."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """A record as JSON values: dataclasses by field, enums by value, times in ISO UTC,
    tuples as lists, NaN and infinities as null."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def webhook_document(message: Message) -> dict[str, Any]:
    """The JSON document of a message: ``event``, ``delivery_id``, ``alert`` (every field of
    the alert and of its items) or null, ``summary`` or null, ``links``.  Pure."""
    return {
        "event": message.event.value,
        "delivery_id": message.delivery_id,
        "alert": _plain(message.alert) if message.alert is not None else None,
        "summary": _plain(message.summary) if message.summary is not None else None,
        "links": {"dashboard": message.links.dashboard},
    }


def webhook_body(message: Message) -> bytes:
    """The exact bytes sent (and signed)."""
    document = webhook_document(message)
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode()


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of body under secret>`` (GitHub's webhook scheme)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookNotifier:
    """Posts every event, as JSON, to one URL."""

    channel: str = "webhook"

    def __init__(self, url: str, secret: str | None, client: httpx.AsyncClient) -> None:
        self.url = url
        self.secret = secret
        self.client = client

    def accepts(self, message: Message) -> bool:
        return True

    def headers(self, message: Message, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: message.event.value,
            DELIVERY_HEADER: message.delivery_id,
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        return headers

    async def send(self, message: Message) -> None:
        """Post the document.  Raises ``DeliveryError`` on anything but a 2xx answer."""
        body = webhook_body(message)
        await request(
            self.client, "POST", self.url, headers=self.headers(message, body), content=body
        )
