"""Fetching a source over HTTP: timeouts, conditional GET, retries with backoff, redirect and size limits.

httpx's timeout bounds each read, so a server that trickles a byte a second would hold a fetch for ever. A
fetch therefore has one deadline for everything (every attempt, every wait between them): each attempt runs
in a helper thread that the caller stops waiting for at the deadline, or at once when asked to stop (the
worker's SIGTERM). An abandoned attempt reads no further than its next chunk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import partial
from typing import TypeVar

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
    # Seconds one fetch may take in all: every attempt and the waits between them.
    deadline: float = 120.0

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
    # The Content-Language header, as sent.
    content_language: str | None = None


class FetchStopped(SourceError):
    """The fetch was given up because the process is stopping; the source is tried again by the next run."""


T = TypeVar("T")


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


def _read_limited(response: httpx.Response, url: str, limit: int, abandoned: threading.Event) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise SourceError(
            f"{url}: the response is {int(declared):,} bytes, over the {limit:,} byte limit",
            "raise http_max_bytes if this source is really that large",
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        if abandoned.is_set():
            raise _Retry("abandoned at the deadline")
        size += len(chunk)
        if size > limit:
            raise SourceError(
                f"{url}: the response is over the {limit:,} byte limit (stopped reading)",
                "raise http_max_bytes if this source is really that large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _attempt(
    client: httpx.Client, url: str, name: str, headers: dict[str, str], policy: HttpPolicy, abandoned: threading.Event
) -> Fetched:
    try:
        with client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            if status == 304:
                return Fetched(url=str(response.url), not_modified=True)
            if status == 410:
                raise SourceGone(
                    f"{name}: HTTP 410 Gone: the server says this source was removed for good",
                    "remove it from [[sources]] (or set enabled = false); it is not fetched again by runs",
                )
            if status == 429 or status >= 500:
                raise _Retry(
                    f"HTTP {status} {response.reason_phrase}", _retry_after(response.headers.get("retry-after"))
                )
            if status >= 400:
                raise SourceError(
                    f"{name}: HTTP {status} {response.reason_phrase}",
                    "check the URL",
                )
            body = _read_limited(response, name, policy.max_bytes, abandoned)
            return Fetched(
                url=str(response.url),
                not_modified=False,
                body=body,
                content_type=response.headers.get("content-type", ""),
                content_language=response.headers.get("content-language"),
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
            )
    except httpx.TooManyRedirects as e:
        raise SourceError(
            f"{name}: more than {policy.max_redirects} redirects", "use the URL the redirects end at"
        ) from e
    except httpx.TimeoutException as e:
        raise _Retry(f"no answer within {policy.timeout:g} s ({type(e).__name__})") from e
    except httpx.TransportError as e:
        raise _Retry(f"connection failed: {e or type(e).__name__}") from e


def _within(call: Callable[[], T], seconds: float, stop: threading.Event, abandoned: threading.Event) -> T:
    """``call()`` in a helper thread; _Retry past ``seconds``, FetchStopped as soon as ``stop`` is set."""
    outcome: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as e:  # handed to the waiting thread, which raises it
            outcome["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, name="digest-fetch", daemon=True).start()
    ends = time.monotonic() + seconds
    while not done.wait(min(0.2, max(0.0, ends - time.monotonic()))):
        if stop.is_set() or time.monotonic() >= ends:
            abandoned.set()
            if stop.is_set():
                raise FetchStopped("the fetch was stopped (the process is shutting down)")
            raise _Retry(f"no complete answer within the {seconds:g} s left of the deadline")
    if "error" in outcome:
        error = outcome["error"]
        assert isinstance(error, BaseException)
        raise error
    return outcome["value"]  # type: ignore[return-value]


def fetch(
    url: str,
    policy: HttpPolicy,
    etag: str | None = None,
    last_modified: str | None = None,
    name: str | None = None,
    stop: threading.Event | None = None,
) -> Fetched:
    """GET a source, conditionally when validators are known; retry transient failures with backoff.

    ``name`` is how messages show the URL (without credentials). Everything ends by ``policy.deadline``, or as
    soon as ``stop`` is set.
    """
    name = name or url
    stop = stop or threading.Event()
    headers = {"Accept": "application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.8"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    tries = max(1, policy.retries)
    ends = time.monotonic() + policy.deadline
    with httpx.Client(
        timeout=policy.timeout,
        follow_redirects=True,
        max_redirects=policy.max_redirects,
        headers={"User-Agent": policy.user_agent},
    ) as client:
        for attempt in range(1, tries + 1):
            abandoned = threading.Event()
            try:
                left = ends - time.monotonic()
                if left <= 0:
                    raise _Retry(f"the {policy.deadline:g} s deadline for this source passed")
                attempt_once = partial(_attempt, client, url, name, headers, policy, abandoned)
                return _within(attempt_once, left, stop, abandoned)
            except _Retry as e:
                wait = policy.backoff * 2 ** (attempt - 1)
                wait = min(e.wait, 60.0) if e.wait is not None else wait
                out_of_time = time.monotonic() + wait >= ends
                if attempt == tries or out_of_time:
                    tried = f"tried {attempt} time{'s' if attempt > 1 else ''}"
                    if out_of_time and attempt < tries:
                        tried += f", stopped by the {policy.deadline:g} s deadline (http_deadline)"
                    raise SourceError(
                        f"{name}: {e} ({tried})",
                        "the server may be down or too slow; nothing stored was touched",
                    ) from e
                if stop.wait(wait):
                    raise FetchStopped(f"{name}: the fetch was stopped (the process is shutting down)") from e
    raise AssertionError("unreachable")
