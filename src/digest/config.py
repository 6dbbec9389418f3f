"""Settings: one typed object, loaded in layers (defaults, then a TOML file, then DIGEST_* variables)."""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

from digest.errors import ConfigError
from digest.schedules.slots import WEEKDAYS
from digest.text.links import redact_url

DEFAULT_CONFIG_PATH = Path("config/digest.toml")
DEFAULT_SECRET = "dev-only-secret-change-me"
ENVIRONMENTS = ("production", "development")
PIPELINING = ("auto", "off")
MIN_SECRET_LENGTH = 16
# Kinds of source digest reads (digest.ingest parses each); here so settings can be checked at load.
SOURCE_FORMATS = ("listing", "rss", "atom", "json", "csv")


@dataclass(frozen=True)
class SourceConfig:
    """One configured source: a file path or URL, with an optional theme and format."""

    location: str
    theme: str | None = None
    format: str | None = None
    enabled: bool = True
    # The language its items are written in when neither they nor the source say (a BCP 47 tag).
    language: str | None = None


@dataclass(frozen=True)
class SeedSubscriber:
    """A subscriber the config guarantees (confirmed) on every run: for demos and fixed recipients."""

    email: str
    themes: tuple[str, ...]
    # Where it is written, for messages: "subscribers #2 (from config/digest.toml)".
    where: str = "subscribers"


