"""The store out of reach under a running worker: one log event when it goes, a few more at growing intervals while
it stays away, one when it is back; and how long to wait before trying again (doubling, capped)."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.exc import DBAPIError

from digest import logs

# What the database raising looks like, whatever it is doing: gone, dropped, refusing, a schema that vanished.
STORE_ERRORS: tuple[type[BaseException], ...] = (DBAPIError,)
# First wait before trying again, and the longest; the log's "still unavailable" lines space out the same way,
# from FIRST_REMINDER up to LONGEST_REMINDER.
FIRST_RETRY, LONGEST_RETRY = 1.0, 30.0
FIRST_REMINDER, LONGEST_REMINDER = 30.0, 600.0


class StoreOutage:
    """Tracks one outage of the store for a worker (shared by its threads): what to log, and how long to wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None
        self.failures = 0
        self._next_reminder = 0.0
        self._reminder = FIRST_REMINDER

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, doing: str, error: BaseException) -> float:
        """Note a failure while ``doing`` something; log it if it is news; the seconds to wait before trying again."""
        now = time.monotonic()
        reason = " ".join(str(getattr(error, "orig", None) or error).split())[:500]
        with self._lock:
            self.failures += 1
            if self.since is None:
                self.since, self._reminder = now, FIRST_REMINDER
                self._next_reminder = now + self._reminder
                logs.event("store.unavailable", logging.ERROR, doing=doing, error=reason)
            elif now >= self._next_reminder:
                self._reminder = min(self._reminder * 2, LONGEST_REMINDER)
                self._next_reminder = now + self._reminder
                logs.event(
                    "store.still_unavailable",
                    logging.ERROR,
                    doing=doing,
                    error=reason,
                    seconds=round(now - self.since),
                    failures=self.failures,
                )
            backoff = min(FIRST_RETRY * 2 ** min(self.failures - 1, 10), LONGEST_RETRY)
            # Never wait past the next reminder: the log says "still unavailable" when it promised to (a wait of
            # 16 s begun at 15 s would put the 30 s line at 31 s, and a slow failing connect later still).
            return float(max(0.1, min(backoff, self._next_reminder - now)))

    def ok(self) -> None:
        """The store answered: if it had been away, say it is back."""
        if self.since is None:
            return
        with self._lock:
            if self.since is None:
                return
            logs.event("store.recovered", seconds=round(time.monotonic() - self.since), failures=self.failures)
            self.since, self.failures = None, 0
