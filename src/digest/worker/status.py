"""What `digest status` reports: the leader, each job's next and last run, due subscribers, the last day's digests,
failing sources."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest import clock
from digest.config import Settings
from digest.mail.plan import due_now
from digest.store.models import Digest, JobRun, Lease, ScheduledJob, SourceState, Subscriber, waiting
from digest.store.states import FAILING, WAITING, JobOutcome
from digest.worker.lease import LEASE, wall_now
from digest.worker.names import FIRST_PLAN


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status_of(session: Session, settings: Settings) -> dict[str, Any]:
    """The worker's state as the database records it; `healthy` is False when something needs a look."""
    now = wall_now()
    problems: list[str] = []
    lease = session.get(Lease, LEASE)
    leader = None
    alive = False
    if lease is not None:
        host, pid = (lease.holder.split(":") + ["", ""])[:2]
        alive = lease.expires_at >= now
        leader = {
            "holder": lease.holder,
            "host": host,
            "pid": int(pid) if pid.isdigit() else None,
            "since": _iso(lease.since),
            "renewed_at": _iso(lease.renewed_at),
            "expires_at": _iso(lease.expires_at),
            "alive": alive,
        }
        if not alive:
            problems.append(f"the leader's lease expired at {lease.expires_at.isoformat()} (worker down?)")
    else:
        problems.append("no worker holds the scheduler lease (is `digest worker` running?)")

    jobs = []
    scheduled = {j.id: j for j in session.scalars(select(ScheduledJob).order_by(ScheduledJob.id))}
    latest = {
        r.job_id: r
        for r in session.scalars(
            select(JobRun).where(JobRun.id.in_(select(func.max(JobRun.id)).group_by(JobRun.job_id)))
        )
    }
    # The start-up planning run is plan-send's (its runs are recorded under plan-send, reason "start").
    for job_id in sorted((set(scheduled) - {FIRST_PLAN}) | set(latest)):
        job, run = scheduled.get(job_id), latest.get(job_id)
        last = None
        if run is not None:
            last = {
                "run_id": run.run_id,
                "reason": run.reason,
                "holder": run.holder,
                "started_at": _iso(run.started_at),
                "finished_at": _iso(run.finished_at),
                "outcome": run.outcome,
                "counts": json.loads(run.counts or "{}"),
                "error": run.error,
            }
            if run.outcome == JobOutcome.FAILED:
                problems.append(f"the last {job_id} run failed: {run.error}")
        jobs.append(
            {
                "id": job_id,
                "trigger": job.trigger if job else None,
                # No worker leads: nothing is scheduled, whatever the last leader wrote.
                "next_run_at": _iso(job.next_run_at) if job and alive else None,
                "last_run": last,
            }
        )

    now = clock.now()
    day_ago = now - timedelta(days=1)
    due = session.scalar(select(func.count()).select_from(Subscriber).where(due_now(now))) or 0
    planned_day = session.scalar(select(func.count()).select_from(Digest).where(Digest.planned_at >= day_ago)) or 0
    sent_day = session.scalar(select(func.count()).select_from(Digest).where(Digest.sent_at >= day_ago)) or 0
    in_wait = dict(session.execute(select(Digest.status, func.count()).where(waiting()).group_by(Digest.status)).all())
    failing = [
        {"location": s.location, "status": s.status, "last_fetch_at": _iso(s.last_fetch_at), "last_error": s.last_error}
        for s in session.scalars(
            select(SourceState).where(SourceState.status.in_(FAILING)).order_by(SourceState.location)
        )
    ]
    return {
        "healthy": not problems,
        "problems": problems,
        "state": "running" if alive else "stopped",
        "leader": leader,
        "jobs": jobs,
        "subscribers_due": due,
        "last_day": {"planned": planned_day, "sent": sent_day},
        "digests_waiting": {str(k): in_wait.get(k, 0) for k in sorted(WAITING)},
        "failing_sources": failing,
    }
