"""`digest worker`: one leader (a lease row in the database) runs the scheduled jobs; the others stand by.

The leader runs APScheduler's BlockingScheduler with explicit job ids, an explicit timezone, coalescing and a
misfire grace of hours. Jobs stay in memory; what must survive a restart lives in the database: the lease,
each job's runs, and the digests themselves (every step resumable). Digests are planned for the subscribers
who are due (each on their own schedule), checked every `due_minutes`: after downtime the first check plans
one digest for everyone whose slot passed, never a backlog.

Planning never runs while a poll is adding practices (one lock in the leader), and a leader's first planning
run waits for its first poll: otherwise it would plan just before the practices of that poll arrived, and they
would wait a whole period.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ADDED,
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_JOB_REMOVED,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from digest import clock, logs
from digest.config import Settings
from digest.mail.send.delivery import DeliveryPolicy, SendReport
from digest.mail.send.holders import holder_id
from digest.mail.send.runs import deliver_due
from digest.mail.send.transport import transport_for
from digest.store.db import transaction
from digest.store.digests import any_claimable
from digest.store.models import JobRun, ScheduledJob
from digest.store.states import JobOutcome
from digest.worker.jobs import BOUNCES, FIRST_PLAN, JOBS, PLAN_SEND, POLL, RETRY, START
from digest.worker.lease import acquire_lease, current_holder, release_lease, renew_lease, wall_now
from digest.worker.outage import STORE_ERRORS, StoreOutage
from digest.worker.service import Notifier, serve_metrics

# The scheduler's own loops: neither is a job whose runs and next run are recorded (status, the operator page).
_UNRECORDED = ("renew-lease", "deliver-webhooks")


class Worker:
    """One `digest worker` process."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session], engine: Engine) -> None:
        self.settings = settings
        self.factory = factory
        self.engine = engine
        self.holder = f"{holder_id()}:{uuid.uuid4().hex[:6]}"
        self.ttl = timedelta(seconds=settings.lease_seconds)
        self.stop = threading.Event()
        self.scheduler: BlockingScheduler | None = None
        self._busy = 0
        self._idle = threading.Condition()
        # Held by plan-send and poll-sources: a plan never runs in the middle of a poll.
        self._ingest_or_plan = threading.Lock()
        # Set while the first planning run of this leadership waits for its first poll.
        self._plan_after_poll = False
        # The store out of reach: logged once (and now and then while it lasts), waited out with a growing pause.
        self.outage = StoreOutage()
        # Until when the lease is surely ours (what the last renewal said), on the wall clock.
        self._lease_until = wall_now()
        # When the loop or the lease renewal last went round (the watchdog's sign of life).
        self._beat = time.monotonic()

    # -- life cycle --------------------------------------------------------------------------------------

    def serve(self) -> int:
        """Stand by or lead until SIGTERM/SIGINT; then finish the work in hand, release the lease, return 0."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        logs.run_id.set(self.holder.rsplit(":", 1)[1])
        logs.event("worker.started", holder=self.holder, database=self.engine.url.render_as_string(hide_password=True))
        metrics_server = serve_metrics(self.settings, self.engine)
        notifier = Notifier()
        notifier.ready(f"started as {self.holder}")
        # Healthy: the loop (standing by) or the lease renewal (leading) went round lately, and the store answers: a
        # worker stuck, or without its store for longer than WatchdogSec, is restarted by systemd.
        notifier.feed_while(self._healthy)
        standby_of: str | None = None
        try:
            while not self.stop.is_set():
                self._beat = time.monotonic()
                try:
                    leading = acquire_lease(self.engine, self.holder, self.ttl)
                    leader = None if leading else current_holder(self.engine)
                except STORE_ERRORS as e:
                    self.stop.wait(self.outage.failed("taking the lease", e))
                    continue
                self.outage.ok()
                if leading:
                    self._lease_until = wall_now() + self.ttl
                    if standby_of is not None:
                        logs.event("worker.promoted", holder=self.holder, after=standby_of)
                        standby_of = None
                    logs.event("lease.acquired", holder=self.holder)
                    notifier.status("leading")
                    self._lead()
                else:
                    if leader != standby_of and leader is not None:
                        host, pid = (leader.split(":") + ["", ""])[:2]
                        logs.event(
                            "worker.standby", holder=self.holder, leader=leader, leader_host=host, leader_pid=pid
                        )
                        notifier.status(f"standing by for {leader}")
                        standby_of = leader
                    self._help_send()
                    self.stop.wait(self.ttl.total_seconds() / 3)
        finally:
            notifier.stopping()
            # A message in flight is finished and recorded; with the store away there is nothing to record it in.
            self._wait_idle(timeout=2.0 if self.outage.down else max(10.0, self.settings.smtp_timeout + 5))
            if not self.outage.down:
                try:
                    release_lease(self.engine, self.holder)
                except STORE_ERRORS as e:
                    self.outage.failed("releasing the lease", e)  # it expires by itself
            if metrics_server is not None:
                metrics_server.close()
            logs.event("worker.stopped", holder=self.holder)
        return 0

    def _healthy(self) -> bool:
        lately = time.monotonic() - self._beat < max(60.0, 3 * self.ttl.total_seconds())
        return lately and not self.outage.down and not self.stop.is_set()

    def _help_send(self) -> None:
        """A standby worker sends too: while digests are claimable, it claims batches like the leader's jobs do, for a
        third of a lease at a time (then it looks at the lease again, ready to take over)."""
        try:
            with self.factory() as session:
                if not any_claimable(session, clock.now(), DeliveryPolicy.from_settings(self.settings).claim_timeout):
                    return
            until = time.monotonic() + self.ttl.total_seconds() / 3
            report = deliver_due(
                self.factory,
                self.settings,
                transport_for(self.settings, self.factory),
                SendReport(),
                lambda: self.stop.is_set() or time.monotonic() > until,
            )
            if report.sent or report.error:
                logs.event("standby.sent", sent=report.sent, failed=report.failed, error=report.error)
        except STORE_ERRORS as e:
            self.outage.failed("sending as a standby", e)
        except Exception:  # a standby's help failing stops nothing: the leader sends all the same
            logs.event("standby.crashed", level=40, exc_info=True)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        logs.event("worker.stopping", signal=signal.Signals(signum).name)
        self.stop.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _lead(self) -> None:
        zone = self.settings.zone
        scheduler = BlockingScheduler(
            timezone=zone,
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(self.settings.misfire_hours * 3600),
            },
        )
        now = wall_now()
        every = {
            PLAN_SEND: self.settings.due_minutes,
            POLL: self.settings.poll_minutes,
            RETRY: self.settings.retry_minutes,
        }
        if self.settings.bounces_from:
            every[BOUNCES] = self.settings.bounce_minutes
        for job_id, minutes in every.items():
            # Polling starts at once; the others at their first interval.
            first = {"next_run_time": now} if job_id == POLL else {}
            scheduler.add_job(
                self._job,
                IntervalTrigger(minutes=minutes, timezone=zone),
                args=[job_id],
                id=job_id,
                replace_existing=True,
                **first,
            )
        renew_every = self.ttl.total_seconds() / 3
        scheduler.add_job(
            self._renew, IntervalTrigger(seconds=renew_every, timezone=zone), id="renew-lease", replace_existing=True
        )
        # Webhooks go out within seconds of their change: a loop of its own, not a recorded job (a run row every
        # few seconds would say nothing); each delivery is in the endpoint's log, each failure in the log.
        scheduler.add_job(
            self._webhooks,
            IntervalTrigger(seconds=self.settings.webhook_seconds, timezone=zone),
            id="deliver-webhooks",
            replace_existing=True,
        )
        if any(s.enabled for s in self.settings.sources):
            self._plan_after_poll = True  # added by _job once the first poll has finished
        else:
            self._add_first_plan(scheduler)
        self.scheduler = scheduler
        if self.stop.is_set():
            return
        # Next runs change when a job runs or comes and goes; the lease renewal (every few seconds) is not one.
        scheduler.add_listener(
            self._on_job_event,
            EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_ADDED | EVENT_JOB_REMOVED,
        )
        self._record_next_runs(now)
        scheduler.start()  # blocks until a signal, or the lease is lost, shuts it down
        self.scheduler = None

    def _add_first_plan(self, scheduler: BlockingScheduler) -> None:
        """Plan for whoever is due now (after downtime: everyone whose slot passed), once, reason "start"."""
        scheduler.add_job(
            self._job,
            DateTrigger(wall_now(), timezone=self.settings.zone),
            args=[PLAN_SEND, START],
            id=FIRST_PLAN,
            replace_existing=True,
        )

    def _on_job_event(self, event: Any) -> None:
        if getattr(event, "job_id", None) not in _UNRECORDED:
            self._record_next_runs()

    def _webhooks(self) -> None:
        """Deliver the webhook events that are due (digest.access.webhooks); the store's trouble waits for the next."""
        from digest.access.webhooks import deliver_due

        try:
            done = deliver_due(self.factory, self.settings.webhook_timeout, self.stop.is_set)
        except STORE_ERRORS as e:
            self.outage.failed("delivering webhooks", e)
            return
        if done.delivered or done.failed:
            logs.event("webhooks.delivered", delivered=done.delivered, failed=done.failed, disabled=done.disabled)

    def _renew(self) -> None:
        """Renew the lease; a leader that cannot (another took it, or the store is away past the lease's end) stops
        scheduling and goes back to taking the lease like any worker."""
        now = wall_now()
        self._beat = time.monotonic()
        try:
            renewed = renew_lease(self.engine, self.holder, self.ttl)
        except STORE_ERRORS as e:
            self.outage.failed("renewing the lease", e)
            if now < self._lease_until:
                return  # still ours for a while: the next renewal tries again
            renewed = False
        else:
            self.outage.ok()
            if renewed:
                self._lease_until = now + self.ttl
        if not renewed:
            logs.event("lease.lost", holder=self.holder, level=30)
            if self.scheduler is not None:
                self.scheduler.shutdown(wait=False)

    def _record_next_runs(self, now: datetime | None = None) -> None:
        scheduler = self.scheduler
        if scheduler is None:
            return
        # Read the scheduler before opening a transaction, never inside one: APScheduler calls this listener
        # with its job store lock held, and a transaction waiting on that lock while holding SQLite's write lock
        # is a deadlock with a listener that holds the store lock and waits to write.
        jobs = [
            (job.id, str(job.trigger), getattr(job, "next_run_time", None))
            for job in scheduler.get_jobs()
            if job.id not in _UNRECORDED
        ]
        try:
            self._store_next_runs(jobs, now)
        except STORE_ERRORS as e:
            self.outage.failed("recording the next runs", e)

    def _store_next_runs(self, jobs: list[tuple[str, str, datetime | None]], now: datetime | None) -> None:
        with transaction(self.factory) as session:
            # One-off jobs that ran are gone from the scheduler: they have no next run.
            current = [job_id for job_id, _, _ in jobs]
            session.execute(update(ScheduledJob).where(ScheduledJob.id.not_in(current)).values(next_run_at=None))
            for job_id, trigger, next_run in jobs:
                row = session.get(ScheduledJob, job_id) or ScheduledJob(id=job_id, trigger=trigger)
                row.trigger = trigger
                next_run = next_run or (now if now and job_id == FIRST_PLAN else None)
                row.next_run_at = next_run.astimezone(UTC) if next_run else None
                session.add(row)

    # -- jobs ----------------------------------------------------------------------------------------------

    def _job(self, job_id: str, reason: str = "scheduled") -> None:
        """Run one job, recording it (start, outcome, counts) and logging under its own run id."""
        if self.stop.is_set():
            return
        with self._idle:
            self._busy += 1
        token = logs.run_id.set(uuid.uuid4().hex[:12])
        try:
            self._run_job(job_id, reason)
        finally:
            logs.run_id.reset(token)
            if job_id == POLL and self._plan_after_poll and self.scheduler is not None:
                self._plan_after_poll = False
                self._add_first_plan(self.scheduler)
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _run_job(self, job_id: str, reason: str) -> None:
        try:
            with transaction(self.factory) as session:
                row = JobRun(
                    job_id=job_id,
                    run_id=logs.run_id.get(),
                    holder=self.holder,
                    reason=reason,
                    started_at=wall_now(),
                    outcome=JobOutcome.RUNNING,
                )
                session.add(row)
                session.flush()
                row_id = row.id
        except STORE_ERRORS as e:
            self.outage.failed(f"starting {job_id}", e)  # not run: the next run of it will be
            return
        logs.event("job.started", job=job_id, reason=reason)
        outcome, error = JobOutcome.OK, None
        counts: dict[str, Any] = {}
        try:
            if job_id in (POLL, PLAN_SEND):
                with self._ingest_or_plan:
                    counts, error = JOBS[job_id](self)
            else:
                counts, error = JOBS[job_id](self)
            outcome = JobOutcome.FAILED if error else JobOutcome.OK
        except STORE_ERRORS as e:
            outcome, error = JobOutcome.FAILED, f"the store is unavailable: {type(e).__name__}"
            self.outage.failed(f"running {job_id}", e)
        except Exception as e:  # a job's failure is recorded and logged; the worker goes on
            outcome, error = JobOutcome.FAILED, f"{type(e).__name__}: {e}"
            logs.event("job.crashed", level=40, exc_info=True, job=job_id)
        try:
            with transaction(self.factory) as session:
                session.execute(
                    update(JobRun)
                    .where(JobRun.id == row_id)
                    .values(finished_at=wall_now(), outcome=outcome, counts=json.dumps(counts), error=error)
                )
        except STORE_ERRORS as e:
            self.outage.failed(f"recording {job_id}", e)
        logs.event("job.finished", level=40 if error else 20, job=job_id, outcome=outcome, error=error, **counts)

    def _wait_idle(self, timeout: float) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout)
