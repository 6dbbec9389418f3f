"""Webhooks, following the Standard Webhooks specification: endpoints (`digest webhooks add URL`), and the delivery of
the outbox's events to them (digest.store.outbox: each written in the transaction of its change).

Each delivery is an HTTP POST of the event's JSON with the ``webhook-id`` (the same on every retry),
``webhook-timestamp`` and ``webhook-signature`` headers, signed by the ``standardwebhooks`` library with the endpoint's
``whsec_`` secret. A 2xx is delivered; anything else (an error status, a timeout, no answer) is tried again on the
Standard Webhooks schedule, for about a day, then given up; an endpoint that has failed for three days is disabled
(the operator page, `digest webhooks list` and the ``DigestWebhookDisabled`` alert say so). At least once: a sender
killed in the middle of a try leaves the delivery due again, under the same webhook-id.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from digest import clock, logs
from digest.errors import DigestError, NotFoundError
from digest.store import outbox
from digest.store.models import WebhookDelivery, WebhookEndpoint, WebhookMessage
from digest.store.states import WebhookState
from digest.text.links import redact_url

events = logs.EventLog(__name__)

EVENTS = (
    "subscriber.created",
    "subscriber.confirmed",
    "subscriber.unsubscribed",
    "subscriber.suppressed",
    "subscriber.erased",
    "digest.sent",
    "digest.failed",
    "bounce.received",
    "complaint.received",
    "practice.added",
)
TEST = "webhook.test"


@dataclass(frozen=True)
class Endpoint:
    id: int
    url: str
    events: list[str]
    created_at: datetime
    failing_since: datetime | None
    disabled_at: datetime | None
    pending: int
    delivered: int
    failed: int


@dataclass(frozen=True)
class Attempt:
    """One line of an endpoint's delivery log."""

    msg_id: str
    type: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime
    delivered_at: datetime | None


def add(session: Session, url: str, types: list[str], now: datetime) -> tuple[int, str]:
    """A new endpoint for ``types`` (none: every type); its id and signing secret (whsec_..., shown once here)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DigestError(f"{redact_url(url)!r} is not an http(s) URL", "give the full URL: https://hooks.example/in")
    unknown = [t for t in types if t not in EVENTS]
    if unknown:
        raise DigestError(f"unknown event type {unknown[0]!r}", "one of: " + ", ".join(EVENTS))
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    endpoint = WebhookEndpoint(url=url, secret=secret, events=" ".join(sorted(set(types))), created_at=now)
    session.add(endpoint)
    session.flush()
    return endpoint.id, secret


def listed(session: Session) -> list[Endpoint]:
    """Every endpoint with its deliveries counted by state (one grouped read, not one per endpoint)."""
    counts: dict[tuple[int, str], int] = {
        (endpoint, str(state)): n
        for endpoint, state, n in session.execute(
            select(WebhookDelivery.endpoint_id, WebhookDelivery.state, func.count()).group_by(
                WebhookDelivery.endpoint_id, WebhookDelivery.state
            )
        )
    }
    return [
        Endpoint(
            e.id,
            redact_url(e.url),
            e.events.split(),
            e.created_at,
            e.failing_since,
            e.disabled_at,
            *(counts.get((e.id, state), 0) for state in WebhookState),
        )
        for e in session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id))
    ]


def _endpoint(session: Session, ident: int) -> WebhookEndpoint:
    found = session.get(WebhookEndpoint, ident)
    if found is None:
        raise NotFoundError(f"no webhook endpoint {ident}", "see `digest webhooks list`")
    return found


def remove(session: Session, ident: int) -> None:
    """The endpoint and its delivery log are deleted; nothing more is sent to it."""
    session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == _endpoint(session, ident).id))


def enable(session: Session, ident: int) -> None:
    """A disabled endpoint takes deliveries again (those given up stay given up)."""
    found = _endpoint(session, ident)
    found.disabled_at = found.failing_since = None


def log(session: Session, ident: int, limit: int = 50) -> list[Attempt]:
    """The endpoint's deliveries, newest first."""
    _endpoint(session, ident)
    rows = session.execute(
        select(
            WebhookMessage.msg_id,
            WebhookMessage.type,
            WebhookDelivery.state,
            WebhookDelivery.attempts,
            WebhookDelivery.last_status,
            WebhookDelivery.last_error,
            WebhookDelivery.next_attempt_at,
            WebhookDelivery.delivered_at,
        )
        .join(WebhookMessage, WebhookMessage.id == WebhookDelivery.message_id)
        .where(WebhookDelivery.endpoint_id == ident)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return [Attempt(m, t, str(s), a, ls, le, n, d) for m, t, s, a, ls, le, n, d in rows]


def test(session: Session, ident: int, now: datetime) -> str:
    """A webhook.test event for this endpoint alone, delivered like any other; its webhook-id."""
    endpoint = _endpoint(session, ident).id
    msg_id = outbox.emit(session.connection(), TEST, now, lambda: ({"endpoint": endpoint}, ""), endpoint=endpoint)
    if msg_id is None:
        raise DigestError(f"webhook endpoint {ident} is disabled", f"`digest webhooks enable {ident}` first")
    return msg_id


@dataclass
class Delivered:
    """What one pass of deliveries did."""

    delivered: int = 0
    failed: int = 0
    disabled: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"delivered": self.delivered, "failed": self.failed, "disabled": self.disabled}


def deliver_due(
    factory: sessionmaker[Session],
    timeout: float,
    should_stop: Callable[[], bool] = lambda: False,
) -> Delivered:
    """Deliver every due event (see the module), until none is due or ``should_stop``."""
    import httpx
    from standardwebhooks.webhooks import Webhook

    engine = factory.kw["bind"]
    done = Delivered()
    hold = timedelta(seconds=timeout + 30)  # a try's claim outlives the try; a sender killed mid-try lets it go then
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        while not should_stop():
            batch = outbox.claim(engine, clock.now(), hold)
            if not batch:
                break
            for due in batch:
                now = clock.now()
                headers = {
                    "content-type": "application/json",
                    "user-agent": "digest-webhooks",
                    "webhook-id": due.msg_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": Webhook(due.secret).sign(due.msg_id, now, due.payload),
                }
                status: int | None = None
                try:
                    answer = client.post(due.url, content=due.payload.encode(), headers=headers)
                    status = answer.status_code
                    error = "" if 200 <= status < 300 else f"answered {status}"
                except httpx.HTTPError as e:
                    error = f"{type(e).__name__}: {e}"
                if not error:
                    outbox.delivered(engine, due, status or 0, clock.now())
                    done.delivered += 1
                    continue
                done.failed += 1
                where = redact_url(due.url)
                events("webhook.failed", logging.WARNING, endpoint=due.endpoint_id, url=where, error=error)
                if outbox.failed(engine, due, status, error, clock.now()):
                    done.disabled.append(due.endpoint_id)
                    events("webhook.disabled", logging.ERROR, endpoint=due.endpoint_id, url=where)
    return done
