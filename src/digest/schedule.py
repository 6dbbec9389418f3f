"""When digests are due: the weekly slot (weekday, hour, timezone) and the period it opens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from digest.config import Settings


@dataclass(frozen=True)
class Period:
    """One digest period: it opens at a scheduled slot; its key names it in the store and in mails."""

    key: str
    starts: datetime


def slot_on_or_before(now: datetime, weekday: int, hour: int, zone: ZoneInfo) -> datetime:
    """The newest weekly slot (local weekday and hour) at or before ``now``."""
    local = now.astimezone(zone)
    day = local.date() - timedelta(days=(local.weekday() - weekday) % 7)
    slot = datetime.combine(day, time(hour), tzinfo=zone)
    if slot > now:
        slot = datetime.combine(day - timedelta(days=7), time(hour), tzinfo=zone)
    return slot


def current_period(settings: Settings, now: datetime) -> Period:
    """The period a send at ``now`` belongs to: the one opened by the newest slot at or before now."""
    slot = slot_on_or_before(now, settings.weekday_index, settings.schedule_hour, settings.zone)
    return Period(key=slot.date().isoformat(), starts=slot)


def next_slot(settings: Settings, now: datetime) -> datetime:
    """The next slot after ``now``."""
    slot = slot_on_or_before(now, settings.weekday_index, settings.schedule_hour, settings.zone)
    return datetime.combine(slot.date() + timedelta(days=7), time(settings.schedule_hour), tzinfo=settings.zone)
