"""Fetching a source over HTTP: timeouts, conditional GET, retries with backoff, redirect and size limits."""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from digest import __version__
from digest.errors import SourceError


class SourceGone(SourceError):
    """The server answered 410 Gone: the source should be removed from the configuration."""


@dataclass(frozen=True)
class HttpPolicy:
    """How patient and how trusting the client is; from settings."""

    timeout: float = 20.0
    retries: int = 3
    backoff: float = 1.0
    max_bytes: int = 20_000_000
    max_redirects: int = 5
    contact: str = ""

    @property
    def user_agent(self) -> str:
        contact = f"; +{self.contact}" if self.contact else ""
        return f"digest/{__version__} (practice digest{contact})"


@dataclass(frozen=True)
class Fetched:
    """A response worth acting on: a body, or `not_modified` when the validators still hold (304)."""

    url: str
    not_modified: bool
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None


class _Retry(Exception):
    """A transient failure worth another try (5xx, 429, timeout, dropped connection)."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _read_limited(response: httpx.Response, url: str, limit: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise SourceError(
            f"{url}: the response is {int(declared):,} bytes, over the {limit:,} byte limit",
            "raise http_max_bytes if this source is really that large",
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise SourceError(
                f"{url}: the response is over the {limit:,} byte limit (stopped reading)",
                "raise http_max_bytes if this source is really that large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _attempt(client: httpx.Client, url: str, headers: dict[str, str], policy: HttpPolicy) -> Fetched:
    try:
        with client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            if status == 304:
                return Fetched(url=str(response.url), not_modified=True)
            if status == 410:
                raise SourceGone(
                    f"{url}: HTTP 410 Gone: the server says this source was removed for good",
                    "remove it from [[sources]] (or set enabled = false); it is not fetched again by runs",
                )
            if status == 429 or status >= 500:
                raise _Retry(
                    f"HTTP {status} {response.reason_phrase}", _retry_after(response.headers.get("retry-after"))
                )
            if status >= 400:
                raise SourceError(
                    f"{url}: HTTP {status} {response.reason_phrase}",
                    "check the URL; it is tried again on the next run",
                )
            body = _read_limited(response, url, policy.max_bytes)
            return Fetched(
                url=str(response.url),
                not_modified=False,
                body=body,
                content_type=response.headers.get("content-type", ""),
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
            )
    except httpx.TooManyRedirects as e:
        raise SourceError(
            f"{url}: more than {policy.max_redirects} redirects", "use the URL the redirects end at"
        ) from e
    except httpx.TimeoutException as e:
        raise _Retry(f"no answer within {policy.timeout:g} s ({type(e).__name__})") from e
    except httpx.TransportError as e:
        raise _Retry(f"connection failed: {e or type(e).__name__}") from e


def fetch(url: str, policy: HttpPolicy, etag: str | None = None, last_modified: str | None = None) -> Fetched:
    """GET a source, conditionally when validators are known; retry transient failures with backoff."""
    headers = {"Accept": "application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.8"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    tries = max(1, policy.retries)
    with httpx.Client(
        timeout=policy.timeout,
        follow_redirects=True,
        max_redirects=policy.max_redirects,
        headers={"User-Agent": policy.user_agent},
    ) as client:
        for attempt in range(1, tries + 1):
            try:
                return _attempt(client, url, headers, policy)
            except _Retry as e:
                if attempt == tries:
                    raise SourceError(
                        f"{url}: {e} (tried {tries} times)",
                        "the server may be down; nothing stored was touched and the next run tries again",
                    ) from e
                wait = policy.backoff * 2 ** (attempt - 1)
                time.sleep(min(e.wait, 60.0) if e.wait is not None else wait)
    raise AssertionError("unreachable")
