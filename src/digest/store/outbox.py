"""The webhooks' outbox: each event is written in the same transaction as the change it tells of, with one delivery
per endpoint that wants its type (none written when no endpoint does). A delivery is claimed for a while before it
is tried, so a sender killed mid-try leaves it due again, under the same webhook-id (at least once). An erased
subscriber's address is kept in no payload once its deliveries are done.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, and_, exists, insert, literal, or_, select, update

from digest.store.models import Subscriber, Subscription, Theme, WebhookDelivery, WebhookEndpoint, WebhookMessage
from digest.store.states import UTCDateTime, WebhookState

# Waits between tries (the Standard Webhooks schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h):
# about 28 hours from the first to the last.
RETRIES = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
DISABLE_AFTER = timedelta(days=3)
# Seconds a sender trusts what it last read of which endpoints want digest.sent.
RECHECK = 5.0
BLANK = json.dumps({"type": "redacted", "data": {}})


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def _wanting(event: str, endpoint: int | None = None) -> Any:
    """Live endpoints that want ``event`` (their types space-separated; "" is every type); only ``endpoint``, if given
    (a test event for one endpoint, whatever types it wants)."""
    if endpoint is not None:
        return and_(WebhookEndpoint.id == endpoint, WebhookEndpoint.disabled_at.is_(None))
    return and_(
        WebhookEndpoint.disabled_at.is_(None),
        or_(WebhookEndpoint.events == "", (literal(" ") + WebhookEndpoint.events + " ").contains(f" {event} ")),
    )


def wanted(conn: Connection, event: str) -> bool:
    """Whether any live endpoint wants ``event`` (before building many events of one kind)."""
    return conn.scalar(select(WebhookEndpoint.id).where(_wanting(event)).limit(1)) is not None


# What an event says, made only when some endpoint wants it: its data and the address it is about ("": none).
Telling = Callable[[], tuple[dict[str, Any], str]]


def emit(conn: Connection, event: str, now: datetime, tell: Telling, endpoint: int | None = None) -> str | None:
    """The event ``event`` into the outbox, on ``conn``'s transaction, for every endpoint that wants it (or only
    ``endpoint``); its webhook-id. ``tell`` is asked for the event's data and subject only when some endpoint wants
    it: when none does, nothing is read or written but the one query that says so."""
    endpoints = list(conn.scalars(select(WebhookEndpoint.id).where(_wanting(event, endpoint))))
    if not endpoints:
        return None
    data, subject = tell()
    msg_id = new_message_id()
    payload = json.dumps({"type": event, "timestamp": now.isoformat(), "data": data}, ensure_ascii=False)
    message = conn.execute(
        insert(WebhookMessage)
        .values(msg_id=msg_id, type=event, payload=payload, subject=subject, forget=False, created_at=now)
        .returning(WebhookMessage.id)
    ).scalar_one()
    conn.execute(
        insert(WebhookDelivery),
        [
            {
                "message_id": message,
                "endpoint_id": e,
                "state": WebhookState.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
            }
            for e in endpoints
        ],
    )
    return msg_id


def tell_of_subscriber(conn: Connection, event: str, subscriber_id: int, now: datetime, **more: object) -> None:
    """A subscriber.* event: their address, status, themes and why (``more`` says it, else their left reason or last
    bounce), read from the store on ``conn``'s transaction only when some endpoint wants it."""

    def tell() -> tuple[dict[str, Any], str]:
        email, status, why, left = conn.execute(
            select(Subscriber.email, Subscriber.status, Subscriber.last_bounce, Subscriber.left_reason).where(
                Subscriber.id == subscriber_id
            )
        ).one()
        themes = sorted(
            conn.scalars(
                select(Theme.slug)
                .join(Subscription, Subscription.theme_id == Theme.id)
                .where(Subscription.subscriber_id == subscriber_id)
            )
        )
        data = {"email": email, "status": str(status), "themes": themes, "reason": left or why or "", **more}
        return data, email

    emit(conn, event, now, tell)


class Due(NamedTuple):
    delivery_id: int
    endpoint_id: int
    url: str
    secret: str
    msg_id: str
    payload: str
    attempts: int


def claim(engine: Engine, now: datetime, hold: timedelta, limit: int = 50) -> list[Due]:
    """Deliveries due now, to live endpoints, held for ``hold`` (their next try moved past it: a sender that dies
    with them leaves them due again then); the oldest first."""
    query = (
        select(
            WebhookDelivery.id,
            WebhookEndpoint.id,
            WebhookEndpoint.url,
            WebhookEndpoint.secret,
            WebhookMessage.msg_id,
            WebhookMessage.payload,
            WebhookDelivery.attempts,
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(WebhookMessage, WebhookMessage.id == WebhookDelivery.message_id)
        .where(
            WebhookDelivery.state == WebhookState.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            WebhookEndpoint.disabled_at.is_(None),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
    with engine.begin() as conn:
        found = [Due(*row) for row in conn.execute(query)]
        if found:
            conn.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_([d.delivery_id for d in found]))
                .values(next_attempt_at=now + hold)
            )
    return found


def delivered(engine: Engine, due: Due, status: int, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == due.delivery_id)
            .values(
                state=WebhookState.DELIVERED,
                attempts=due.attempts + 1,
                last_status=status,
                last_error=None,
                delivered_at=now,
            )
        )
        conn.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == due.endpoint_id).values(failing_since=None))
        _forget_done(conn)


