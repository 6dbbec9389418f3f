"""What the factory and every blueprint share: the site (settings and the store's sessions), the route a request
matched, and the page that says one thing (a notice, an answer, an error)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app, render_template, request
from sqlalchemy.orm import Session, sessionmaker

from digest import logs
from digest.config import Settings
from digest.feeds.cache import FeedCache

# What every private page says to caches and robots.
PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}


@dataclass(frozen=True)
class Site:
    """What every view needs: the settings and the store's sessions (and the feeds, their rendered documents)."""

    settings: Settings
    sessions: sessionmaker[Session]
    feed_cache: FeedCache = field(default_factory=FeedCache)


def site() -> Site:
    found = current_app.extensions["digest"]
    assert isinstance(found, Site)
    return found


def route() -> str:
    """The route a request matched (`/manage/<token>`), never its path: paths carry tokens."""
    rule = request.url_rule
    return rule.rule if rule is not None else logs.redact(request.path)


def message_page(status: int, title: str, message: str, **extra: Any) -> tuple[str, int, dict[str, str]]:
    """A page that says one thing, with its status: an error, or what was done. Never cached, never indexed."""
    return render_template("message.html", title=title, message=message, **extra), status, dict(PRIVATE)
