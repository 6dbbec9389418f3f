"""Each subscriber's digest slots: daily, weekly or monthly at a local hour in their own timezone.

A slot is a local date and hour turned into an instant. An hour that does not exist that day (spring forward)
goes out at the next valid time (02:00 becomes 03:00); an hour that happens twice (fall back) goes out once,
the first time. Monthly day 29, 30 or 31 is the month's last day in a shorter month. Subscribers who chose
nothing follow the operator's defaults: weekly at `schedule_weekday` and `schedule_hour` in `timezone`, or the
five-field cron `schedule` when it is set.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.errors import DigestError
from digest.schedules.zones import unknown_zone
from digest.store.states import Frequency
from digest.text.i18n import _, ngettext, weekday_in_sentence

if TYPE_CHECKING:  # made by digest.schedules.cron for an operator's cron schedule only (its import: 10 ms a start)
    from apscheduler.triggers.cron import CronTrigger

FREQUENCIES = tuple(f.value for f in Frequency)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# How far the slot search looks (a monthly day 31 recurs within two months).
_HORIZON = 400


class ScheduleError(DigestError):
    """A schedule choice that cannot be: the message names the field and the value."""

    hint = "frequency daily|weekly|monthly; day a weekday name (weekly) or 1-31 (monthly); hour 0-23; an IANA timezone"


@dataclass(frozen=True)
class Schedule:
    """When one subscriber's digests are due. ``day`` is a weekday (0 = Monday) for weekly, 1-31 for monthly."""

    frequency: str
    day: int | None
    hour: int
    zone: ZoneInfo
    # The operator's five-field cron, for subscribers who chose nothing (frequency "cron").
    cron: CronTrigger | None = None

    def _slot_on(self, day: date) -> datetime | None:
        if self.frequency == Frequency.WEEKLY and day.weekday() != self.day:
            return None
        if self.frequency == Frequency.MONTHLY:
            assert self.day is not None
            if day.day != min(self.day, calendar.monthrange(day.year, day.month)[1]):
                return None
        # fold=0: a time in the spring-forward gap takes the offset from before it (02:00 -> 03:00 local);
        # a time that happens twice takes its first occurrence.
        return datetime.combine(day, time(self.hour), tzinfo=self.zone).astimezone(UTC)

    def next_after(self, instant: datetime) -> datetime:
        """The first slot strictly after ``instant`` (UTC)."""
        if self.cron is not None:
            fire = self.cron.get_next_fire_time(None, instant + timedelta(seconds=1))
            assert fire is not None
            return fire.astimezone(UTC)  # type: ignore[no-any-return]
        start = instant.astimezone(self.zone).date() - timedelta(days=1)
        for offset in range(_HORIZON):
            slot = self._slot_on(start + timedelta(days=offset))
            if slot is not None and slot > instant:
                return slot
        raise AssertionError("no slot within the horizon")

    def last_at_or_before(self, instant: datetime) -> datetime:
        """The newest slot at or before ``instant`` (UTC)."""
        if self.cron is not None:
            fire = last_fire(self.cron, instant)
            return (fire or instant).astimezone(UTC)
        start = instant.astimezone(self.zone).date() + timedelta(days=1)
        for offset in range(_HORIZON):
            slot = self._slot_on(start - timedelta(days=offset))
            if slot is not None and slot <= instant:
                return slot
        raise AssertionError("no slot within the horizon")

    def describe(self) -> str:
        """The schedule in words, in the language of the moment (digest.text.i18n): "weekly on Monday at 08:00
        Europe/Paris", "chaque semaine, le lundi à 08:00 Europe/Paris"."""
        when, hour = f"{self.hour:02d}:00 {self.zone.key}", self.hour
        if self.cron is not None:
            return _("on the operator's schedule (%(cron)s)", cron=self.cron)
        # By the hour's plural: Spanish says "a la 01:00" but "a las 08:00".
        if self.frequency == Frequency.WEEKLY:
            assert self.day is not None
            day = weekday_in_sentence(self.day)
            return ngettext("weekly on %(day)s at %(time)s", "weekly on %(day)s at %(time)s", hour, day=day, time=when)
        if self.frequency == Frequency.MONTHLY:
            return ngettext(
                "monthly on day %(day)d at %(time)s",
                "monthly on day %(day)d at %(time)s",
                hour,
                day=self.day,
                time=when,
            )
        return ngettext("daily at %(time)s", "daily at %(time)s", hour, time=when)


