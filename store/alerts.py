"""Alerts, their items, their notifications (an outbox) and silences.  Never commits."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from specwatch.metrics.alerts import (
    Alert,
    AlertFilter,
    AlertItem,
    AlertKind,
    AlertState,
    Silence,
    item_evidence,
    item_from_evidence,
)
from specwatch.metrics.records import StoredJob

from .jobs import JobStore
from .models import SQLAlert, SQLAlertItem, SQLAlertNotification, SQLSilence

_ACTIVE = (AlertState.OPEN.value, AlertState.ACKNOWLEDGED.value)


@dataclass(frozen=True, slots=True)
class OpenItem:
    """An open item of an active alert, as evaluation needs it."""

    id: int
    alert_id: int
    dedup_key: str
    cooldown_key: str
    change_id: int | None
    item: AlertItem


@dataclass(frozen=True, slots=True)
class DueNotification:
    id: int
    alert_id: int | None
    channel: str
    event: str
    payload: dict[str, Any] | None
    attempts: int


def _alert(row: SQLAlert, items: Sequence[SQLAlertItem]) -> Alert:
    return Alert(
        id=row.id,
        rule=row.rule,
        kind=AlertKind(row.kind),
        state=AlertState(row.state),
        title=row.title,
        created_at=row.created_at,
        updated_at=row.updated_at,
        branch=row.branch,
        pr=row.pr,
        commit=row.commit,
        job_id=row.job_id,
        repository=row.repository,
        ci_url=row.ci_url,
        pr_url=row.pr_url,
        silenced=row.silenced,
        note=row.note,
        resolved_at=row.resolved_at,
        items=tuple(
            item_from_evidence(i.dedup_key, i.state, i.evidence)
            for i in sorted(items, key=lambda i: i.id)
        ),
    )


def _open_item(row: SQLAlertItem) -> OpenItem:
    item = item_from_evidence(row.dedup_key, row.state, row.evidence)
    return OpenItem(row.id, row.alert_id, row.dedup_key, row.cooldown_key, row.change_id, item)


def _silence(row: SQLSilence) -> Silence:
    return Silence(
        id=row.id,
        ends_at=row.ends_at,
        created_at=row.created_at,
        rule=row.rule,
        metric=row.metric,
        dataset=row.dataset,
        branch=row.branch,
        pr=row.pr,
        reason=row.reason,
        created_by=row.created_by,
    )


class AlertStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # --- evaluation ------------------------------------------------------------------------

    async def open_items(self, cooldown_keys: Collection[str]) -> list[OpenItem]:
        """Open items of active alerts for these rule-and-series keys."""
        found: list[OpenItem] = []
        keys = sorted(set(cooldown_keys))
        for start in range(0, len(keys), 500):
            rows = await self._session.execute(
                select(SQLAlertItem)
                .join(SQLAlert, SQLAlert.id == SQLAlertItem.alert_id)
                .where(
                    SQLAlertItem.cooldown_key.in_(keys[start : start + 500]),
                    SQLAlertItem.state == "open",
                    SQLAlert.state.in_(_ACTIVE),
                )
                .order_by(SQLAlertItem.id)
            )
            found += [_open_item(row) for row in rows.scalars()]
        return found

    async def open_items_of_change(self, change_id: int) -> list[OpenItem]:
        rows = await self._session.scalars(
            select(SQLAlertItem).where(
                SQLAlertItem.change_id == change_id, SQLAlertItem.state == "open"
            )
        )
        return [_open_item(row) for row in rows]

    async def known_dedup_keys(self, dedup_keys: Collection[str]) -> set[str]:
        """Which keys an item already has in any alert (open, or resolved/invalid by a person:
        the same change is never raised twice)."""
        keys = sorted(set(dedup_keys))
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            found.update(
                await self._session.scalars(
                    select(SQLAlertItem.dedup_key).where(
                        SQLAlertItem.dedup_key.in_(keys[start : start + 500])
                    )
                )
            )
        return found

    async def cooling(self, cooldown_keys: Collection[str], since: datetime) -> set[str]:
        """Keys with an item resolved at or after ``since`` (flapping guard)."""
        keys = sorted(set(cooldown_keys))
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            found.update(
                await self._session.scalars(
                    select(SQLAlertItem.cooldown_key).where(
                        SQLAlertItem.cooldown_key.in_(keys[start : start + 500]),
                        SQLAlertItem.resolved_at >= since,
                    )
                )
            )
        return found

    async def active_group(self, group_key: str) -> int | None:
        """The active alert of a rule on a build, if any."""
        return await self._session.scalar(
            select(SQLAlert.id)
            .where(SQLAlert.group_key == group_key, SQLAlert.state.in_(_ACTIVE))
            .order_by(SQLAlert.id.desc())
            .limit(1)
        )

    async def create(
        self,
        *,
        rule: str,
        kind: AlertKind,
        group_key: str,
        title: str,
        now: datetime,
        branch: str | None,
        pr: int | None,
        commit: str | None,
        job_id: int | None,
        repository: str | None,
        ci_url: str | None,
        pr_url: str | None,
        silenced: bool,
    ) -> int:
        row = SQLAlert(
            rule=rule,
            kind=kind.value,
            state=AlertState.OPEN.value,
            group_key=group_key[:1000],
            title=title[:300],
            branch=branch,
            pr=pr,
            commit=commit,
            job_id=job_id,
            repository=repository,
            ci_url=ci_url,
            pr_url=pr_url,
            silenced=silenced,
            note="",
            created_at=now,
            updated_at=now,
            resolved_at=None,
        )
        self._session.add(row)
        await self._session.flush()
        return row.id

    async def add_item(
        self, alert_id: int, item: AlertItem, cooldown_key: str, now: datetime
    ) -> None:
        self._session.add(
            SQLAlertItem(
                alert_id=alert_id,
                dedup_key=item.dedup_key,
                cooldown_key=cooldown_key,
                metric=item.metric,
                state="open",
                change_id=item.change_id,
                evidence=item_evidence(item),
                opened_at=now,
                resolved_at=None,
            )
        )
        await self._session.flush()

    async def update_item(self, item_id: int, item: AlertItem) -> None:
        """New evidence for an open item (a later build; a change that moved)."""
        await self._session.execute(
            update(SQLAlertItem)
            .where(SQLAlertItem.id == item_id)
            .values(
                evidence=item_evidence(item), change_id=item.change_id, dedup_key=item.dedup_key
            )
        )

    async def resolve_items(self, item_ids: Collection[int], now: datetime) -> list[int]:
        """Resolve items; returns the active alerts that have no open item left (and resolves
        them)."""
        if not item_ids:
            return []
        ids = sorted(set(item_ids))
        alert_ids = set(
            await self._session.scalars(
                select(SQLAlertItem.alert_id).where(SQLAlertItem.id.in_(ids))
            )
        )
        await self._session.execute(
            update(SQLAlertItem)
            .where(SQLAlertItem.id.in_(ids), SQLAlertItem.state == "open")
            .values(state="resolved", resolved_at=now)
        )
        still_open = set(
            await self._session.scalars(
                select(SQLAlertItem.alert_id).where(
                    SQLAlertItem.alert_id.in_(alert_ids), SQLAlertItem.state == "open"
                )
            )
        )
        done = sorted(
            await self._session.scalars(
                select(SQLAlert.id).where(
                    SQLAlert.id.in_(alert_ids - still_open), SQLAlert.state.in_(_ACTIVE)
                )
            )
        )
        if done:
            await self._session.execute(
                update(SQLAlert)
                .where(SQLAlert.id.in_(done))
                .values(state=AlertState.RESOLVED.value, resolved_at=now, updated_at=now)
            )
        return done

    async def retitle(self, alert_id: int, title: str, now: datetime) -> None:
        await self._session.execute(
            update(SQLAlert)
            .where(SQLAlert.id == alert_id)
            .values(title=title[:300], updated_at=now)
        )

    async def job(self, job_id: int) -> StoredJob | None:
        """The build an alert is about (its links and repository)."""
        return await JobStore(self._session).get(job_id)

    async def touch(self, alert_ids: Collection[int], now: datetime) -> None:
        if alert_ids:
            await self._session.execute(
                update(SQLAlert).where(SQLAlert.id.in_(sorted(alert_ids))).values(updated_at=now)
            )

    # --- reading and triage ----------------------------------------------------------------

    async def get(self, alert_id: int) -> Alert | None:
        row = await self._session.get(SQLAlert, alert_id)
        if row is None:
            return None
        items = list(
            await self._session.scalars(
                select(SQLAlertItem).where(SQLAlertItem.alert_id == alert_id)
            )
        )
        return _alert(row, items)

    async def search(
        self, where: AlertFilter, *, after: tuple[datetime, int] | None, limit: int
    ) -> list[Alert]:
        """Alerts, newest first, after the keyset cursor (created_at, id) of the last page."""
        query = select(SQLAlert).order_by(SQLAlert.created_at.desc(), SQLAlert.id.desc())
        if where.state == "active":
            query = query.where(SQLAlert.state.in_(_ACTIVE))
        elif where.state is not None:
            query = query.where(SQLAlert.state == where.state)
        for name in ("rule", "kind", "branch", "pr"):
            value = getattr(where, name)
            if value is not None:
                query = query.where(getattr(SQLAlert, name) == value)
        if where.metric is not None:
            item = aliased(SQLAlertItem)
            query = query.where(
                select(item.id)
                .where(item.alert_id == SQLAlert.id, item.metric == where.metric)
                .exists()
            )
        if after is not None:
            created, alert_id = after
            query = query.where(
                or_(
                    SQLAlert.created_at < created,
                    and_(SQLAlert.created_at == created, SQLAlert.id < alert_id),
                )
            )
        rows = list(await self._session.scalars(query.limit(limit)))
        items: dict[int, list[SQLAlertItem]] = {row.id: [] for row in rows}
        if rows:
            for item_row in await self._session.scalars(
                select(SQLAlertItem).where(SQLAlertItem.alert_id.in_(list(items)))
            ):
                items[item_row.alert_id].append(item_row)
        return [_alert(row, items[row.id]) for row in rows]

    async def set_state(
        self, alert_id: int, state: AlertState, note: str | None, now: datetime
    ) -> bool:
        """A person's decision; resolving or invalidating closes every open item."""
        row = await self._session.get(SQLAlert, alert_id)
        if row is None:
            return False
        row.state, row.updated_at = state.value, now
        if note is not None:
            row.note = note
        if state in (AlertState.RESOLVED, AlertState.INVALID):
            row.resolved_at = row.resolved_at or now  # the first closing time stays
            await self._session.execute(
                update(SQLAlertItem)
                .where(SQLAlertItem.alert_id == alert_id, SQLAlertItem.state == "open")
                .values(state="resolved", resolved_at=now)
            )
        await self._session.flush()
        return True

    # --- the notification outbox -----------------------------------------------------------

    async def enqueue(
        self,
        alert_id: int | None,
        channels: Sequence[str],
        event: str,
        *,
        now: datetime,
        due: datetime,
        payload: dict[str, Any] | None = None,
        dedup_key: str | None = None,
    ) -> None:
        for channel in channels:
            self._session.add(
                SQLAlertNotification(
                    alert_id=alert_id,
                    channel=channel,
                    event=event,
                    payload=payload,
                    dedup_key=dedup_key,
                    created_at=now,
                    due_at=due,
                    attempts=0,
                    claimed_until=None,
                    delivered_at=None,
                    failed_at=None,
                    last_error=None,
                )
            )
        await self._session.flush()

    async def requested(self, dedup_key: str) -> bool:
        """Whether a once-only request (a rerun) was queued already."""
        found = await self._session.scalar(
            select(SQLAlertNotification.id).where(SQLAlertNotification.dedup_key == dedup_key)
        )
        return found is not None

    async def pending_channels(self, alert_id: int) -> set[str]:
        """Channels with a message of this alert not sent yet (it will show the new items)."""
        return set(
            await self._session.scalars(
                select(SQLAlertNotification.channel).where(
                    SQLAlertNotification.alert_id == alert_id,
                    SQLAlertNotification.delivered_at.is_(None),
                    SQLAlertNotification.failed_at.is_(None),
                )
            )
        )

    async def due(self, now: datetime, limit: int) -> list[DueNotification]:
        """Notifications to send now, oldest first: due, unclaimed (or their claim lapsed),
        and the oldest unsent one of their alert and channel (so "resolved" never overtakes
        "opened")."""
        older = aliased(SQLAlertNotification)
        rows = await self._session.scalars(
            select(SQLAlertNotification)
            .where(
                SQLAlertNotification.delivered_at.is_(None),
                SQLAlertNotification.failed_at.is_(None),
                SQLAlertNotification.due_at <= now,
                or_(
                    SQLAlertNotification.claimed_until.is_(None),
                    SQLAlertNotification.claimed_until < now,
                ),
                ~select(older.id)
                .where(
                    older.alert_id == SQLAlertNotification.alert_id,
                    older.channel == SQLAlertNotification.channel,
                    older.id < SQLAlertNotification.id,
                    older.delivered_at.is_(None),
                    older.failed_at.is_(None),
                )
                .exists(),
            )
            .order_by(SQLAlertNotification.due_at, SQLAlertNotification.id)
            .limit(limit)
        )
        return [
            DueNotification(r.id, r.alert_id, r.channel, r.event, r.payload, r.attempts)
            for r in rows
        ]

    async def claim(self, notification_id: int, now: datetime, lease: timedelta) -> bool:
        """Take a notification for ``lease`` (another worker's claim wins)."""
        result = await self._session.execute(
            update(SQLAlertNotification)
            .where(
                SQLAlertNotification.id == notification_id,
                SQLAlertNotification.delivered_at.is_(None),
                or_(
                    SQLAlertNotification.claimed_until.is_(None),
                    SQLAlertNotification.claimed_until < now,
                ),
            )
            .values(claimed_until=now + lease)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]  # CursorResult has rowcount

    async def delivered(self, notification_id: int, now: datetime) -> None:
        await self._attempted(notification_id, delivered_at=now)

    async def defer(self, notification_id: int, *, due: datetime, error: str) -> None:
        await self._attempted(notification_id, due_at=due, last_error=error[:2000])

    async def fail(self, notification_id: int, now: datetime, error: str) -> None:
        """A permanent refusal: recorded, never retried."""
        await self._attempted(notification_id, failed_at=now, last_error=error[:2000])

    async def _attempted(self, notification_id: int, **outcome: Any) -> None:
        """Count an attempt, release the claim, and record its outcome."""
        await self._session.execute(
            update(SQLAlertNotification)
            .where(SQLAlertNotification.id == notification_id)
            .values(claimed_until=None, attempts=SQLAlertNotification.attempts + 1, **outcome)
        )

    async def notifications(self, alert_id: int) -> list[dict[str, Any]]:
        """The delivery record of an alert (for the API)."""
        rows = await self._session.scalars(
            select(SQLAlertNotification)
            .where(SQLAlertNotification.alert_id == alert_id)
            .order_by(SQLAlertNotification.id)
            .limit(200)
        )
        return [
            {
                "channel": r.channel,
                "event": r.event,
                "created_at": r.created_at,
                "attempts": r.attempts,
                "delivered_at": r.delivered_at,
                "failed_at": r.failed_at,
                "last_error": r.last_error,
            }
            for r in rows
        ]

    async def undelivered(self) -> int:
        query = (
            select(func.count())
            .select_from(SQLAlertNotification)
            .where(
                SQLAlertNotification.delivered_at.is_(None),
                SQLAlertNotification.failed_at.is_(None),
            )
        )
        return int(await self._session.scalar(query) or 0)

    # --- silences --------------------------------------------------------------------------

    async def add_silence(
        self,
        *,
        rule: str | None,
        metric: str | None,
        dataset: str | None,
        branch: str | None,
        pr: int | None,
        reason: str,
        created_by: str,
        now: datetime,
        ends_at: datetime,
    ) -> Silence:
        row = SQLSilence(
            rule=rule,
            metric=metric,
            dataset=dataset,
            branch=branch,
            pr=pr,
            reason=reason,
            created_by=created_by,
            created_at=now,
            ends_at=ends_at,
        )
        self._session.add(row)
        await self._session.flush()
        return _silence(row)

    async def silences(self, now: datetime | None, limit: int = 1000) -> list[Silence]:
        """Silences in force at ``now`` (None: every one, newest first)."""
        query = select(SQLSilence).order_by(SQLSilence.id.desc()).limit(limit)
        if now is not None:
            query = query.where(SQLSilence.ends_at > now)
        return [_silence(row) for row in await self._session.scalars(query)]

    async def silence(self, silence_id: int) -> Silence | None:
        row = await self._session.get(SQLSilence, silence_id)
        return _silence(row) if row is not None else None

    async def end_silence(self, silence_id: int, now: datetime) -> Silence | None:
        row = await self._session.get(SQLSilence, silence_id)
        if row is None:
            return None
        if row.ends_at > now:
            row.ends_at = now
            await self._session.flush()
        return _silence(row)