@dataclass(frozen=True)
class SmtpSettings:
    """DIGEST_SMTP_URL taken apart."""

    host: str
    port: int
    ssl: bool
    starttls: bool
    username: str | None
    password: str | None
    # Messages per second at most through this relay, across every sender and host (0: no limit of its own);
    # its share of the senders against the other relays'.
    rate: float = 0.0
    weight: int = 1

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
    # Several relays, separated by spaces: senders share them (by ?weight=N), a relay that is down is skipped for a
    # while (60 s, doubling) and its digests go through the next; ?rate=N (messages per second) holds for that
    # relay across every sender and host.
    smtp_url: str = ""
    # Seconds to wait for the SMTP server before giving up on a command.
    smtp_timeout: float = 30.0
    # "auto": with a server that offers PIPELINING (RFC 2920), a message's commands go in one write and the next
    # message's with the end of this one's data (one wait for the server per message); "off": smtplib's own
    # sendmail, one command at a time (the way back, should a server mishandle pipelining).
    smtp_pipelining: str = "auto"
    # Maildir that receives digests when smtp_url is empty (make run, development).
    outbox_dir: str = "var/outbox"
    # The From header of every digest: one address, optionally with a display name.
    mail_from: str = "Practice digest <digest@digest.example.org>"
    # List-Id (RFC 2919) of the service; the digest's identity in mail clients' filters.
    list_id: str = "practices.digest.example.org"
    # Reply-To of digests (one address); empty = replies go to mail_from.
    reply_to: str = ""
    # The sender's postal address, shown in every digest's footer (bulk-mail laws ask for one); empty = none.
    postal_address: str = ""
    # Envelope sender (Return-Path) of digests, where bounces go; each digest's is made unique (VERP):
    # local+<token>@domain. Empty = mail_from's address. The MTA must deliver local+anything to local.
    bounce_address: str = ""
    # Where bounces, complaints and auto-replies arrive: a Maildir, an mbox, or an IMAP folder over TLS
    # (imaps://user:password@host[:port]/INBOX; read messages are moved to a "processed" folder). The worker reads it
    # every bounce_minutes. Empty = the worker reads none (`digest bounces PATH` reads one by hand).
    bounce_mailbox: str = ""
    # The older name of bounce_mailbox (a Maildir or mbox); read when bounce_mailbox is empty.
    bounce_maildir: str = ""
    # Worker: minutes between reads of the bounce mailbox.
    bounce_minutes: float = 10.0
    # PEM file of the RSA key that DKIM-signs every mail; empty = no DKIM signature.
    dkim_private_key: str = ""
    # DKIM selector: the public key is published at <selector>._domainkey.<dkim_domain>.
    dkim_selector: str = ""
    # DKIM signing domain (d=); empty = mail_from's domain.
    dkim_domain: str = ""
    # Key that signs every link (confirm, manage, unsubscribe, view) and the web forms' CSRF tokens: a long
    # random value, kept secret (DIGEST_SECRET_KEY). Changing it invalidates every link already mailed. The
    # default is refused by the web app outside development and by any send over SMTP.
    secret_key: str = DEFAULT_SECRET
    # "production" or "development"; the web app starts with the default secret_key only in development.
    environment: str = "production"
    # Prometheus: the token a scraper sends (Authorization: Bearer ...); empty = no metrics anywhere (/metrics and
    # the worker's port answer 404). A secret: keep it in the environment (DIGEST_METRICS_TOKEN).
    metrics_token: str = ""
    # Worker: port of its own /metrics (for a host without the web app); 0 = none. Bound to metrics_host.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # Webhooks: seconds between the worker's deliveries of due events, and to wait for an endpoint's answer.
    webhook_seconds: float = 5.0
    webhook_timeout: float = 10.0
    # REST API (/api/v1/): requests a minute per token (429 with Retry-After past it), counted in the store.
    api_per_minute: int = 600
    # The operator page (/operator/): an argon2 hash of its password (`digest operator password` makes one);
    # empty = no operator page (404). Wrong passwords per client per hour before it answers 429.
    operator_password_hash: str = ""
    operator_tries_per_hour: int = 10
    # Hours a confirmation link stays valid.
    confirm_hours: float = 72.0
    # Web: subscribe requests per address per hour (a request over it sends nothing and says the same).
    subscribe_per_address_per_hour: int = 3
    # Web: subscribe requests per client (IP address) per hour.
    subscribe_per_client_per_hour: int = 20
    # Web: reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host are trusted (0: none).
    trusted_proxies: int = 0
    # Web: practices per page on theme pages.
    page_size: int = 20
    # Folder of the email templates (digest.txt, digest.html); empty = the project's templates/email.
    templates_dir: str = ""
    # Folder the Atom feeds are written to.
    feeds_dir: str = "feeds"
    # Entries in each feed: a theme's feed holds its newest practices, from this many up to twice as many less
    # one; older ones are in archive documents of exactly this many (RFC 5005), each linked from the next.
    feed_max_entries: int = 50
    # Author named in every feed (Atom requires one).
    feed_author: str = "digest"
    # WebSub hubs (W3C WebSub) every feed names as rel="hub", told of each changed feed after an ingest: their
    # URLs, separated by spaces; empty = none.
    websub_hubs: str = ""
    # Seconds the hubs are given in all, per ingest, to take the news (tries included); a hub that fails is
    # logged and told again at the next change.
    websub_deadline: float = 10.0
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
    # Language of mails and pages for a subscriber who chose none and a visitor whose browser asks for none of
    # en, fr, es (digest.text.i18n).
    default_language: str = "en"
    # Practices listed in one digest at most; the newest are listed, the rest counted with a link to see them all.
    max_practices_per_digest: int = 50
    # Worker: minutes between checks for subscribers whose digest is due.
    due_minutes: float = 5.0
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
    # Soft bounces (a full mailbox, a block, a policy: the receiver refused this message, not the address) after
    # which the reader is asked "do you still want these?", when they span soft_bounce_days with no digest
    # accepted in between; unanswered for reconfirm_days, they leave with the reason "stopped receiving".
    soft_bounce_limit: int = 3
    soft_bounce_days: int = 15
    reconfirm_days: int = 30
    # Messages per second at most (0 = no limit).
    rate_per_second: float = 0.0
    # Messages per hour at most, counted from the store, across runs (0 = no limit); the rest waits.
    rate_per_hour: int = 0
    # Seconds after which a digest claimed by a process that never finished it is taken over.
    claim_timeout: float = 600.0
    # Accepted messages recorded as sent per database transaction (1 = each at once). A sender killed with -9
    # leaves at most this many messages the server had accepted to be sent again (with their Message-IDs).
    sent_per_commit: int = 10
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
    # Seconds one source fetch may take in all (every try and the waits between), however slowly it trickles.
    http_deadline: float = 120.0
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

    @property
    def hubs(self) -> list[str]:
        """The WebSub hubs, in the order configured (validated at load)."""
        return self.websub_hubs.split()

    def smtp(self) -> SmtpSettings | None:
        """The (first) SMTP relay, or None when mail goes to the outbox."""
        relays = self.relays()
        return relays[0] if relays else None

    def relays(self) -> list[SmtpSettings]:
        """Every SMTP relay smtp_url names (separated by spaces), in its order; none: mail goes to the outbox."""
        return [parse_smtp_url(url) for url in self.smtp_url.split()]

    @property
    def bounces_from(self) -> str:
        """The bounce mailbox the worker reads: bounce_mailbox, else the older bounce_maildir (empty: none)."""
        return self.bounce_mailbox or self.bounce_maildir


