"""The one clock every command reads, so that DIGEST_NOW can replace it for tests and replays."""

from __future__ import annotations

from datetime import UTC, datetime

_fixed: datetime | None = None


def set_fixed_now(instant: datetime | None) -> None:
    """Make ``now()`` return ``instant`` (timezone-aware) until reset with None."""
    global _fixed
    if instant is not None and instant.tzinfo is None:
        raise ValueError("a fixed clock needs a timezone-aware instant")
    _fixed = instant.astimezone(UTC) if instant is not None else None


def now() -> datetime:
    """The current instant in UTC, or the fixed one."""
    return _fixed if _fixed is not None else datetime.now(UTC)


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 instant; one without an offset is taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def fixed_now() -> datetime | None:
    """The instant set by set_fixed_now (DIGEST_NOW), or None when the clock is the real one."""
    return _fixed
