"""Settings: one typed object, loaded in layers (defaults, then a TOML file, then DIGEST_* variables)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.errors import ConfigError
from digest.schedules.cron import crontab_trigger

DEFAULT_CONFIG_PATH = Path("config/digest.toml")
# Kinds of source digest reads (digest.ingest parses each); here so settings can be checked at load.
SOURCE_FORMATS = ("listing", "rss", "atom", "json", "csv")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class SourceConfig:
    """One configured source: a file path or URL, with an optional theme and format."""

    location: str
    theme: str | None = None
    format: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class SeedSubscriber:
    """A subscriber the config guarantees (confirmed) on every run: for demos and fixed recipients."""

    email: str
    themes: tuple[str, ...]


@dataclass(frozen=True)
class SmtpSettings:
    """DIGEST_SMTP_URL taken apart."""

    host: str
    port: int
    ssl: bool
    starttls: bool
    username: str | None
    password: str | None

    def display(self) -> str:
        """The server as an operator would name it, without the password."""
        scheme = "smtps" if self.ssl else "smtp"
        return f"{scheme}://{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """Every setting digest reads. Each field's comment is the documentation of its key."""

    # SQLAlchemy URL of the store; SQLite by default, postgresql+psycopg://... to scale out.
    database_url: str = "sqlite:///var/digest.db"
    # Public URL of the web app; every link in mails and feeds starts with it.
    base_url: str = "https://digest.example.org"
    # Where SMTP mail goes: smtp://[user:password@]host[:port][?starttls=1] or smtps://...; empty = outbox.
    smtp_url: str = ""
    # Seconds to wait for the SMTP server before giving up on a command.
    smtp_timeout: float = 30.0
    # Maildir that receives digests when smtp_url is empty (make run, development).
    outbox_dir: str = "var/outbox"
    # The From header of every digest: one address, optionally with a display name.
    mail_from: str = "Practice digest <digest@digest.example.org>"
    # List-Id (RFC 2919) of the service; the digest's identity in mail clients' filters.
    list_id: str = "practices.digest.example.org"
    # Key that signs unsubscribe tokens; set a long random value in production (DIGEST_SECRET_KEY).
    secret_key: str = "dev-only-secret-change-me"
    # Folder of the email templates (digest.txt, digest.html); empty = the project's templates/email.
    templates_dir: str = ""
    # Folder the Atom feeds are written to.
    feeds_dir: str = "feeds"
    # Newest entries kept in each feed.
    feed_max_entries: int = 50
    # Author named in every feed (Atom requires one).
    feed_author: str = "digest"
    # Authority of the permanent tag: URIs (RFC 4151) used as feed and entry ids: a domain you own.
    id_domain: str = "digest.example.org"
    # Date of the tag: URIs; fixed forever once feeds are published.
    id_date: str = "2026-01-01"
    # Weekday the weekly digest goes out (a name: monday ... sunday).
    schedule_weekday: str = "monday"
    # Local hour (0-23) the weekly digest goes out; a morning hour never falls in a DST gap.
    schedule_hour: int = 8
    # Five-field cron expression (in `timezone`) that replaces the weekly weekday and hour; empty = weekly.
    schedule: str = ""
    # IANA timezone of the schedule.
    timezone: str = "UTC"
    # Days of practices a newly confirmed subscriber gets in their first digest (0 = only newer ones).
    welcome_backfill_days: int = 0
    # Subscribers planned or sent per database transaction; bounds memory as subscribers grow.
    batch_size: int = 500
    # Worker: minutes between polls of the configured sources (feeds are rebuilt after an ingest).
    poll_minutes: float = 60.0
    # Worker: minutes between runs of the retry job (deferred digests that are due, abandoned claims).
    retry_minutes: float = 5.0
    # Worker: seconds a leader's lease lasts without renewal; another worker takes over after that.
    lease_seconds: float = 30.0
    # Worker: hours a scheduled run may be late (downtime) and still run, once.
    misfire_hours: float = 12.0
    # Tries per message within a run on a 4xx answer, a dropped connection or a timeout.
    send_tries: int = 3
    # Seconds before the second try of a message; doubled for each one after.
    send_backoff: float = 1.0
    # Minutes a digest that still could not go waits before the next run tries it; doubled after each.
    retry_delay_minutes: float = 15.0
    # Runs that may try one digest before it is failed for good (6: the last about 8 hours after the first).
    max_attempts: int = 6
    # Hard bounces (5xx for the address) in a row after which an address is suppressed.
    suppress_after_bounces: int = 1
    # Messages per second at most (0 = no limit).
    rate_per_second: float = 0.0
    # Messages per hour at most, counted from the store, across runs (0 = no limit); the rest waits.
    rate_per_hour: int = 0
    # Seconds after which a digest claimed by a process that never finished it is taken over.
    claim_timeout: float = 600.0
    # Seconds to wait for a source's server (connect, and between bytes) before retrying.
    http_timeout: float = 20.0
    # Tries per source fetch on a 5xx answer, a timeout or a dropped connection (1 = no retry).
    http_retries: int = 3
    # Seconds before the first retry; doubled for each one after (a Retry-After answer wins, up to 60 s).
    http_backoff: float = 2.0
    # Largest source body read, in bytes; a bigger one fails its source (guards against runaway responses).
    http_max_bytes: int = 20_000_000
    # Redirects followed per fetch before the source fails.
    http_max_redirects: int = 5
    # Sources read by `digest run` and the worker ([[sources]] tables: path or url, theme, format, enabled).
    sources: tuple[SourceConfig, ...] = ()
    # Subscribers ensured (confirmed) on every run ([[subscribers]] tables: email, themes).
    subscribers: tuple[SeedSubscriber, ...] = ()
    # The file these settings came from, if any (not a key).
    config_path: str | None = field(default=None, compare=False)

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's timezone (validated at load)."""
        return ZoneInfo(self.timezone)

    @property
    def weekday_index(self) -> int:
        """The schedule weekday as Python counts it: Monday is 0."""
        return WEEKDAYS.index(self.schedule_weekday)

    def smtp(self) -> SmtpSettings | None:
        """The SMTP server, or None when mail goes to the outbox."""
        return parse_smtp_url(self.smtp_url) if self.smtp_url else None


