"""When digests are due: the weekly slot (weekday, hour, timezone) and the period it opens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from digest.config import WEEKDAYS, Settings
from digest.schedules.cron import crontab_trigger
from digest.schedules.slots import Defaults, last_fire


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


def digest_trigger(settings: Settings) -> CronTrigger:
    """When digests go out: DIGEST_SCHEDULE (five-field cron) if set, else the weekly weekday and hour."""
    if settings.schedule:
        return crontab_trigger(settings.schedule, settings.zone)
    # Weekday by name: APScheduler counts day_of_week from Monday = 0, crontab from Sunday.
    day = WEEKDAYS[settings.weekday_index][:3]
    return CronTrigger(day_of_week=day, hour=settings.schedule_hour, minute=0, timezone=settings.zone)


def current_period(settings: Settings, now: datetime) -> Period:
    """The period a send at ``now`` belongs to: the one opened by the newest slot at or before now.

    Weekly keys are the slot's local date (2026-11-16); a cron schedule's keys add the local time
    (2026-11-16T08:00), so a schedule that fires more than once a day still gives one key per slot.
    Both sort as strings in time order.
    """
    if settings.schedule:
        fire = last_fire(digest_trigger(settings), now)
        if fire is None:
            fire = now
        return Period(key=fire.astimezone(settings.zone).strftime("%Y-%m-%dT%H:%M"), starts=fire)
    slot = slot_on_or_before(now, settings.weekday_index, settings.schedule_hour, settings.zone)
    return Period(key=slot.date().isoformat(), starts=slot)


def next_slot(settings: Settings, now: datetime) -> datetime:
    """The next slot after ``now``."""
    slot = slot_on_or_before(now, settings.weekday_index, settings.schedule_hour, settings.zone)
    return datetime.combine(slot.date() + timedelta(days=7), time(settings.schedule_hour), tzinfo=settings.zone)


def defaults_from(settings: Settings) -> Defaults:
    """The schedule of subscribers who chose nothing: the weekly weekday and hour, or DIGEST_SCHEDULE."""
    cron = crontab_trigger(settings.schedule, settings.zone) if settings.schedule else None
    return Defaults(settings.weekday_index, settings.schedule_hour, settings.timezone, cron)
