"""The sending rate limits, counted in the store so that every sender (process, host) counts together:
`rate_per_hour` against what went out in the last hour and what is in flight; `rate_per_second` through a
counter per second (digest.store.counters)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from digest.store import counters
from digest.store.db import transaction
from digest.store.digests import hour_budget


class RateLimiter:
    """One sender's view of the shared limits."""

    def __init__(
        self, factory: sessionmaker[Session], per_second: float = 0.0, per_hour: int = 0, bucket: str = "smtp"
    ) -> None:
        self.factory = factory
        # What the per-second counter is kept under: "smtp" for rate_per_second, "smtp:<relay>" for a relay's ?rate=.
        self.bucket = f"{bucket}:per-second"
        self.per_second = per_second
        self.per_hour = per_hour
        self._last = 0.0

    def hour_budget(self, now: datetime) -> int | None:
        """How many more may be claimed this hour (None: no hourly limit)."""
        if self.per_hour <= 0:
            return None
        with self.factory() as session:
            return hour_budget(session, self.per_hour, now)

    def wait(self) -> None:
        """Block until this message may go: spaced 1/per_second from this sender's last one, and within the
        second's budget that every sender shares."""
        if self.per_second <= 0:
            return
        delay = self._last + 1.0 / self.per_second - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        limit = max(1, int(self.per_second))
        while True:
            with transaction(self.factory) as session:
                if counters.take(session, self.bucket, limit, timedelta(seconds=1), datetime.now(UTC)):
                    break
            time.sleep(max(0.01, 1 - (time.time() % 1)))
        self._last = time.monotonic()