def failed(engine: Engine, due: Due, status: int | None, error: str, now: datetime) -> bool:
    """A try that failed: the next one scheduled, or the delivery given up after the last; the endpoint disabled
    when it has failed for DISABLE_AFTER. True when this disabled it."""
    attempts = due.attempts + 1
    last = attempts > len(RETRIES)
    with engine.begin() as conn:
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == due.delivery_id)
            .values(
                state=WebhookState.FAILED if last else WebhookState.PENDING,
                attempts=attempts,
                last_status=status,
                last_error=error[:1000],
                next_attempt_at=now if last else now + RETRIES[attempts - 1],
            )
        )
        conn.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == due.endpoint_id, WebhookEndpoint.failing_since.is_(None))
            .values(failing_since=now)
        )
        disabled = conn.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.id == due.endpoint_id,
                WebhookEndpoint.disabled_at.is_(None),
                WebhookEndpoint.failing_since <= now - DISABLE_AFTER,
            )
            .values(disabled_at=now)
        ).rowcount
        _forget_done(conn)
    return bool(disabled)


def forget(conn: Connection, address: str) -> None:
    """An erased subscriber: every message about them is blanked once its deliveries are done (at once for those
    done already), on ``conn``'s transaction."""
    conn.execute(update(WebhookMessage).where(WebhookMessage.subject == address).values(forget=True))
    _forget_done(conn)


def _forget_done(conn: Connection) -> None:
    pending = exists().where(
        WebhookDelivery.message_id == WebhookMessage.id, WebhookDelivery.state == WebhookState.PENDING
    )
    conn.execute(
        update(WebhookMessage)
        .where(WebhookMessage.forget.is_(True), WebhookMessage.subject != "", ~pending)
        .values(payload=BLANK, subject="")
    )


class SentEvents:
    """digest.sent events written by the SentRecorder's own driver statements (its transaction, no ORM): prepared
    once per run for the store's dialect."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        mark = "%s" if dialect.paramstyle in ("format", "pyformat") else "?"
        self._when: Callable[[datetime], Any] = UTCDateTime().dialect_impl(dialect).bind_processor(dialect) or (
            lambda value: value
        )
        self.wanting = (
            "SELECT id FROM webhook_endpoints WHERE disabled_at IS NULL AND "
            "(events = '' OR (' ' || events || ' ') LIKE '% digest.sent %')"
        )
        false = "false" if dialect.name == "postgresql" else "0"
        self.message = (
            "INSERT INTO webhook_messages (msg_id, type, payload, subject, forget, created_at) "
            f"VALUES ({mark}, 'digest.sent', {mark}, {mark}, {false}, {mark}) RETURNING id"
        )
        self._endpoints: list[int] | None = None
        self._checked = 0.0
        # From the endpoint's row, so that one removed since it was read gets nothing (and breaks nothing).
        self.delivery = (
            "INSERT INTO webhook_deliveries (message_id, endpoint_id, state, attempts, next_attempt_at) "
            f"SELECT {mark}, id, '{WebhookState.PENDING.value}', 0, {mark} FROM webhook_endpoints WHERE id = {mark} "
            "AND disabled_at IS NULL"
        )

    def wanted(self, cursor: Any) -> bool:
        """Whether any endpoint wants digest.sent (see write: looked up again every RECHECK seconds)."""
        return bool(self._wanting(cursor))

    def _wanting(self, cursor: Any) -> list[int]:
        if self._endpoints is None or time.monotonic() - self._checked > RECHECK:
            cursor.execute(self.wanting)
            self._endpoints = [row[0] for row in cursor.fetchall()]
            self._checked = time.monotonic()
        return self._endpoints

    def write(self, cursor: Any, sent: list[tuple[int, str, str, str]], now: datetime) -> None:
        """One digest.sent event per (digest id, address, period, Message-ID), for every endpoint that wants it.
        Which endpoints want it is read again every RECHECK seconds, not per group: a sender's groups come many a
        second, and an endpoint added during a run hears of what is sent from then on, within those seconds."""
        endpoints = self._wanting(cursor)
        if not endpoints:
            return
        when = self._when(now)
        for digest_id, email, period, message_id in sent:
            data = {"digest_id": digest_id, "email": email, "period": period, "message_id": message_id}
            payload = json.dumps({"type": "digest.sent", "timestamp": now.isoformat(), "data": data})
            cursor.execute(self.message, (new_message_id(), payload, email, when))
            message = cursor.fetchone()[0]
            cursor.executemany(self.delivery, [(message, when, e) for e in endpoints])
