"""Every setting checked at load, so that a bad value is an error naming the key and the file at start-up, never a
failure later when the value is first used: addresses, URLs, folders (tried for writing), the database driver,
the DKIM key, the claim timeout's floor."""

from __future__ import annotations

import re
import tempfile
from dataclasses import replace
from datetime import date
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from digest.config import (
    ENVIRONMENTS,
    PIPELINING,
    SOURCE_FORMATS,
    SeedSubscriber,
    Settings,
    SourceConfig,
    parse_smtp_url,
)
from digest.errors import ConfigError
from digest.schedules.cron import crontab_trigger
from digest.schedules.slots import WEEKDAYS
from digest.schedules.zones import unknown_zone
from digest.text.i18n import UnknownLanguage, supported
from digest.text.languages import language_tag
from digest.text.links import redact_url

if TYPE_CHECKING:
    from digest.config import Origins

_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,200}}$){_LABEL}(\.{_LABEL})*")
SUPPORTED_DATABASES = {"sqlite": "sqlite:///path/to/digest.db", "postgresql": "postgresql+psycopg://user@host/db"}


def _creatable(folder: Path, where: str) -> None:
    """The folder exists, or could be made: its nearest existing ancestor is a folder where a file can be written.
    Tried for real (a temporary file, removed at once): permission bits do not tell about root, read-only mounts
    or pseudo file systems."""
    here = folder.absolute()
    while not here.exists():
        here = here.parent
    if not here.is_dir():
        raise ConfigError(f"{where}: {folder} cannot be created: {here} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=here):
            pass
    except OSError as e:
        what = f"cannot write in {folder}"
        if here != folder.absolute():
            what = f"{folder} cannot be created: cannot write in {here}"
        raise ConfigError(
            f"{where}: {what} ({e.strerror or e})", "choose a folder this user can write in, or fix its permissions"
        ) from e


def _check_database(url_text: str, where: str) -> None:
    try:
        url = make_url(url_text)
    except (ArgumentError, ValueError) as e:
        raise ConfigError(f"{where}: {redact_url(url_text)!r} is not a database URL") from e
    backend = url.get_backend_name()
    if backend not in SUPPORTED_DATABASES:
        raise ConfigError(
            f"{where}: digest runs on SQLite and PostgreSQL, not {backend}",
            "use " + " or ".join(SUPPORTED_DATABASES.values()),
        )
    try:
        url.get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError) as e:
        extra = "pip install 'digest[postgres]' (psycopg 3)" if backend == "postgresql" else "the driver"
        raise ConfigError(
            f"{where}: the database driver for {url.drivername} is not installed ({e})",
            f"install {extra}, and write the URL as {SUPPORTED_DATABASES[backend]}",
        ) from e
    if backend == "sqlite" and (not url.database or url.database == ":memory:"):
        # Each command is a process of its own, and a sender records outcomes on a connection of its own.
        raise ConfigError(
            f"{where}: an in-memory SQLite database is gone when the process ends, and is not shared between "
            "connections: what was stored or sent would be forgotten",
            "use a file, for example sqlite:///var/digest.db",
        )
    if backend == "sqlite":
        _creatable(Path(str(url.database)).parent, where)


def _address(value: str, where: str) -> str:
    """A From value (`Name <address>` or `address`) whose address parses, with an ASCII local part."""
    name, address = parseaddr(value)
    if "@" not in address:
        raise ConfigError(f"{where}: {value!r} has no email address", "for example 'Digest <digest@example.org>'")
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as e:
        raise ConfigError(f"{where}: {address!r} is not a valid address: {e}") from e
    if not valid.local_part.isascii():
        raise ConfigError(f"{where}: {address!r}: the sender's address must be ASCII before the @")
    ascii_address = f"{valid.local_part}@{valid.ascii_domain}"
    return formataddr((name, ascii_address)) if name else ascii_address


