"""What the factory and every blueprint share: the site (settings and the store's sessions), the route a request
matched, and the page that says one thing (a notice, an answer, an error)."""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar

from flask import abort, current_app, g, render_template, request
from flask_babel import refresh
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from digest import logs
from digest.config import Settings
from digest.feeds.cache import FeedCache
from digest.store.queries import ThemeOverview
from digest.text import i18n

T = TypeVar("T")

# What every private page says to caches and robots.
PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}


class Kept(Generic[T]):
    """One value kept with the stamp it was read under; a new stamp replaces it. Safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamp: object = None
        self._value: T | None = None

    def get(self, stamp: object) -> T | None:
        with self._lock:
            return self._value if stamp == self._stamp else None

    def put(self, stamp: object, value: T) -> T:
        with self._lock:
            self._stamp, self._value = stamp, value
        return value


@dataclass(frozen=True)
class Site:
    """What every view needs: the settings and the store's sessions (and the feeds, their rendered documents)."""

    settings: Settings
    sessions: sessionmaker[Session]
    # For the one-query answers (a feed's validators): a connection, without an ORM session around it.
    engine: Engine
    # This process's metrics and the store's figures, for /metrics.
    metrics: CollectorRegistry
    feed_cache: FeedCache = field(default_factory=FeedCache)
    # The home page's overview of the themes, until a theme changes.
    overview: Kept[list[ThemeOverview]] = field(default_factory=Kept)
    # The home page in each language as rendered for the themes as they are, with a slot for the form's CSRF token.
    home: dict[str, Kept[str]] = field(default_factory=lambda: {code: Kept() for code in i18n.LANGUAGES})


def site() -> Site:
    found = current_app.extensions["digest"]
    assert isinstance(found, Site)
    return found


def route() -> str:
    """The route a request matched (`/manage/<token>`), never its path: paths carry tokens."""
    rule = request.url_rule
    return rule.rule if rule is not None else logs.redact(request.path)


def message_page(status: int, title: str, message: str, **extra: Any) -> tuple[str, int, dict[str, str]]:
    # ``title`` and ``message`` come translated (digest.text.i18n) by the caller.
    """A page that says one thing, with its status: an error, or what was done. Never cached, never indexed."""
    return render_template("message.html", title=title, message=message, **extra), status, dict(PRIVATE)


def visitor_language() -> str:
    """The language a page is written in for whoever asks: the one they picked (``?lang=`` or the switcher's
    cookie), else the best of their browser's Accept-Language, else the operator's default_language. A header
    that cannot be read counts as no header: never an error page."""
    for picked in (request.args.get("lang"), request.cookies.get(LANGUAGE_COOKIE)):
        if picked:
            try:
                return i18n.supported(picked)
            except i18n.UnknownLanguage:
                pass
    return _accepted(request.headers.get("Accept-Language", "")[:500], site().settings.default_language)


@lru_cache(maxsize=1024)
def _accepted(header: str, default: str) -> str:
    """The language an Accept-Language header asks for: most wanted first (werkzeug orders by quality and passes
    over what it cannot read; "fr-CA" is French). Read once per distinct header: browsers send a handful."""
    asked = [value for value, quality in parse_accept_header(header, LanguageAccept) if quality > 0 and value != "*"]
    return i18n.choose(asked, default)


# Where the switcher's choice is kept (a year): a visitor's pick outlives the page it was made on.
LANGUAGE_COOKIE = "digest_lang"


def page_language() -> str:
    """The language of this request's page: a subscriber's own on pages reached by their link (``speak``), unless
    they picked another with the switcher; else the visitor's."""
    language = g.get("language")
    if language and not request.args.get("lang"):
        return str(language)
    return visitor_language()


def speak(language: str | None) -> None:
    """Write the rest of this request's page in a subscriber's language (None: as for a visitor)."""
    g.language = language
    refresh()
    i18n.set_current(page_language())


def page_number(value: str | None) -> int:
    """A ?page= as a page number: ASCII digits, no leading zero (one URL a page), else 404."""
    if value is None:
        return 1
    # "²" and "①" are digits to str.isdigit, not to int; 10**18 is a number no page has (its OFFSET would overflow).
    if not (value.isascii() and value.isdigit()) or value.startswith("0") or len(value) > 9:
        abort(404)
    return int(value)


def client() -> str:
    """The client as logs and the audit log name it: a short keyed hash of its address (enough to group, nothing
    to trace)."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, (request.remote_addr or "").encode(), hashlib.sha256).hexdigest()[:12]
