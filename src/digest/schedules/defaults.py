"""The operator's default schedule, from settings: for subscribers who chose none of their own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from digest.schedules.cron import crontab_trigger
from digest.schedules.slots import Defaults

if TYPE_CHECKING:  # the settings are read, never imported: settings sit above schedules (config imports slots)
    from digest.config import Settings


def defaults_from(settings: Settings) -> Defaults:
    """The schedule of subscribers who chose nothing: the weekly weekday and hour, or DIGEST_SCHEDULE."""
    cron = crontab_trigger(settings.schedule, settings.zone) if settings.schedule else None
    return Defaults(settings.weekday_index, settings.schedule_hour, settings.timezone, cron)
