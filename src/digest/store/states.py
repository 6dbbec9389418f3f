"""Every state a digest, a subscriber, a source or a job run can be in, the choices stored as words (frequency,
bounce kind), the named sets the code asks about, and the column types that store them (EnumText) and the store's
instants (UTCDateTime).

Stored as their values (lower-case strings) with a CHECK constraint (migration 0005), read back as these enums
(EnumText, below), compared as enums. A state is typed out here and nowhere else (tests/test_house.py checks).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import DateTime, String, TypeDecorator
from sqlalchemy.engine import Dialect


class DigestStatus(StrEnum):
    """planned -> sending -> sent; sending -> deferred -> sending ...; failed; cancelled."""

    PLANNED = "planned"
    # Claimed by one process (claimed_by) that is handing it to the server right now.
    SENDING = "sending"
    SENT = "sent"
    # A temporary failure: tried again from next_attempt_at.
    DEFERRED = "deferred"
    # For good: refused, out of attempts, or a message that could not be built.
    FAILED = "failed"
    # The subscriber left or was suppressed before it went.
    CANCELLED = "cancelled"


# Not sent and not given up on: may be claimed when due (sending only when its claim was abandoned); what
# `preview` shows instead of planning anew.
WAITING = frozenset({DigestStatus.PLANNED, DigestStatus.DEFERRED, DigestStatus.SENDING})
# Cancelled when the subscriber leaves: everything not yet sent. A sending one keeps its holder, so a message
# already handed over is still recorded as sent.
# Ended without being sent: few, so a partial index of them (ix_digests_unsent) costs little and counts them fast.
UNSENT = frozenset({DigestStatus.FAILED, DigestStatus.CANCELLED})


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # awaiting confirmation: nothing is sent
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    SUPPRESSED = "suppressed"  # hard bounces: never tried again until confirmed again


class SourceStatus(StrEnum):
    NEW = "new"  # being read for the first time
    OK = "ok"
    PARTIAL = "partial"  # read, but items were left out
    NOT_MODIFIED = "not-modified"  # HTTP 304
    FAILED = "failed"
    GONE = "gone"  # HTTP 410: not fetched by runs any more


# Sources an operator should look at.
FAILING = frozenset({SourceStatus.FAILED, SourceStatus.GONE, SourceStatus.PARTIAL})


class JobOutcome(StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


class Frequency(StrEnum):
    """How often a subscriber chose to get digests (None in the store: the operator's default)."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class MailFormat(StrEnum):
    """How a subscriber reads their digests: HTML with its plain-text alternative (the default), or plain text only."""

    HTML = "html"
    TEXT = "text"


class Delivery(StrEnum):
    """What one try of a digest came to, as digest_deliveries_total counts it (a digest's state is its result)."""

    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    BOUNCED = "bounced"  # refused for the recipient during the SMTP transaction: failed, and a hard bounce
    CANCELLED = "cancelled"


class BounceKind(StrEnum):
    HARD = "hard"  # permanent: counts toward suppression
    SOFT = "soft"  # temporary: recorded


class WebhookState(StrEnum):
    """A webhook delivery: waiting for its (next) try, taken by the endpoint (2xx), or given up after the retries."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def check(column: str, states: type[StrEnum]) -> str:
    """The SQL of a CHECK constraint that keeps ``column`` to the values of ``states``."""
    return f"{column} IN ({', '.join(repr(s.value) for s in states)})"


def among(column: str, states: frozenset[DigestStatus]) -> str:
    """``column IN (...)`` for a named set, its values sorted (a partial index's predicate is matched word for
    word, so it is always written the same)."""
    return f"{column} IN ({', '.join(repr(s.value) for s in sorted(states, key=str))})"


# The worker's one-off start-up planning job (digest.worker.names): its runs are recorded under plan-send, so the
# figures and `digest status` list it under that.
FIRST_PLAN = "plan-send-start"


# Column types ---------------------------------------------------------------------------------------------------


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (which keeps no offset) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use digest.clock.now()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


E = TypeVar("E", bound=StrEnum)


class EnumText(TypeDecorator[E]):
    """A state or a choice stored as its word (with a CHECK constraint beside it) and read back as its enum: a value
    that is not one of the enum's is refused before it reaches the database."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int = 20) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)