def validate(settings: Settings, where: Origins) -> Settings:
    """The settings checked key by key (a ConfigError naming the key and where its value came from), normalised."""
    if settings.schedule_weekday.lower() not in WEEKDAYS:
        raise ConfigError(f"{where('schedule_weekday')}: {settings.schedule_weekday!r} is not a weekday name")
    problem = unknown_zone(settings.timezone)
    if problem:
        raise ConfigError(f"{where('timezone')}: {problem}")
    try:
        settings = replace(settings, default_language=supported(settings.default_language))
    except UnknownLanguage as e:
        raise ConfigError(f"{where('default_language')}: {e}") from e
    base = urlsplit(settings.base_url)
    if base.scheme not in ("https", "http") or not base.hostname or not settings.base_url.isascii():
        raise ConfigError(
            f"{where('base_url')}: {settings.base_url!r} must be an ASCII https:// URL (http:// for tests)",
            "write an international domain in its xn-- (punycode) form",
        )
    for hub in settings.hubs:
        parts = urlsplit(hub)
        if parts.scheme not in ("https", "http") or not parts.hostname or not hub.isascii():
            raise ConfigError(
                f"{where('websub_hubs')}: {hub!r} is not an http(s) URL",
                "list the hubs' URLs separated by spaces, for example https://pubsubhubbub.appspot.com/",
            )
    if settings.metrics_port and not settings.metrics_token:
        raise ConfigError(
            f"{where('metrics_port')}: {settings.metrics_port} is set but metrics_token is empty",
            "set DIGEST_METRICS_TOKEN to a long random value: the scraper sends it as a Bearer token",
        )
    if settings.operator_password_hash and not settings.operator_password_hash.startswith("$argon2"):
        raise ConfigError(
            f"{where('operator_password_hash')}: not an argon2 hash",
            "make one with `digest operator password` and paste the line it prints",
        )
    for url in settings.smtp_url.split():
        parse_smtp_url(url, where("smtp_url"))
    _check_mailbox(settings.bounce_mailbox, where("bounce_mailbox"))
    if settings.smtp_pipelining not in PIPELINING:
        raise ConfigError(
            f"{where('smtp_pipelining')}: {settings.smtp_pipelining!r} is not one of {', '.join(PIPELINING)}",
            "auto pipelines when the server offers it; off sends one command at a time",
        )
    if settings.environment not in ENVIRONMENTS:
        raise ConfigError(f"{where('environment')}: {settings.environment!r} is not one of {', '.join(ENVIRONMENTS)}")
    if not settings.secret_key.strip():
        raise ConfigError(f"{where('secret_key')}: empty", "set a long random value (see the README)")
    if settings.schedule:
        try:
            crontab_trigger(settings.schedule, ZoneInfo(settings.timezone))
        except ValueError as e:
            raise ConfigError(
                f"{where('schedule')}: {settings.schedule!r} is not a five-field cron expression: {e}",
                "for example '0 8 * * mon' (minute hour day month weekday)",
            ) from e
    try:
        date.fromisoformat(settings.id_date)
    except ValueError as e:
        raise ConfigError(f"{where('id_date')}: {settings.id_date!r} is not a date such as 2026-01-01") from e
    if not _HOSTNAME.fullmatch(settings.id_domain):
        raise ConfigError(f"{where('id_domain')}: {settings.id_domain!r} is not an ASCII domain name")
    if len(settings.list_id) > 200 or not _DOT_ATOM.fullmatch(settings.list_id):
        raise ConfigError(
            f"{where('list_id')}: {settings.list_id!r} is not a list id (RFC 2919)", "for example news.example.org"
        )
    mail_from = _address(settings.mail_from, where("mail_from"))
    reply_to = _address(settings.reply_to, where("reply_to")) if settings.reply_to else ""
    bounce_address = _address(settings.bounce_address, where("bounce_address")) if settings.bounce_address else ""
    if parseaddr(bounce_address)[0]:
        raise ConfigError(f"{where('bounce_address')}: an envelope sender is an address only, with no name")
    if settings.dkim_private_key:
        key = Path(settings.dkim_private_key)
        try:
            pem = key.read_bytes()
        except OSError as e:
            raise ConfigError(f"{where('dkim_private_key')}: cannot read {key}: {e.strerror}") from e
        if b"-----BEGIN" not in pem or b"PRIVATE KEY-----" not in pem:
            raise ConfigError(f"{where('dkim_private_key')}: {key} is not a PEM private key")
        if not _HOSTNAME.fullmatch(settings.dkim_selector):
            raise ConfigError(
                f"{where('dkim_selector')}: {settings.dkim_selector!r}: a DKIM key needs a selector (a DNS label)",
                "the public key is published at <selector>._domainkey.<domain>",
            )
    if settings.dkim_domain and not _HOSTNAME.fullmatch(settings.dkim_domain):
        raise ConfigError(f"{where('dkim_domain')}: {settings.dkim_domain!r} is not an ASCII domain name")
    # A claim must outlive one message's whole try (every SMTP timeout and backoff) begun just before the sender
    # renews its claim (at a third of claim_timeout), or a second sender would take over a digest still in flight
    # and send it again.
    one = settings.send_tries * settings.smtp_timeout + settings.send_backoff * 2 ** (settings.send_tries - 1)
    floor = 1.5 * one + 30
    if settings.claim_timeout < floor:
        raise ConfigError(
            f"{where('claim_timeout')}: {settings.claim_timeout:g} s is below the safe floor of {floor:g} s",
            "a claim must outlive one message's tries begun just before it is renewed (at a third of it): "
            "1.5 x (send_tries x smtp_timeout + the backoffs) + 30 s",
        )
    _check_database(settings.database_url, where("database_url"))
    _creatable(Path(settings.feeds_dir), where("feeds_dir"))
    if not settings.smtp_url:
        _creatable(Path(settings.outbox_dir), where("outbox_dir"))
    if settings.templates_dir:
        folder = Path(settings.templates_dir)
        missing = [n for n in ("digest.txt", "digest.html") if not (folder / n).is_file()]
        if missing:
            raise ConfigError(
                f"{where('templates_dir')}: {folder} has no {' and no '.join(missing)}",
                "point it at a copy of templates/email, or leave it empty for the shipped templates",
            )
    return replace(
        settings,
        schedule_weekday=settings.schedule_weekday.lower(),
        base_url=settings.base_url.rstrip("/"),
        mail_from=mail_from,
        reply_to=reply_to,
        bounce_address=bounce_address,
    )


