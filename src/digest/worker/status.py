"""What `digest status` reports: the leader, each job's next and last run, due subscribers, the last day's digests,
failing sources. Read from the store's figures (digest.store.figures), the same reads as the operator page and
/metrics: the three cannot disagree."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from digest import clock
from digest.store import figures
from digest.store.counters import relay_health
from digest.store.states import FAILING, WAITING, JobOutcome
from digest.worker.lease import wall_now


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status_of(connection: Connection) -> dict[str, Any]:
    """The worker's state as the database records it; `healthy` is False when something needs a look."""
    now = wall_now()
    problems: list[str] = []
    lease = figures.lease(connection)
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
    for row in figures.job_table(connection):
        last = None
        if row.last_started is not None:
            last = {
                "run_id": row.run_id,
                "reason": row.reason,
                "holder": row.holder,
                "started_at": _iso(row.last_started),
                "finished_at": _iso(row.finished),
                "outcome": row.outcome,
                "counts": json.loads(row.counts or "{}"),
                "error": row.error,
            }
            if row.outcome == JobOutcome.FAILED:
                problems.append(f"the last {row.job} run failed: {row.error}")
        jobs.append(
            {
                "id": row.job,
                "trigger": row.trigger,
                # No worker leads: nothing is scheduled, whatever the last leader wrote.
                "next_run_at": _iso(row.next_run) if alive else None,
                "last_run": last,
            }
        )

    now = clock.now()
    found = figures.figures(connection, now)
    day = figures.last_day(connection, now - timedelta(days=1))
    failing = [
        {"location": location, "status": status, "last_fetch_at": _iso(fetched), "last_error": error}
        for location, status, fetched, error in figures.sources_table(connection)
        if status in FAILING
    ]
    return {
        "healthy": not problems,
        "problems": problems,
        "state": "running" if alive else "stopped",
        "leader": leader,
        "jobs": jobs,
        "subscribers_due": found.due,
        "last_day": day,
        "digests_waiting": {str(k): found.digests.get(k, 0) for k in sorted(WAITING)},
        "failing_sources": failing,
        # Each SMTP relay as the senders last found it (never with its credentials).
        "relays": [
            {"relay": relay, "up": up, "last_error": error, "since": _iso(since)}
            for relay, up, error, since in relay_health(connection)
        ],
    }
