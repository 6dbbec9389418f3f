"""Rate limits of the subscribe form and the operator page, counted in the store so they hold across server
processes and hosts; and the throttle of the log lines about refused links (Refusals), counted in this process.

What is counted is a keyed hash of the address or client, never the value: the counters hold no personal data.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from digest import logs
from digest.config import Settings
from digest.store import counters

HOUR = timedelta(hours=1)
events = logs.EventLog("digest.web")


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


@dataclass
class _Seen:
    first: float
    route: str
    count: int = 0
    reasons: set[str] = field(default_factory=set)


class Refusals:
    """Refused links, logged per client and minute: the first at once (with its route and why), the rest of that
    minute as one line with their count, once the minute is over. A scanner trying thousands of links writes two
    lines a minute, not thousands; the client is named by a keyed hash, never its address or the token.

    One thread of its own writes the counts (started with the first refusal); at most MAX_CLIENTS are followed
    at once, and refusals from more clients than that in one minute are one line with their number."""

    WINDOW = 60.0
    MAX_CLIENTS = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}
        self._overflow = 0
        self._flusher: threading.Thread | None = None

    def refused(self, client: str, route: str, reason: str) -> None:
        with self._lock:
            seen = self._seen.get(client)
            if seen is not None:
                seen.count += 1
                seen.reasons.add(reason)
                return
            if len(self._seen) >= self.MAX_CLIENTS:
                self._overflow += 1
                return
            self._seen[client] = _Seen(time.monotonic(), route)
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._run, name="refusals", daemon=True)
                self._flusher.start()
        events("web.link_refused", logging.WARNING, route=route, reason=reason, client=client)

    def _run(self) -> None:
        while True:
            time.sleep(self.WINDOW / 4)
            self.flush(time.monotonic())

    def flush(self, now: float) -> None:
        """Write the counts of the clients whose minute is over."""
        with self._lock:
            done = {c: s for c, s in self._seen.items() if now - s.first >= self.WINDOW}
            for client in done:
                del self._seen[client]
            overflow, self._overflow = self._overflow, 0
        for client, seen in done.items():
            if seen.count:
                events(
                    "web.link_refused",
                    logging.WARNING,
                    route=seen.route,
                    client=client,
                    count=seen.count,
                    reasons=sorted(seen.reasons),
                    within=f"{self.WINDOW:g} s after the first",
                )
        if overflow:
            events("web.link_refused", logging.WARNING, clients="many", count=overflow)