def last_fire(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The newest fire time of a cron trigger at or before ``now`` (looking back up to ~a year)."""
    span = timedelta(hours=1)
    while span <= timedelta(days=400):
        fire: datetime | None = trigger.get_next_fire_time(None, now - span)
        found: datetime | None = None
        while fire is not None and fire <= now:
            found = fire
            fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        if found is not None:
            return found
        span *= 8
    return None


def slot_key(slot: datetime) -> str:
    """The digest key of a slot: its instant in UTC (`2026-11-16T0700Z`); unique per subscriber and slot, and
    fit for a Message-ID (no colon)."""
    return slot.astimezone(UTC).strftime("%Y-%m-%dT%H%MZ")


@dataclass(frozen=True)
class Choice:
    """What a subscriber chose; None is "as the operator's default"."""

    frequency: str | None = None
    day: int | None = None
    hour: int | None = None
    timezone: str | None = None


def parse_choice(
    frequency: str | None = None,
    day: str | int | None = None,
    hour: str | int | None = None,
    timezone: str | None = None,
) -> Choice:
    """A validated choice from text (CLI, CSV, web form); ScheduleError naming the field otherwise."""
    freq = frequency.strip().lower() if isinstance(frequency, str) and frequency.strip() else None
    if freq is not None and freq not in FREQUENCIES:
        raise ScheduleError(
            _("frequency %(value)r is not one of %(choices)s", value=frequency, choices=", ".join(FREQUENCIES))
        )
    hour_value: int | None = None
    if hour is not None and str(hour).strip() != "":
        text = str(hour).strip()
        if not text.isdigit() or not 0 <= int(text) <= 23:
            raise ScheduleError(_("hour %(value)r is not an hour from 0 to 23", value=hour))
        hour_value = int(text)
    zone: str | None = None
    if timezone is not None and timezone.strip():
        zone = timezone.strip()
        problem = unknown_zone(zone)
        if problem:
            raise ScheduleError(_("timezone %(problem)s", problem=problem))
    day_value: int | None = None
    if day is not None and str(day).strip() != "":
        text = str(day).strip().lower()
        if freq in (None, Frequency.WEEKLY) and not text.isdigit():
            names = [w for w in WEEKDAYS if w.startswith(text[:3])] if len(text) >= 3 else []
            if not names:
                raise ScheduleError(_("day %(value)r is not a weekday name (monday ... sunday)", value=day))
            day_value = WEEKDAYS.index(names[0])
            freq = freq or Frequency.WEEKLY
        elif freq == Frequency.MONTHLY and text.isdigit():
            if not 1 <= int(text) <= 31:
                raise ScheduleError(_("day %(value)r is not a day of the month from 1 to 31", value=day))
            day_value = int(text)
        elif freq == Frequency.DAILY:
            raise ScheduleError(_("day %(value)r: a daily digest has no day", value=day))
        else:
            raise ScheduleError(
                _(
                    "day %(value)r does not fit frequency %(frequency)s: a weekday name for weekly, 1-31 for monthly",
                    value=day,
                    frequency=freq or Frequency.WEEKLY,
                )
            )
    if freq == Frequency.MONTHLY and day_value is None:
        raise ScheduleError(_("a monthly digest needs a day of the month (1-31)"))
    return Choice(freq, day_value, hour_value, zone)


def choice_of(row: Any) -> Choice:
    """The schedule choice stored on a subscriber row (or object): frequency, day, hour, timezone."""
    return Choice(row.frequency, row.day, row.hour, row.timezone)


@dataclass(frozen=True)
class Defaults:
    """The operator's defaults, from settings."""

    weekday: int
    hour: int
    timezone: str
    cron: CronTrigger | None = None


def schedule_of(choice: Choice, defaults: Defaults) -> Schedule:
    """The schedule a subscriber follows: their choice, completed by the operator's defaults.

    Total: a stored value that cannot be (a timezone tzdata no longer has, a weekday out of range after a hand
    edit) falls back to the default for that field, so one odd row never stops planning for everyone.
    """
    try:
        zone = ZoneInfo(choice.timezone or defaults.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo(defaults.timezone)
    hour = defaults.hour if choice.hour is None or not 0 <= choice.hour <= 23 else choice.hour
    if choice.frequency is None and choice.day is None and choice.hour is None and choice.timezone is None:
        if defaults.cron is not None:
            return Schedule("cron", None, hour, zone, defaults.cron)
    frequency = choice.frequency if choice.frequency in FREQUENCIES else Frequency.WEEKLY
    day = choice.day
    if frequency == Frequency.WEEKLY and (day is None or not 0 <= day <= 6):
        day = defaults.weekday
    if frequency == Frequency.MONTHLY and (day is None or not 1 <= day <= 31):
        day = 1
    return Schedule(frequency, day if frequency != Frequency.DAILY else None, hour, zone)
