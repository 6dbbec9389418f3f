"""The worker's jobs: each takes what a job may use of the worker (JobContext) and returns (counts, error); the
scheduler records and logs the run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings
from digest.feeds import websub
from digest.feeds.files import build_feeds
from digest.ingest import ingest_sources, policy_from
from digest.mail.replies.bounces import read_bounces
from digest.mail.send.delivery import SendReport
from digest.mail.send.runs import deliver_due, plan_and_send
from digest.mail.send.transport import transport_for
from digest.worker.names import BOUNCES, FEEDS, FIRST_PLAN, PLAN_SEND, POLL, RETRY, START

__all__ = ["BOUNCES", "FEEDS", "FIRST_PLAN", "JOBS", "PLAN_SEND", "POLL", "RETRY", "START", "JobContext"]


class JobContext(Protocol):
    """What a job may use of the worker that runs it."""

    settings: Settings
    factory: sessionmaker[Session]
    # Set when the worker is stopping: a job finishes what it holds and returns.
    stop: threading.Event


def _send_counts(report: SendReport) -> tuple[dict[str, Any], str | None]:
    counts = {k: v for k, v in report.as_dict().items() if k not in ("errors", "hint", "error", "ok")}
    return counts, report.error


def plan_send_job(worker: JobContext) -> tuple[dict[str, Any], str | None]:
    report = plan_and_send(
        worker.factory, worker.settings, transport_for(worker.settings, worker.factory), worker.stop.is_set
    )
    return _send_counts(report)


def retry_job(worker: JobContext) -> tuple[dict[str, Any], str | None]:
    report = SendReport()
    deliver_due(
        worker.factory, worker.settings, transport_for(worker.settings, worker.factory), report, worker.stop.is_set
    )
    return _send_counts(report)


def poll_job(worker: JobContext) -> tuple[dict[str, Any], str | None]:
    settings = worker.settings
    # Each source logs its own outcome (digest.ingest); a SIGTERM stops the poll within seconds, mid-fetch too.
    sources = [s for s in settings.sources if s.enabled]
    before = websub.revisions(worker.factory)
    reports = ingest_sources(
        worker.factory, sources, clock.now(), policy_from(settings), skip_gone=True, stop=worker.stop
    )
    failed = [r for r in reports if not r.ok]
    changed = sum(r.new + r.updated + r.joined for r in reports)
    # The feed files are written, then the hubs told; a hub that fails is logged (websub.failed) and hears of the
    # next change; it never fails the poll.
    told = websub.announce(worker.factory, settings, before)
    counts = {"sources": len(reports), "failed": len(failed), "new": sum(r.new for r in reports), "changed": changed}
    if told.feeds:
        counts |= {"feeds_written": sum(r.changed for r in told.written)}
    if told.hubs:
        counts |= {"feeds_published": len(told.feeds), "hubs_failed": len(told.failed)}
    return counts, (f"{len(failed)} source(s) failed: " + "; ".join(r.source for r in failed)) if failed else None


def bounces_job(worker: JobContext) -> tuple[dict[str, Any], str | None]:
    report = read_bounces(worker.factory, worker.settings, worker.settings.bounces_from, clock.now())
    counts = {k: v for k, v in report.as_dict().items() if k not in ("source", "skipped")}
    return counts | {"skipped": len(report.skipped)}, None


def feeds_job(worker: JobContext) -> tuple[dict[str, Any], str | None]:
    with worker.factory() as session:
        results = build_feeds(session, worker.settings)
    failed = [r.error for r in results if r.error]
    return {"feeds": len(results), "changed": sum(r.changed for r in results), "failed": len(failed)}, (
        "; ".join(failed) if failed else None
    )


JOBS: dict[str, Callable[[JobContext], tuple[dict[str, Any], str | None]]] = {
    PLAN_SEND: plan_send_job,
    RETRY: retry_job,
    POLL: poll_job,
    FEEDS: feeds_job,
    BOUNCES: bounces_job,
}