def sources_from(raw: Any, origin: str) -> tuple[SourceConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"sources (from {origin}): expected [[sources]] tables")
    out = []
    for i, item in enumerate(raw, 1):
        where = f"sources #{i} (from {origin})"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a table")
        location = item.get("url") or item.get("path")
        if not isinstance(location, str) or not location.strip():
            raise ConfigError(f"{where}: needs a path or a url")
        unknown = set(item) - {"url", "path", "theme", "format", "enabled", "language"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        if item.get("format") not in (None, *SOURCE_FORMATS):
            raise ConfigError(f"{where}: format {item['format']!r} is not one of {', '.join(SOURCE_FORMATS)}")
        theme = item.get("theme")
        if theme is not None and (not isinstance(theme, str) or not theme.strip()):
            raise ConfigError(f"{where}: theme must be a non-empty string")
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}: enabled must be true or false, not {enabled!r}")
        if "url" in item and urlsplit(location).scheme not in ("http", "https"):
            raise ConfigError(f"{where}: url {redact_url(location)!r} is not an http(s) URL", "use path for files")
        language = item.get("language")
        if language is not None and language_tag(language) is None:
            raise ConfigError(
                f"{where}: language {language!r} is not a language tag", "use a BCP 47 tag such as es, fr or pt-BR"
            )
        out.append(
            SourceConfig(
                location=location.strip(),
                theme=theme,
                format=item.get("format"),
                enabled=enabled,
                language=language_tag(language),
            )
        )
    return tuple(out)


def subscribers_from(raw: Any, origin: str) -> tuple[SeedSubscriber, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"subscribers (from {origin}): expected [[subscribers]] tables")
    out = []
    for i, item in enumerate(raw, 1):
        email = item.get("email") if isinstance(item, dict) else None
        themes = item.get("themes") if isinstance(item, dict) else None
        if not isinstance(email, str) or not isinstance(themes, list) or not themes:
            raise ConfigError(f"subscribers #{i} (from {origin}): needs email and a list of themes")
        if not all(isinstance(t, str) and t.strip() for t in themes):
            raise ConfigError(f"subscribers #{i} (from {origin}): themes must be a list of names")
        try:
            validate_email(email.strip(), check_deliverability=False, strict=True)
        except EmailNotValidError as e:
            raise ConfigError(
                f"subscribers #{i} (from {origin}): email {email!r} is not a valid address: {e}",
                "fix the email of that [[subscribers]] table",
            ) from e
        out.append(SeedSubscriber(email=email, themes=tuple(themes), where=f"subscribers #{i} (from {origin})"))
    return tuple(out)


def _check_mailbox(location: str, where: str) -> None:
    """A bounce mailbox given as a URL must be an IMAP one with a host and a user (its password is never shown)."""
    if "://" not in location:
        return
    parts = urlsplit(location)
    if parts.scheme.lower() not in ("imaps", "imap"):
        raise ConfigError(
            f"{where}: {redact_url(location)!r} is neither a path nor an imaps:// URL",
            "give a Maildir or mbox path, or imaps://USER:PASSWORD@HOST/FOLDER",
        )
    if not parts.hostname or not parts.username or parts.password is None:
        raise ConfigError(
            f"{where}: {redact_url(location)!r} names no host, user or password",
            "write imaps://USER:PASSWORD@HOST/FOLDER (the password percent-encoded)",
        )
