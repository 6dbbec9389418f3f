"""WebSub (W3C Recommendation): tell each configured hub which feeds changed, so readers subscribed there hear of a
new practice at once instead of at their next poll.

Whatever changes the store's practices (`digest ingest`, `digest run --once`, the worker's poll) takes the themes'
revisions before (``revisions``) and calls ``announce`` after, which writes the feed files first, so a hub that
fetches from feeds_dir finds the change: each feed whose theme's revision moved (and the
feed of all practices, when any did) is published, once, to each hub. The Recommendation leaves the publish ping
to each hub; the widespread ones read either ``hub.url`` (Superfeedr, Google's) or ``hub.topic`` (flask-websub,
WebSub.rocks), so both are sent. The hubs are told in parallel, each with a few tries, all within
``websub_deadline`` seconds in total: an answer's body is never read, and each hub is told from a daemon thread
that the caller stops waiting for at the deadline, so a hub that trickles its answer or hangs can keep neither a
command nor a stopping worker alive. A hub that fails or hangs is logged and is told again at the next change,
and never stops the command, the job or another hub. Personal feeds are never published (their URLs are secrets).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import httpx
from sqlalchemy.orm import Session, sessionmaker

from digest import __version__, logs
from digest.config import Settings
from digest.feeds.documents import ALL, feed_filename, feed_url
from digest.feeds.files import FeedResult, build_feeds
from digest.store import feeds as store

events = logs.EventLog("digest.websub")
TRIES = 3


@dataclass
class HubReport:
    hub: str
    ok: bool = False
    error: str = ""
    tries: int = 0


@dataclass
class Announcement:
    """What an ingest told the hubs: the feeds that changed and each hub's outcome."""

    feeds: list[str] = field(default_factory=list)
    hubs: list[HubReport] = field(default_factory=list)
    # The feed files written (in feeds_dir) before any hub was told.
    written: list[FeedResult] = field(default_factory=list)

    @property
    def failed(self) -> list[HubReport]:
        return [h for h in self.hubs if not h.ok]


def revisions(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return store.revisions(session)


def changed_feeds(settings: Settings, before: dict[str, int], after: dict[str, int]) -> list[str]:
    """The URLs of the feeds whose documents differ between the two sets of revisions."""
    themes = sorted(slug for slug, revision in after.items() if before.get(slug) != revision)
    if not themes:
        return []
    return [feed_url(settings, feed_filename(slug)) for slug in themes] + [feed_url(settings, f"{ALL}.atom")]


def announce(sessions: sessionmaker[Session], settings: Settings, before: dict[str, int]) -> Announcement:
    """After whatever changed the store's practices: when a theme's feed changed since ``before``, write feeds_dir
    first (the files are the served documents, byte for byte: a hub that fetches a feed it was told of, from a
    static server, must find the change), then publish every changed feed to every hub."""
    urls = changed_feeds(settings, before, revisions(sessions))
    if not urls:
        return Announcement()
    with sessions() as session:
        written = build_feeds(session, settings)
    if not settings.hubs:
        return Announcement(urls, written=written)
    told = publish(settings, urls)
    told.written = written
    return told


def publish(settings: Settings, urls: list[str]) -> Announcement:
    """Tell every hub of these feeds, in parallel, within the deadline; each hub's outcome is logged."""
    deadline = time.monotonic() + settings.websub_deadline
    reports = [HubReport(hub) for hub in settings.hubs]
    # Daemon threads, not a pool: an executor's threads are joined at interpreter exit, so one stuck in a hub's
    # answer would keep a finished command (or a worker told to stop) alive.
    threads = [threading.Thread(target=_tell, args=(r, urls, deadline), name="websub", daemon=True) for r in reports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    told = [
        _outcome(report, thread.is_alive(), settings, len(urls))
        for report, thread in zip(reports, threads, strict=True)
    ]
    return Announcement(urls, told)


def _outcome(report: HubReport, abandoned: bool, settings: Settings, feeds: int) -> HubReport:
    """What the caller reports of one hub (a copy: an abandoned thread may still write to its own), logged."""
    if abandoned:
        report = HubReport(report.hub, error=f"no answer within websub_deadline ({settings.websub_deadline:g} s)")
    elif not report.ok:
        report = HubReport(report.hub, error=report.error or "not told", tries=report.tries)
    if report.ok:
        events("websub.published", hub=report.hub, feeds=feeds, tries=report.tries)
    else:
        events("websub.failed", logging.WARNING, hub=report.hub, feeds=feeds, tries=report.tries, error=report.error)
    return report


def _tell(report: HubReport, urls: list[str], deadline: float) -> None:
    """POST the publish notice (one per feed, on one connection) to one hub, retrying a 5xx, a 429 or a network
    error while the deadline allows."""
    headers = {"User-Agent": f"digest/{__version__} (WebSub publisher)"}
    pending = list(urls)
    with httpx.Client(headers=headers, follow_redirects=False) as client:
        while pending and report.tries < TRIES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            report.tries += 1
            try:
                while pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise httpx.TimeoutException("websub_deadline reached")
                    form = {"hub.mode": "publish", "hub.topic": pending[0], "hub.url": pending[0]}
                    # Streamed and closed unread: only the status matters, and a body can trickle for ever.
                    with client.stream("POST", report.hub, data=form, timeout=left) as answer:
                        status = answer.status_code
                    if status >= 300:
                        report.error = f"HTTP {status} for {pending[0]}"
                        if status < 500 and status != 429:
                            return  # the hub refuses the notice itself: trying again changes nothing
                        break
                    pending.pop(0)
            except httpx.TimeoutException:
                report.error = "no answer within websub_deadline"
            except httpx.HTTPError as e:
                report.error = f"{type(e).__name__}: {e}"
            if pending:
                time.sleep(min(0.5 * 2 ** (report.tries - 1), max(0.0, deadline - time.monotonic())))
    report.ok = not pending
    if report.ok:
        report.error = ""
