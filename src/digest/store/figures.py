"""The figures an operator watches, read from the store whenever they are asked for (a Prometheus scrape, the
operator page): the same answer from every host and process, and nothing lost when a short-lived `digest send`
exits. Each is one query on an index or a small table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, union_all
from sqlalchemy.engine import Connection

from digest.store.counters import relay_health
from digest.store.models import (
    UNSENT_SQL,
    Bounce,
    Digest,
    Erasure,
    JobRun,
    Lease,
    ScheduledJob,
    SourceState,
    Subscriber,
    Tally,
    WebhookDelivery,
    WebhookEndpoint,
    due,
    waiting,
)
from digest.store.states import FIRST_PLAN, BounceKind, DigestStatus, JobOutcome, SubscriberStatus, WebhookState


@dataclass(frozen=True)
class JobFigures:
    job: str
    last_success: datetime | None
    # Runs that failed since the last success (0: the last run went well).
    failures_in_a_row: int


@dataclass(frozen=True)
class SourceFigures:
    source: str
    status: str
    failures: int
    last_ok: datetime | None


@dataclass
class Figures:
    digests: dict[str, int] = field(default_factory=dict)
    # Digests ever sent: those sent and kept, and those of subscribers since erased (so the count never falls).
    sent_ever: int = 0
    waiting: int = 0
    oldest_waiting: datetime | None = None
    subscribers: dict[str, int] = field(default_factory=dict)
    due: int = 0
    leader: str | None = None
    lease_renewed: datetime | None = None
    lease_expires: datetime | None = None
    jobs: list[JobFigures] = field(default_factory=list)
    sources: list[SourceFigures] = field(default_factory=list)
    # Webhook endpoints disabled (three days of failures), and deliveries waiting for a (next) try.
    webhooks_disabled: int = 0
    webhooks_pending: int = 0
    # SMTP relays as the senders last found them: (relay, up, last error, since).
    relays: list[tuple[str, bool, str | None, datetime]] = field(default_factory=list)


def figures(connection: Connection, now: datetime) -> Figures:
    found = Figures()
    # Digests by state: the waiting ones off ix_digests_waiting, the failed and cancelled ones off
    # ix_digests_unsent, the sent ones from the tally the triggers keep (every digest ever sent) less those of
    # erased subscribers: nothing reads every digest.
    oldest: list[datetime] = []
    for status, count, first in connection.execute(
        select(Digest.status, func.count(), func.min(Digest.planned_at)).where(waiting()).group_by(Digest.status)
    ):
        found.digests[str(status)] = count
        found.waiting += count
        oldest.append(first)
    found.oldest_waiting = min(oldest, default=None)
    for status, count in connection.execute(
        select(Digest.status, func.count()).where(text(f"digests.{UNSENT_SQL}")).group_by(Digest.status)
    ):
        found.digests[str(status)] = count
    tally = select(Tally.n).where(Tally.name == "sent").scalar_subquery()
    erasures = select(func.coalesce(func.sum(Erasure.digests_sent), 0)).scalar_subquery()
    sent_ever, erased = connection.execute(select(tally, erasures)).one()
    found.sent_ever = int(sent_ever or 0)
    found.digests[DigestStatus.SENT] = found.sent_ever - erased
    for state in DigestStatus:
        found.digests.setdefault(state.value, 0)
    # Subscribers by status: each but the confirmed off ix_subscribers_status, the confirmed (most of them) as the
    # rest of a bare count.
    others = [s for s in SubscriberStatus if s != SubscriberStatus.CONFIRMED]
    for who, count in connection.execute(
        select(Subscriber.status, func.count()).where(Subscriber.status.in_(others)).group_by(Subscriber.status)
    ):
        found.subscribers[str(who)] = count
    everyone = connection.scalar(select(func.count()).select_from(Subscriber)) or 0
    found.subscribers[SubscriberStatus.CONFIRMED] = everyone - sum(found.subscribers.values())
    for kind in SubscriberStatus:
        found.subscribers.setdefault(kind.value, 0)
    found.due = connection.scalar(select(func.count()).select_from(Subscriber).where(due(now))) or 0
    lease = connection.execute(select(Lease.holder, Lease.renewed_at, Lease.expires_at)).first()
    if lease is not None and lease[2] > now:
        found.leader, found.lease_renewed, found.lease_expires = lease[0], lease[1], lease[2]
    found.jobs = job_figures(connection)
    found.sources = [
        SourceFigures(location, str(status), failures, last_ok)
        for location, status, failures, last_ok in connection.execute(
            select(SourceState.location, SourceState.status, SourceState.failures, SourceState.last_ok_at).order_by(
                SourceState.location
            )
        )
    ]
    found.relays = relay_health(connection)
    found.webhooks_disabled = (
        connection.scalar(
            select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.disabled_at.is_not(None))
        )
        or 0
    )
    found.webhooks_pending = (
        connection.scalar(
            select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.state == WebhookState.PENDING)
        )
        or 0
    )
    return found


# Runs of each job read to find its last success (a job failing longer than this shows this many failures).
RECENT_RUNS = 50


def job_figures(connection: Connection) -> list[JobFigures]:
    """Each scheduled job's last success and its failures since, from its newest runs (off ix_job_runs_job_id_id):
    one query for them all."""
    jobs = sorted(set(connection.scalars(select(ScheduledJob.id))) - {FIRST_PLAN})
    if not jobs:
        return []
    parts = [
        select(JobRun.job_id, JobRun.id, JobRun.outcome, JobRun.finished_at)
        .where(JobRun.job_id == job)
        .order_by(JobRun.id.desc())
        .limit(RECENT_RUNS)
        .subquery(f"recent_{n}")
        for n, job in enumerate(jobs)
    ]
    runs = union_all(*(select(part) for part in parts)).subquery("recent")
    newest: dict[str, list[tuple[str, datetime | None]]] = {job: [] for job in jobs}
    for job, _, outcome, finished in connection.execute(select(runs).order_by(runs.c.job_id, runs.c.id.desc())):
        newest[job].append((str(outcome), finished))
    out = []
    for job in jobs:
        failures, last_success = 0, None
        for outcome, finished in newest[job]:
            if outcome == JobOutcome.OK:
                last_success = finished
                break
            failures += outcome == JobOutcome.FAILED
        out.append(JobFigures(job, last_success, failures))
    return out


# What the operator page draws: counts per hour or per day, grouped in the database (never a row per digest read).


def _bucket(connection: Connection, column: Any, hourly: bool) -> Any:
    """The column truncated to its UTC hour or day, as text ("2026-12-01 08" or "2026-12-01"), in either database."""
    if connection.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24" if hourly else "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d %H" if hourly else "%Y-%m-%d", column)


def per_bucket(connection: Connection, column: Any, since: datetime, hourly: bool, *where: Any) -> dict[str, int]:
    """How many rows have ``column`` in each hour (or day) from ``since``, by its UTC hour (or day)."""
    bucket = _bucket(connection, column, hourly).label("bucket")
    rows = connection.execute(select(bucket, func.count()).where(column >= since, *where).group_by(bucket))
    return {str(key): int(count) for key, count in rows}


def sent_per_hour(connection: Connection, since: datetime) -> dict[str, int]:
    return per_bucket(connection, Digest.sent_at, since, True)


def bounces_per_day(connection: Connection, since: datetime) -> dict[str, dict[str, int]]:
    """Bounce reports per day, by kind (hard, soft)."""
    return {
        kind.value: per_bucket(connection, Bounce.received_at, since, False, Bounce.kind == kind) for kind in BounceKind
    }


def failed_per_day(connection: Connection, since: datetime) -> dict[str, int]:
    """Digests that failed for good, by the day they were planned."""
    return per_bucket(
        connection, Digest.planned_at, since, False, text(f"digests.{UNSENT_SQL}"), Digest.status == DigestStatus.FAILED
    )


def joins_and_leaves(connection: Connection, since: datetime) -> dict[str, dict[str, int]]:
    """Per day: addresses confirmed, subscribers who left, and erasures."""
    return {
        "joined": per_bucket(connection, Subscriber.confirmed_at, since, False),
        "left": per_bucket(connection, Subscriber.unsubscribed_at, since, False),
        "erased": {
            key: int(count)
            for key, count in connection.execute(
                select(_bucket(connection, Erasure.erased_on, False).label("b"), func.sum(1))
                .where(Erasure.erased_on >= since)
                .group_by(text("b"))
            )
        },
    }


@dataclass(frozen=True)
class JobRow:
    """A job's last run and its next one, as the operator page and `digest status` show them."""

    job: str
    last_started: datetime | None
    outcome: str | None
    error: str | None
    next_run: datetime | None
    trigger: str | None = None
    run_id: str | None = None
    reason: str | None = None
    holder: str | None = None
    finished: datetime | None = None
    counts: str | None = None


