"""Five-field cron expressions with crontab's weekday numbers (0 and 7 are Sunday), as APScheduler triggers.

APScheduler's `CronTrigger.from_crontab` counts weekdays from Monday = 0, so `1-5` would mean Tuesday to
Saturday; an operator writing crontab means Monday to Friday. The weekday field is translated to names.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # imported where a trigger is made: most runs have no cron schedule, and it costs 10 ms a start
    from apscheduler.triggers.cron import CronTrigger

NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    if token[:3] in NAMES:
        return NAMES.index(token[:3])
    raise ValueError(f"{token!r} is not a weekday (0-7 or sun-sat)")


def _weekdays(field: str) -> str:
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in {item!r}")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            a, b = span.split("-", 1)
            first, last = _day(a), _day(b)
            if b.strip() == "7":
                last = 7
        else:
            first = last = _day(span)
            if step_text:
                last = 6
        if last < first:
            raise ValueError(f"{item!r} runs backwards")
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(NAMES[d] for d in sorted(days))


def crontab_trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A trigger for `minute hour day month weekday`, weekdays counted as crontab does; ValueError if bad."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    if re.search(r"[^0-9a-zA-Z*,/\-?]", weekday):
        raise ValueError(f"weekday field {weekday!r}")
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(weekday), timezone=zone)