_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
# Scalar keys and their types, read off the annotations (strings, under `from __future__ import annotations`).
_SCALARS: dict[str, type] = {f.name: _TYPES[str(f.type)] for f in fields(Settings) if str(f.type) in _TYPES}


def parse_smtp_url(url: str, origin: str = "smtp_url") -> SmtpSettings:
    """Take smtp://user:password@host:port?starttls=1 apart, or raise ConfigError naming the key."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(f"{origin}: {url!r} is not smtp://host[:port] or smtps://host[:port]")
    query = parse_qs(parts.query)
    starttls = query.get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
    except ValueError as e:
        raise ConfigError(f"{origin}: bad port in {url!r}") from e
    return SmtpSettings(
        host=parts.hostname,
        port=port,
        ssl=parts.scheme == "smtps",
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _convert(key: str, raw: Any, origin: str) -> Any:
    kind = _SCALARS[key]
    where = f"{key} (from {origin})"
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{where}: {raw!r} is not true or false")
    if kind is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: {raw!r} is not a whole number")
        try:
            return int(raw)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {raw!r} is not a whole number") from e
    if kind is float:
        try:
            return float(raw)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {raw!r} is not a number") from e
    if not isinstance(raw, str):
        raise ConfigError(f"{where}: {raw!r} is not a string")
    return raw


def _sources(raw: Any, origin: str) -> tuple[SourceConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"sources (from {origin}): expected [[sources]] tables")
    out = []
    for i, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            raise ConfigError(f"sources #{i} (from {origin}): expected a table")
        location = item.get("url") or item.get("path")
        if not isinstance(location, str) or not location:
            raise ConfigError(f"sources #{i} (from {origin}): needs a path or a url")
        unknown = set(item) - {"url", "path", "theme", "format", "enabled"}
        if unknown:
            raise ConfigError(f"sources #{i} (from {origin}): unknown key(s) {', '.join(sorted(unknown))}")
        if item.get("format") not in (None, *SOURCE_FORMATS):
            raise ConfigError(
                f"sources #{i} (from {origin}): format {item['format']!r} is not one of {', '.join(SOURCE_FORMATS)}"
            )
        out.append(
            SourceConfig(
                location=location,
                theme=item.get("theme"),
                format=item.get("format"),
                enabled=bool(item.get("enabled", True)),
            )
        )
    return tuple(out)


def _subscribers(raw: Any, origin: str) -> tuple[SeedSubscriber, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"subscribers (from {origin}): expected [[subscribers]] tables")
    out = []
    for i, item in enumerate(raw, 1):
        email = item.get("email") if isinstance(item, dict) else None
        themes = item.get("themes") if isinstance(item, dict) else None
        if not isinstance(email, str) or not isinstance(themes, list) or not themes:
            raise ConfigError(f"subscribers #{i} (from {origin}): needs email and a list of themes")
        out.append(SeedSubscriber(email=email, themes=tuple(str(t) for t in themes)))
    return tuple(out)


def _validate(settings: Settings) -> Settings:
    origin = settings.config_path or "defaults"
    if settings.schedule_weekday.lower() not in WEEKDAYS:
        raise ConfigError(
            f"schedule_weekday (from {origin} or DIGEST_SCHEDULE_WEEKDAY): "
            f"{settings.schedule_weekday!r} is not a weekday name"
        )
    if not 0 <= settings.schedule_hour <= 23:
        raise ConfigError(f"schedule_hour: {settings.schedule_hour} is not an hour from 0 to 23")
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(f"timezone: {settings.timezone!r} is not an IANA timezone such as Europe/Paris") from e
    if not settings.base_url.startswith(("https://", "http://")):
        raise ConfigError(f"base_url: {settings.base_url!r} must start with https:// (or http:// for tests)")
    if settings.smtp_url:
        parse_smtp_url(settings.smtp_url)
    for key in (
        "batch_size", "feed_max_entries", "http_retries", "http_max_bytes", "send_tries", "max_attempts",
        "suppress_after_bounces",
    ):  # fmt: skip
        if getattr(settings, key) < 1:
            raise ConfigError(f"{key}: must be at least 1")
    if settings.schedule:
        try:
            crontab_trigger(settings.schedule, ZoneInfo(settings.timezone))
        except ValueError as e:
            raise ConfigError(
                f"schedule (DIGEST_SCHEDULE): {settings.schedule!r} is not a five-field cron expression: {e}",
                "for example '0 8 * * mon' (minute hour day month weekday)",
            ) from e
    for key in ("poll_minutes", "retry_minutes", "lease_seconds", "misfire_hours"):
        if getattr(settings, key) <= 0:
            raise ConfigError(f"{key}: must be more than 0")
    try:
        date.fromisoformat(settings.id_date)
    except ValueError as e:
        raise ConfigError(f"id_date: {settings.id_date!r} is not a date such as 2026-01-01") from e
    for key in (
        "http_timeout", "http_backoff", "http_max_redirects", "send_backoff", "retry_delay_minutes",
        "rate_per_second", "rate_per_hour", "claim_timeout",
    ):  # fmt: skip
        if getattr(settings, key) < 0:
            raise ConfigError(f"{key}: must not be negative")
    if settings.welcome_backfill_days < 0:
        raise ConfigError("welcome_backfill_days: must not be negative")
    return replace(settings, schedule_weekday=settings.schedule_weekday.lower(), base_url=settings.base_url.rstrip("/"))


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file (``path``, else $DIGEST_CONFIG, else config/digest.toml), then DIGEST_*."""
    env = dict(os.environ if environ is None else environ)
    chosen = Path(path) if path else Path(env["DIGEST_CONFIG"]) if env.get("DIGEST_CONFIG") else None
    if chosen is None and DEFAULT_CONFIG_PATH.is_file():
        chosen = DEFAULT_CONFIG_PATH
    values: dict[str, Any] = {}
    if chosen is not None:
        origin = str(chosen)
        try:
            data = tomllib.loads(chosen.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"config file {origin} does not exist", "check --config or DIGEST_CONFIG") from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {origin} is not valid TOML: {e}") from e
        for key, raw in data.items():
            if key == "sources":
                values[key] = _sources(raw, origin)
            elif key == "subscribers":
                values[key] = _subscribers(raw, origin)
            elif key in _SCALARS:
                values[key] = _convert(key, raw, origin)
            else:
                raise ConfigError(f"{key} (from {origin}): unknown key", "see the README for the list of keys")
        values["config_path"] = origin
    for key in _SCALARS:
        var = f"DIGEST_{key.upper()}"
        if var in env:
            values[key] = _convert(key, env[var], var)
    return _validate(Settings(**values))
