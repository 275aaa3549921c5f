"""Handlers of alerts: list and read them, triage them, their rules, silences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from specwatch.api import schemas
from specwatch.api.cursor import Cursor, decode_cursor, encode_cursor
from specwatch.api.deps import MAX_ID, Context, base_url, read_access, require_scope
from specwatch.api.edge import EdgeRoute
from specwatch.api.openapi import problems
from specwatch.api.responses import FastJSONResponse
from specwatch.api.views import iso, number
from specwatch.exceptions import InvalidInputError
from specwatch.metrics.alerts import (
    CHANNELS,
    Alert,
    AlertFilter,
    AlertItem,
    AlertState,
    Links,
    Silence,
    item_evidence,
    parse_duration,
)
from specwatch.metrics.limits import INT32_MAX
from specwatch.services.tokens import Principal

router = APIRouter(route_class=EdgeRoute, prefix="/api/v1", tags=["alerts"])
Triage = Annotated[Principal, Depends(require_scope("triage"))]
AlertId = Annotated[int, Path(ge=1, le=MAX_ID)]
_NUMBERS = ("value", "threshold", "before", "after", "delta", "delta_pct", "delta_sigma", "sigma")


def item_view(item: AlertItem, links: Links) -> dict[str, Any]:
    view = item_evidence(item)
    for name in _NUMBERS:
        view[name] = number(view[name]) if view[name] is not None else None
    view["dedup_key"] = item.dedup_key
    view["state"] = item.state
    view["dashboard_url"] = links.metric(item)
    return view


def alert_view(alert: Alert, root: str) -> dict[str, Any]:
    links = Links(dashboard=f"{root}/dashboard/")
    return {
        "id": alert.id,
        "url": f"{root}/api/v1/alerts/{alert.id}",
        "rule": alert.rule,
        "kind": alert.kind.value,
        "state": alert.state.value,
        "title": alert.title,
        "created_at": iso(alert.created_at),
        "updated_at": iso(alert.updated_at),
        "resolved_at": iso(alert.resolved_at),
        "branch": alert.branch,
        "pr": alert.pr,
        "commit": alert.commit,
        "job_id": alert.job_id,
        "repository": alert.repository,
        "ci_url": alert.ci_url,
        "pr_url": alert.pr_url,
        "silenced": alert.silenced,
        "note": alert.note,
        "items": [item_view(item, links) for item in alert.items],
    }


def silence_view(silence: Silence, now: datetime) -> dict[str, Any]:
    return {
        "id": silence.id,
        "rule": silence.rule,
        "metric": silence.metric,
        "dataset": silence.dataset,
        "branch": silence.branch,
        "pr": silence.pr,
        "reason": silence.reason,
        "created_by": silence.created_by,
        "created_at": iso(silence.created_at),
        "ends_at": iso(silence.ends_at),
        "active": silence.ends_at > now,
    }


StateQuery = Literal["active", "open", "acknowledged", "invalid", "resolved", "all"]
KindQuery = Literal["spec_level", "regression", "pr_regression", "stale"]


@router.get(
    "/alerts",
    summary="Alerts, newest first (open and acknowledged by default)",
    response_model=schemas.AlertList,
    dependencies=[Depends(read_access)],
)
async def list_alerts(
    request: Request,
    context: Context,
    state: StateQuery = "active",
    rule: Annotated[str | None, Query(max_length=100)] = None,
    kind: KindQuery | None = None,
    branch: str | None = None,
    pr: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
    metric: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Cursor = None,
) -> FastJSONResponse:
    where = AlertFilter(
        state=None if state == "all" else state,
        rule=rule,
        kind=kind,
        branch=branch,
        pr=pr,
        metric=metric,
    )
    alerts = await context.alerts().list_alerts(where, after=decode_cursor(cursor), limit=limit)
    root = base_url(request, context)
    last = alerts[-1] if len(alerts) == limit else None
    return FastJSONResponse(
        {
            "alerts": [alert_view(alert, root) for alert in alerts],
            "next_cursor": encode_cursor(last.created_at, last.id) if last else None,
        }
    )


@router.get(
    "/alerts/{alert_id}",
    summary="One alert, its items and its deliveries",
    response_model=schemas.AlertDetail,
    responses=problems(404),
    dependencies=[Depends(read_access)],
)
async def get_alert(request: Request, context: Context, alert_id: AlertId) -> FastJSONResponse:
    alert, notifications = await context.alerts().get(alert_id)
    view = alert_view(alert, base_url(request, context))
    view["notifications"] = [
        {
            **n,
            "created_at": iso(n["created_at"]),
            "delivered_at": iso(n["delivered_at"]),
            "failed_at": iso(n["failed_at"]),
        }
        for n in notifications
    ]
    return FastJSONResponse(view)


async def _decide(
    request: Request,
    context: Context,
    principal: Principal,
    alert_id: int,
    state: AlertState,
    body: schemas.AlertDecision | None,
) -> FastJSONResponse:
    alert = await context.alerts().set_state(
        alert_id,
        state,
        body.note if body else None,
        allowed_packages=principal.packages,
    )
    return FastJSONResponse(alert_view(alert, base_url(request, context)))


@router.post(
    "/alerts/{alert_id}/ack",
    summary="Acknowledge an alert (someone is on it)",
    response_model=schemas.Alert,
    responses=problems(404, 422),
)
async def acknowledge_alert(
    request: Request,
    context: Context,
    principal: Triage,
    alert_id: AlertId,
    body: schemas.AlertDecision | None = None,
) -> FastJSONResponse:
    return await _decide(request, context, principal, alert_id, AlertState.ACKNOWLEDGED, body)


@router.post(
    "/alerts/{alert_id}/invalid",
    summary="Mark an alert as a false alarm",
    response_model=schemas.Alert,
    responses=problems(404),
)
async def invalidate_alert(
    request: Request,
    context: Context,
    principal: Triage,
    alert_id: AlertId,
    body: schemas.AlertDecision | None = None,
) -> FastJSONResponse:
    return await _decide(request, context, principal, alert_id, AlertState.INVALID, body)


@router.post(
    "/alerts/{alert_id}/resolve",
    summary="Resolve an alert (sends the resolution to its channels)",
    response_model=schemas.Alert,
    responses=problems(404),
)
async def resolve_alert(
    request: Request,
    context: Context,
    principal: Triage,
    alert_id: AlertId,
    body: schemas.AlertDecision | None = None,
) -> FastJSONResponse:
    return await _decide(request, context, principal, alert_id, AlertState.RESOLVED, body)


@router.get(
    "/alert-rules",
    summary="The alert rules in force, and which channels are configured",
    response_model=schemas.AlertRuleList,
    dependencies=[Depends(read_access)],
)
async def list_alert_rules(context: Context) -> FastJSONResponse:
    alerts = context.alerts()
    return FastJSONResponse(
        {
            "source": alerts.rules.source,
            "channels": {channel: channel in alerts.channels for channel in CHANNELS},
            "monitor_only": list(alerts.rules.monitor_only),
            "rules": [rule.as_dict() for rule in alerts.rules.rules],
        }
    )


@router.get(
    "/silences",
    summary="Silences (those in force by default)",
    response_model=schemas.SilenceList,
    dependencies=[Depends(read_access)],
)
async def list_silences(context: Context, active: bool = True) -> FastJSONResponse:
    silences = await context.alerts().silences(active=active)
    now = datetime.now(UTC)
    return FastJSONResponse({"silences": [silence_view(s, now) for s in silences]})


MAX_SILENCE = timedelta(days=366)


def _ends_at(body: schemas.SilenceRequest, now: datetime) -> datetime:
    """When the silence ends: within (now, now + 366 days]."""
    if (body.duration is None) == (body.ends_at is None):
        raise InvalidInputError(
            "give either duration (like 6h) or ends_at (RFC 3339), not both",
            location=["body", "duration"],
        )
    if body.duration is not None:
        try:
            seconds = parse_duration(body.duration)
        except ValueError as error:
            raise InvalidInputError(str(error), location=["body", "duration"]) from None
        if seconds <= 0:
            raise InvalidInputError(
                "a silence must last more than 0 s", location=["body", "duration"]
            )
        return now + timedelta(seconds=seconds)
    assert body.ends_at is not None
    try:
        moment = datetime.fromisoformat(body.ends_at)
    except ValueError:
        raise InvalidInputError(
            f"ends_at {body.ends_at!r} is not an RFC 3339 date-time",
            location=["body", "ends_at"],
        ) from None
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        too_late = moment > now + MAX_SILENCE
    except OverflowError:  # past the year 9999 in UTC
        too_late = True
    if too_late:
        raise InvalidInputError(
            "a silence lasts at most 366 days (end it, or make a new one, later)",
            location=["body", "ends_at"],
        )
    return moment


@router.post(
    "/silences",
    summary="Silence matching alerts until a time (recorded, not sent)",
    response_model=schemas.Silence,
    status_code=201,
    responses=problems(422),
)
async def create_silence(
    context: Context, principal: Triage, body: schemas.SilenceRequest
) -> FastJSONResponse:
    if all(v is None for v in (body.rule, body.metric, body.dataset, body.branch, body.pr)):
        raise InvalidInputError(
            "a silence needs at least one of rule, metric, dataset, branch, pr",
            location=["body"],
        )
    now = datetime.now(UTC)
    silence = await context.alerts().add_silence(
        rule=body.rule,
        metric=body.metric,
        dataset=body.dataset,
        branch=body.branch,
        pr=body.pr,
        ends_at=_ends_at(body, now),
        reason=body.reason,
        created_by=principal.key,
        allowed_packages=principal.packages,
    )
    return FastJSONResponse(silence_view(silence, now), status_code=201)


@router.delete(
    "/silences/{silence_id}",
    summary="End a silence now",
    response_model=schemas.Silence,
    responses=problems(404),
)
async def end_silence(
    context: Context, principal: Triage, silence_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> FastJSONResponse:
    silence = await context.alerts().end_silence(silence_id, allowed_packages=principal.packages)
    return FastJSONResponse(silence_view(silence, datetime.now(UTC)))