_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
# Scalar keys and their types, read off the annotations (strings, under `from __future__ import annotations`).
_SCALARS: dict[str, type] = {f.name: _TYPES[str(f.type)] for f in fields(Settings) if str(f.type) in _TYPES}

# Allowed ranges of the numeric keys (inclusive). Beyond them a value is a typo or a unit mistake, and some would
# overflow the database or the clock.
_RANGES: dict[str, tuple[float, float]] = {
    "smtp_timeout": (0.05, 3600),
    "feed_max_entries": (1, 10_000),
    "websub_deadline": (0.1, 600),
    "metrics_port": (0, 65535),
    "operator_tries_per_hour": (1, 10_000),
    "max_practices_per_digest": (1, 10_000),
    "due_minutes": (0.01, 1440),
    "schedule_hour": (0, 23),
    "welcome_backfill_days": (0, 3650),
    "batch_size": (1, 100_000),
    "poll_minutes": (0.01, 10_080),
    "retry_minutes": (0.01, 1440),
    "lease_seconds": (1, 3600),
    "misfire_hours": (0.01, 720),
    "send_tries": (1, 20),
    "send_backoff": (0, 600),
    "retry_delay_minutes": (0, 10_080),
    "max_attempts": (1, 100),
    "suppress_after_bounces": (1, 100),
    "soft_bounce_limit": (1, 100),
    "api_per_minute": (1, 1_000_000),
    "webhook_seconds": (0.5, 3600),
    "webhook_timeout": (0.5, 120),
    "soft_bounce_days": (0, 365),
    "reconfirm_days": (1, 365),
    "rate_per_second": (0, 100_000),
    "rate_per_hour": (0, 1_000_000_000),
    "claim_timeout": (0, 7 * 86_400),
    "sent_per_commit": (1, 1000),
    "http_timeout": (0.05, 600),
    "http_retries": (1, 20),
    "http_backoff": (0, 600),
    "http_max_bytes": (1, 2**31),
    "http_max_redirects": (0, 50),
    "http_deadline": (0.5, 86_400),
    "confirm_hours": (0.1, 24 * 365),
    "subscribe_per_address_per_hour": (1, 1_000_000),
    "subscribe_per_client_per_hour": (1, 1_000_000),
    "trusted_proxies": (0, 10),
    "page_size": (1, 1000),
    "bounce_minutes": (0.1, 10_080),
}
# A dot-atom (RFC 2919 list ids, tag: authorities): ASCII letters, digits and a few marks, dot-separated.


class Origins:
    """Where each key's value came from (a file, an environment variable, or the defaults), for error messages."""

    def __init__(self) -> None:
        self.by_key: dict[str, str] = {}

    def __call__(self, key: str) -> str:
        return f"{key} (from {self.by_key.get(key, 'the defaults')})"


