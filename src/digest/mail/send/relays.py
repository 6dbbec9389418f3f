"""Several SMTP relays behind one transport: a sender has a home relay (senders spread over the relays by their
``?weight=``), and goes to the next when its relay cannot be reached.

A relay that refuses the connection, times out, answers 421 at the greeting or refuses our sender is down: skipped
for a back-off (60 s, doubled each time it fails again, at most an hour) and the message goes to the next relay, the
same bytes and Message-ID (a message whose connection dropped mid-transaction was not accepted; the sender's retry
takes it there). An answer about the recipient or the message (4xx, 5xx) is that digest's answer, never a reason
to try another relay. A relay's ``?rate=`` (messages per second) holds across every sender and host: counted in the
store (digest.mail.send.ratelimit). Health changes are written to the store (`digest status`, the operator page,
``digest_relay_up``) and each relay's deliveries are counted by name (``digest_deliveries_total{relay}``), never
with its credentials.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from digest import clock, logs
from digest.config import SmtpSettings
from digest.errors import TransportError
from digest.mail.send.ratelimit import RateLimiter
from digest.mail.send.transport import Following, ServerUnavailable, SmtpTransport
from digest.store import counters

events = logs.EventLog(__name__)
FIRST_BACKOFF = 60.0
LONGEST_BACKOFF = 3600.0


def _bucket(relay: SmtpSettings) -> str:
    """The store's counter of a relay's rate (a short hash of its name: buckets are at most 64 characters)."""
    return "smtp:" + hashlib.sha256(relay.display().encode()).hexdigest()[:16]


class RelayTransport:
    """Sends each message through the first reachable of its relays, its home relay first (see the module)."""

    def __init__(
        self,
        relays: list[SmtpSettings],
        timeout: float,
        pipelining: bool = True,
        start: int | None = None,
        factory: sessionmaker[Session] | None = None,
    ) -> None:
        assert relays, "at least one relay"
        self.relays = relays
        # Each relay's name (scheme, host and port: never its credentials), made once: every outcome is counted
        # under it.
        self.names = [r.display() for r in relays]
        self.links = [SmtpTransport(r, timeout, pipelining) for r in relays]
        # Each relay as often as its weight: sender n's home is the n-th of that list (a random one by default).
        shares = [i for i, relay in enumerate(relays) for _ in range(relay.weight)]
        self.home = shares[start % len(shares)] if start is not None else random.choice(shares)
        self.current = self.home
        self.factory = factory
        self._down_until = [0.0] * len(relays)
        self._backoff = [0.0] * len(relays)
        self._known_up: list[bool | None] = [None] * len(relays)
        self._pacers = [
            RateLimiter(factory, per_second=r.rate, bucket=_bucket(r)) if factory and r.rate else None for r in relays
        ]

    @property
    def relay(self) -> str:
        """The relay the last message went through (or will go through next): its display name."""
        return self.names[self.current]

    def describe(self) -> str:
        others = len(self.relays) - 1
        return self.relay + (f" (and {others} other relay{'s' if others > 1 else ''})" if others else "")

    def _ready(self) -> Iterator[int]:
        """The relays not backing off, home first, then the others from it on (lazily: with the home relay up, as it
        nearly always is, nothing else is looked at)."""
        n = len(self.relays)
        now = time.monotonic()
        return (i for i in ((self.home + k) % n for k in range(n)) if self._down_until[i] <= now)

    def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        meanwhile: Callable[[], object] | None = None,
        following: Following | None = None,
    ) -> None:
        failures: list[ServerUnavailable] = []
        for index in self._ready():
            self.current = index
            pacer = self._pacers[index]
            if pacer is not None:
                pacer.wait()
            try:
                self.links[index].send(sender, recipient, message, meanwhile, following)
            except ServerUnavailable as e:
                self._went_down(index, e)
                failures.append(e)
                continue
            self._is_up(index)
            return
        if len(failures) == 1 and len(self.relays) == 1:
            raise failures[0]
        said = "; ".join(str(e) for e in failures) or "every relay is backing off"
        raise ServerUnavailable(
            f"no SMTP relay can be reached ({len(self.relays)} configured): {said}",
            "check smtp_url and that the relays are up; every digest stays pending for the next run",
        )

    def _went_down(self, index: int, error: TransportError) -> None:
        backoff = min(LONGEST_BACKOFF, self._backoff[index] * 2 or FIRST_BACKOFF)
        self._backoff[index] = backoff
        self._down_until[index] = time.monotonic() + backoff
        relay = self.names[index]
        events("relay.down", logging.WARNING, relay=relay, backoff=backoff, error=str(error))
        self._set(index, False, str(error))

    def _is_up(self, index: int) -> None:
        self._backoff[index] = 0.0
        self._down_until[index] = 0.0
        if self._known_up[index] is not True:
            if self._known_up[index] is False:
                events("relay.up", relay=self.names[index])
            self._set(index, True, None)

    def _set(self, index: int, up: bool, error: str | None) -> None:
        self._known_up[index] = up
        relay = self.names[index]
        if self.factory is None:
            return
        try:
            counters.record_relay(self._engine(), relay, up, error, clock.now())
        except Exception as e:  # the store's trouble is told by the run itself; health is a courtesy
            events("relay.unrecorded", logging.WARNING, relay=relay, error=f"{type(e).__name__}: {e}")

    def _engine(self) -> Any:
        assert self.factory is not None
        return self.factory.kw["bind"]

    def close(self) -> None:
        for link in self.links:
            link.close()
