"""Rate limits of the subscribe form, counted in the store so they hold across server processes and hosts.

What is counted is a keyed hash of the address or client, never the value: the counters hold no personal data.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from digest.config import Settings
from digest.store import counters

HOUR = timedelta(hours=1)


def bucket(settings: Settings, kind: str, value: str) -> str:
    return hmac.new(settings.secret_key.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def allow(session: Session, settings: Settings, kind: str, value: str, now: datetime) -> bool:
    """Count one request by ``kind`` ("address" or "client"); False once the hour's limit is passed."""
    limit = settings.subscribe_per_address_per_hour if kind == "address" else settings.subscribe_per_client_per_hour
    return counters.take(session, bucket(settings, kind, value), limit, HOUR, now)


def forget(session: Session, settings: Settings, kind: str, value: str) -> None:
    """Drop what is counted for ``value`` (an erased address)."""
    counters.forget(session, bucket(settings, kind, value))


def operator_try(session: Session, settings: Settings, client: str, now: datetime) -> bool:
    """Count one try of the operator password from this client; False past the hour's limit of wrong ones."""
    return counters.take(session, bucket(settings, "operator", client), settings.operator_tries_per_hour, HOUR, now)


def operator_right(session: Session, settings: Settings, client: str, now: datetime) -> None:
    """A right password: its try is given back (only wrong ones count against the limit)."""
    counters.give_back(session, bucket(settings, "operator", client), HOUR, now)