def job_table(connection: Connection) -> list[JobRow]:
    """Each job's last run (the start-up planning run is plan-send's) and its next run."""
    latest = {
        run.job_id: run
        for run in connection.execute(
            select(
                JobRun.job_id,
                JobRun.started_at,
                JobRun.outcome,
                JobRun.error,
                JobRun.run_id,
                JobRun.reason,
                JobRun.holder,
                JobRun.finished_at,
                JobRun.counts,
            ).where(JobRun.id.in_(select(func.max(JobRun.id)).group_by(JobRun.job_id)))
        )
    }
    upcoming = {
        job_id: (next_run, trigger)
        for job_id, next_run, trigger in connection.execute(
            select(ScheduledJob.id, ScheduledJob.next_run_at, ScheduledJob.trigger)
        )
    }
    rows = []
    for job in sorted(set(latest) | (set(upcoming) - {FIRST_PLAN})):
        next_run, trigger = upcoming.get(job, (None, None))
        run = latest.get(job)
        if run is None:
            rows.append(JobRow(job, None, None, None, next_run, trigger))
            continue
        outcome = str(run.outcome) if run.outcome else None
        rows.append(
            JobRow(
                job,
                run.started_at,
                outcome,
                run.error,
                next_run,
                trigger,
                run.run_id,
                run.reason,
                run.holder,
                run.finished_at,
                run.counts,
            )  # fmt: skip
        )
    return rows


