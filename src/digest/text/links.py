"""Links: which URLs may be stored and shown (http and https only), and URLs printed without their secrets."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

SAFE_SCHEMES = ("http", "https")
# Longest link stored: longer ones are almost always tracking junk or an attack, and columns are bounded.
MAX_URL = 2000
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def safe_link(url: str | None) -> str | None:
    """The URL if it is an absolute http(s) link fit to put in a mail or a feed, else None.

    javascript:, data:, vbscript:, file: and relative links are refused; so are links with spaces or control
    characters inside (a browser would read them differently from a filter).
    """
    if not url:
        return None
    url = url.strip()
    if len(url) > MAX_URL or _SPACE_OR_CONTROL.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed IPv6 host, say
        return None
    if parts.scheme.lower() not in SAFE_SCHEMES or not parts.hostname:
        return None
    return url


def redact_url(url: str) -> str:
    """The URL with any password (and user) replaced by ***: fit for messages, logs and listings."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return urlunsplit((parts.scheme, f"***@{host}{port}", parts.path, parts.query, parts.fragment))


def secret_of(url: str) -> str | None:
    """The password (or user) a URL carries, so that messages built from it can be scrubbed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.password or parts.username or None