def parse_smtp_url(url: str, origin: str = "smtp_url") -> SmtpSettings:
    """Take smtp://user:password@host:port?starttls=1 apart, or raise ConfigError naming the key (no password)."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"{origin}: {shown!r} is not smtp://host[:port] or smtps://host[:port] ({e})") from e
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(f"{origin}: {shown!r} is not smtp://host[:port] or smtps://host[:port]")
    query = parse_qs(parts.query)
    starttls = query.get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
    try:
        rate = float(query.get("rate", ["0"])[0])
        weight = int(query.get("weight", ["1"])[0])
    except ValueError:
        raise ConfigError(
            f"{origin}: {shown!r}: rate must be a number (messages per second) and weight a whole number",
            "for example smtp://relay.example:25?rate=14&weight=2",
        ) from None
    if not 0 <= rate <= 100_000 or not 1 <= weight <= 100:
        raise ConfigError(f"{origin}: {shown!r}: rate must be 0 to 100000 and weight 1 to 100")
    return SmtpSettings(
        rate=rate,
        weight=weight,
        host=parts.hostname,
        port=port or (465 if parts.scheme == "smtps" else 25),
        ssl=parts.scheme == "smtps",
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _convert(key: str, raw: Any, where: str, typed: bool = False) -> Any:
    """``raw`` as the key's type, in its range. ``typed``: it comes from a file, whose values carry their own type
    (a quoted "500" for a number is a mistake there; every environment variable is text)."""
    kind = _SCALARS[key]
    if typed and kind is not str and isinstance(raw, str):
        example = {bool: "true", int: "500", float: "2.5"}[kind]
        raise ConfigError(
            f"{where}: {raw!r} is text, not a {'number' if kind is not bool else 'true or false'}",
            f"write it without quotes, for example {key} = {example}",
        )
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{where}: {raw!r} is not true or false")
    if kind is int:
        if isinstance(raw, bool) or isinstance(raw, float) and not raw.is_integer():
            raise ConfigError(f"{where}: {raw!r} is not a whole number")
        try:
            value: int | float = int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        except (TypeError, ValueError, OverflowError) as e:
            raise ConfigError(f"{where}: {raw!r} is not a whole number") from e
    elif kind is float:
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: {raw!r} is not a number")
        try:
            value = float(raw)
        except (TypeError, ValueError, OverflowError) as e:
            raise ConfigError(f"{where}: {raw!r} is not a number") from e
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {raw!r} is not a finite number")
    else:
        if not isinstance(raw, str):
            raise ConfigError(f"{where}: {raw!r} is not a string")
        return raw
    low, high = _RANGES.get(key, (-math.inf, math.inf))
    if not low <= value <= high:
        raise ConfigError(f"{where}: {value!r} is out of range; use a value from {low:g} to {high:g}")
    return value


def secret_problem(settings: Settings) -> str | None:
    """Why ``secret_key`` must not sign links that leave this machine, or None when it may."""
    if settings.secret_key == DEFAULT_SECRET:
        return "secret_key is the development default, which anyone can read in the source"
    if len(settings.secret_key) < MIN_SECRET_LENGTH:
        return f"secret_key is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def require_real_secret(settings: Settings, what: str) -> None:
    """ConfigError unless ``secret_key`` is fit to sign links that real people receive."""
    problem = secret_problem(settings)
    if problem:
        raise ConfigError(
            f"{what} refused: {problem}; anyone could forge unsubscribe and manage links",
            "set DIGEST_SECRET_KEY (or secret_key in the config file) to a long random value, for example the "
            'output of: python3 -c "import secrets; print(secrets.token_urlsafe(32))"',
        )


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file (``path``, else $DIGEST_CONFIG, else config/digest.toml), then DIGEST_*."""
    env = dict(os.environ if environ is None else environ)
    chosen = Path(path) if path else Path(env["DIGEST_CONFIG"]) if env.get("DIGEST_CONFIG") else None
    if chosen is None and DEFAULT_CONFIG_PATH.is_file():
        chosen = DEFAULT_CONFIG_PATH
    from digest.validation import sources_from, subscribers_from, validate  # they read what this module defines

    values: dict[str, Any] = {}
    origins = Origins()
    if chosen is not None:
        origin = str(chosen)
        try:
            data = tomllib.loads(chosen.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"config file {origin} does not exist", "check --config or DIGEST_CONFIG") from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {origin} is not valid TOML: {e}") from e
        except OSError as e:
            raise ConfigError(f"config file {origin} cannot be read: {e.strerror}") from e
        for key, raw in data.items():
            origins.by_key[key] = origin
            if key == "sources":
                values[key] = sources_from(raw, origin)
            elif key == "subscribers":
                values[key] = subscribers_from(raw, origin)
            elif key in _SCALARS:
                values[key] = _convert(key, raw, origins(key), typed=True)
            else:
                raise ConfigError(f"{key} (from {origin}): unknown key", "see the README for the list of keys")
        values["config_path"] = origin
    for key in _SCALARS:
        var = f"DIGEST_{key.upper()}"
        if var in env:
            origins.by_key[key] = var
            values[key] = _convert(key, env[var], origins(key))
    return validate(Settings(**values), origins)