@dataclass(frozen=True)
class LeaseRow:
    holder: str
    since: datetime
    renewed_at: datetime
    expires_at: datetime


def lease(connection: Connection) -> LeaseRow | None:
    """The scheduler lease as stored (alive or not: the caller compares its expiry with the time)."""
    row = connection.execute(select(Lease.holder, Lease.since, Lease.renewed_at, Lease.expires_at)).first()
    return LeaseRow(*row) if row is not None else None


def last_day(connection: Connection, since: datetime) -> dict[str, int]:
    """Digests planned and sent since ``since`` (the last 24 hours, for `digest status`)."""
    planned = connection.scalar(select(func.count()).select_from(Digest).where(Digest.planned_at >= since))
    sent = connection.scalar(select(func.count()).select_from(Digest).where(Digest.sent_at >= since))
    return {"planned": planned or 0, "sent": sent or 0}


def sources_table(connection: Connection) -> list[tuple[str, str, datetime, str | None]]:
    """Each source: where, status, last read, last error."""
    return [
        (location, str(status), fetched, error)
        for location, status, fetched, error in connection.execute(
            select(
                SourceState.location, SourceState.status, SourceState.last_fetch_at, SourceState.last_error
            ).order_by(SourceState.location)
        )
    ]


def by_reason(connection: Connection, since: datetime) -> list[tuple[str, str, int]]:
    """Bounces received since ``since`` by kind and reason (most first): (kind, reason, count)."""
    rows = connection.execute(
        select(Bounce.kind, func.coalesce(Bounce.reason, "undetermined"), func.count())
        .where(Bounce.received_at >= since)
        .group_by(Bounce.kind, func.coalesce(Bounce.reason, "undetermined"))
        .order_by(func.count().desc())
    ).all()
    return [(str(k.value if isinstance(k, BounceKind) else k), str(r), int(n)) for k, r, n in rows]


def waiting_to_reconfirm(connection: Connection) -> list[tuple[str, datetime]]:
    """Those asked "do you still want these?" who have not answered: (address, asked at), oldest first."""
    rows = connection.execute(
        select(Subscriber.email, Subscriber.reconfirm_asked_at)
        .where(Subscriber.status == SubscriberStatus.CONFIRMED, Subscriber.reconfirm_asked_at.is_not(None))
        .order_by(Subscriber.reconfirm_asked_at)
    ).all()
    return [(str(e), t) for e, t in rows if t is not None]
