"""Every state a digest, a subscriber, a source or a job run can be in, and the named sets the code asks about.

Stored as their values (lower-case strings) with a CHECK constraint (migration 0005); compared as enums. A
state is typed out here and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum


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
CANCELLABLE = frozenset({DigestStatus.PLANNED, DigestStatus.DEFERRED, DigestStatus.SENDING})


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


def check(column: str, states: type[StrEnum]) -> str:
    """The SQL of a CHECK constraint that keeps ``column`` to the values of ``states``."""
    return f"{column} IN ({', '.join(repr(s.value) for s in states)})"
