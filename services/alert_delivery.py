"""Delivering alerts: the notifiers of the configured channels, and the worker that sends the
alert outbox.

Each alert writes one notification per channel to an outbox table in the transaction that
raised it, due after a short grouping wait (so the items a detection pass finds go out as one
message).  ``AlertDispatcher`` claims due rows (a lease, so several workers share the work),
renders the alert as it is then, sends it, and records the outcome: retried with back-off (a
429's ``Retry-After`` honoured) until delivered, or failed on a permanent refusal.  A crash
between commit and delivery only delays the message; a crash between sending and recording it
can repeat one (at least once; webhook receivers get a stable delivery id).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.alerts.base import DeliveryError, Notifier
from specwatch.alerts.github import GitHubNotifier
from specwatch.alerts.slack import SlackNotifier
from specwatch.alerts.webhook import WebhookNotifier
from specwatch.config import Settings
from specwatch.metrics.alerts import Links, Message, NotificationEvent
from specwatch.store.alerts import AlertStore, DueNotification

from .alert_items import summary_from_document
from .tasks import cancel

log = structlog.get_logger("specwatch.alerts")


class AlertDispatcher:
    """The background task that sends due notifications through the notifiers."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        notifiers: Mapping[str, Notifier],
        links: Links,
        *,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 300.0,
        poll_s: float = 0.5,
        lease_s: float = 60.0,
        batch: int = 50,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._notifiers = dict(notifiers)
        self._links = links
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._poll_s = poll_s
        self._lease = timedelta(seconds=lease_s)
        self._batch = batch
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="specwatch-alerts")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def pending(self) -> int:
        async with self._sessionmaker() as session:
            return await AlertStore(session).undelivered()

    async def _run(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except Exception as error:
                log.warning("alert delivery pass failed", error=str(error))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self._poll_s)

    async def drain(self, *, due_only: bool = False) -> int:
        """Send every notification now, ignoring their due time unless ``due_only``; returns
        how many were delivered (tests, CLI)."""
        return await self.deliver_due(ignore_due=not due_only)

    async def deliver_due(self, *, ignore_due: bool = False) -> int:
        """One pass over what is due; returns how many were sent."""
        delivered = 0
        tried: set[int] = set()
        while True:
            horizon = datetime.max.replace(tzinfo=UTC) if ignore_due else datetime.now(UTC)
            async with self._sessionmaker() as session:
                due = await AlertStore(session).due(horizon, self._batch)
            due = [n for n in due if n.id not in tried]
            if not due:
                return delivered
            for notification in due:
                tried.add(notification.id)
                delivered += await self._deliver(notification) is True

    async def _deliver(self, notification: DueNotification) -> bool | None:
        """True: sent; False: deferred or failed; None: another worker has it."""
        now = datetime.now(UTC)
        async with self._sessionmaker() as session, session.begin():
            store = AlertStore(session)
            if not await store.claim(notification.id, now, self._lease):
                return None
            alert = await store.get(notification.alert_id) if notification.alert_id else None
        notifier = self._notifiers.get(notification.channel)
        message = Message(
            event=NotificationEvent(notification.event),
            delivery_id=f"specwatch-{notification.id}",
            alert=alert,
            summary=summary_from_document(notification.payload)
            if notification.payload and notification.event == NotificationEvent.PR_SUMMARY
            else None,
            links=self._links,
        )
        error: DeliveryError | None = None
        rerun = message.event is NotificationEvent.RERUN
        if rerun and isinstance(notifier, GitHubNotifier) and notification.payload:
            try:
                payload = notification.payload
                await notifier.dispatch_rerun(
                    str(payload["repository"]), dict(payload["client_payload"])
                )
            except DeliveryError as failed:
                error = failed
        elif notifier is None:
            error = DeliveryError(
                f"channel {notification.channel} is not configured", permanent=True
            )
        elif not notifier.accepts(message):
            error = DeliveryError(
                f"channel {notification.channel} does not take {notification.event}",
                permanent=True,
            )
        else:
            try:
                await notifier.send(message)
            except DeliveryError as failed:
                error = failed
        now = datetime.now(UTC)
        async with self._sessionmaker() as session, session.begin():
            store = AlertStore(session)
            if error is None:
                await store.delivered(notification.id, now)
                log.info(
                    "alert notification sent",
                    channel=notification.channel,
                    notification_event=notification.event,
                    alert=notification.alert_id,
                )
                return True
            if error.permanent:
                await store.fail(notification.id, now, str(error))
                log.error(
                    "alert notification refused; not retried",
                    channel=notification.channel,
                    error=str(error),
                )
                return False
            backoff = min(
                self._retry_max_s, self._retry_initial_s * 2.0 ** min(notification.attempts, 30)
            )
            delay = error.retry_after if error.retry_after is not None else backoff
            await store.defer(notification.id, due=now + timedelta(seconds=delay), error=str(error))
            log.warning(
                "alert notification failed; will retry",
                channel=notification.channel,
                error=str(error),
                retry_in_s=round(delay, 3),
            )
            return False


def notifiers_of(
    settings: Settings, client: httpx.AsyncClient
) -> tuple[dict[str, Notifier], Links]:
    """The configured channels' notifiers, and where messages link to."""
    notifiers: dict[str, Notifier] = {}
    if settings.slack_webhook_url is not None:
        notifiers["slack"] = SlackNotifier(settings.slack_webhook_url.get_secret_value(), client)
    if settings.alert_webhook_url:
        secret = settings.alert_webhook_secret
        notifiers["webhook"] = WebhookNotifier(
            settings.alert_webhook_url, secret.get_secret_value() if secret else None, client
        )
    if settings.github_token is not None:
        notifiers["github"] = GitHubNotifier(
            settings.github_api_url.rstrip("/"), settings.github_token.get_secret_value(), client
        )
    base = settings.public_url.rstrip("/") + "/dashboard/" if settings.public_url else None
    return notifiers, Links(dashboard=base)
