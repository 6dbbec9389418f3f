"""Real `digest worker` processes on one database: one leader, takeover after kill -9, clean stop, downtime.

The clock: APScheduler's timers run on real time. DIGEST_NOW fixes digest's own clock (which period is
current, whether its slot was missed) so a test can stand at "Monday 09:00, two hours after the slot" or
"two weeks later" without waiting a week. Leases and job runs are stamped with real time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.store.models import Digest, JobRun, Lease
from tests.conftest import at, fixture_path, smtp_controller
from tests.smtpfaults import FaultyHandler
from tests.test_delivery import week_with_news
from tests.test_send import ingest

PEOPLE = [f"reader{n}@example.org" for n in range(6)]
AFTER_SLOT = "2026-11-16T09:00:00Z"  # the Monday 08:00 Paris slot (07:00Z) passed two hours ago


@pytest.fixture
def smtp() -> Iterator[tuple[FaultyHandler, str]]:
    handler = FaultyHandler()
    with smtp_controller(handler) as url:
        yield handler, url


@dataclass
class Workers:
    settings: Settings
    smtp_url: str
    tmp: Path
    extra: str = ""

    def config(self) -> Path:
        path = self.tmp / "worker.toml"
        path.write_text(
            f"""
database_url = "{self.settings.database_url}"
base_url = "{self.settings.base_url}"
smtp_url = "{self.smtp_url}"
secret_key = "{self.settings.secret_key}"
timezone = "{self.settings.timezone}"
id_domain = "{self.settings.id_domain}"
feeds_dir = "{self.tmp / "feeds"}"
lease_seconds = 2
poll_minutes = 0.02
retry_minutes = 0.02
send_backoff = 0.05
{self.extra}
""",
            encoding="utf-8",
        )
        return path

    def start(self, now: str, name: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ, DIGEST_CONFIG=str(self.config()), DIGEST_NOW=now)
        with (self.tmp / f"{name}.log").open("ab") as log:  # the child keeps its own copy of the descriptor
            return subprocess.Popen([sys.executable, "-m", "digest", "worker"], env=env, stdout=log, stderr=log)

    def log(self, name: str) -> list[dict[str, object]]:
        return [json.loads(line) for line in (self.tmp / f"{name}.log").read_text().splitlines() if line.strip()]

    def status(self, now: str = AFTER_SLOT) -> tuple[int, dict[str, object]]:
        env = dict(os.environ, DIGEST_CONFIG=str(self.config()), DIGEST_NOW=now)
        done = subprocess.run([sys.executable, "-m", "digest", "status", "--json"], env=env, capture_output=True)
        return done.returncode, json.loads(done.stdout)


@pytest.fixture
def workers(settings: Settings, smtp: tuple[FaultyHandler, str], tmp_path: Path) -> Iterator[Workers]:
    w = Workers(settings, smtp[1], tmp_path)
    yield w


def wait_for(condition: Callable[[], bool], limit: float = 30.0, what: str = "") -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < limit, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def stop(process: subprocess.Popen[bytes], limit: float = 10.0) -> tuple[int, float]:
    """SIGTERM; the exit status and the seconds it took."""
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(limit)
    return code, time.monotonic() - start


def leader_pid(sessions: sessionmaker[Session]) -> int | None:
    with sessions() as s:
        lease = s.get(Lease, "scheduler")
        return int(lease.holder.split(":")[1]) if lease else None


def statuses(sessions: sessionmaker[Session]) -> Counter[str]:
    with sessions() as s:
        return Counter(s.scalars(select(Digest.status)))


def plan_runs(sessions: sessionmaker[Session]) -> list[JobRun]:
    with sessions() as s:
        return list(s.scalars(select(JobRun).where(JobRun.job_id == "plan-send").order_by(JobRun.id)))


def test_two_workers_send_each_due_digest_once(
    sessions: sessionmaker[Session], workers: Workers, smtp: tuple[FaultyHandler, str]
) -> None:
    handler = smtp[0]
    week_with_news(sessions, *PEOPLE)
    a, b = workers.start(AFTER_SLOT, "a"), workers.start(AFTER_SLOT, "b")
    try:
        wait_for(lambda: statuses(sessions).get("sent", 0) == len(PEOPLE), what="every digest sent")
        time.sleep(1.5)  # a second scheduled retry run by the leader: still nothing sent twice
        assert [len(handler.to(p)) for p in PEOPLE] == [1] * len(PEOPLE)
        # Planned once, by the leader; sent by whichever worker claimed each digest first (a standby sends too).
        (run,) = plan_runs(sessions)
        assert run.reason == "start" and run.outcome == "ok" and json.loads(run.counts or "{}")["planned"] == 6
        assert leader_pid(sessions) in (a.pid, b.pid)
        # The retry job runs every few tenths of a second here: the status may catch one running; wait for one
        # that has finished (generous deadline: a busy machine), and it must have gone well.
        seen: dict[str, Any] = {}

        def retry_finished() -> bool:
            seen["code"], seen["report"] = workers.status()
            jobs = {j["id"]: j for j in seen["report"]["jobs"]}
            return bool(jobs["retry-deliveries"]["last_run"]["outcome"] != "running")

        wait_for(retry_finished, what="a retry run that has finished")
        code, report = seen["code"], seen["report"]
        assert code == 0 and report["healthy"]
        leader = report["leader"]
        assert isinstance(leader, dict) and leader["pid"] in (a.pid, b.pid) and leader["alive"]
        jobs = {j["id"]: j for j in report["jobs"]}
        assert jobs["plan-send"]["next_run_at"] is not None
        assert jobs["plan-send"]["last_run"]["counts"]["planned"] == 6
        assert jobs["retry-deliveries"]["last_run"]["outcome"] == "ok"
        assert report["last_day"] == {"planned": 6, "sent": 6} and report["subscribers_due"] == 0
        assert report["digests_waiting"] == {"deferred": 0, "planned": 0, "sending": 0}
    finally:
        start = time.monotonic()
        for process in (a, b):  # both at once: a standby must not take over from a leader that is stopping
            process.send_signal(signal.SIGTERM)
        codes = [a.wait(10), b.wait(10)]
    assert codes == [0, 0] and time.monotonic() - start < 5
    assert leader_pid(sessions) is None  # released on the way out
    for name in ("a", "b"):
        lines = workers.log(name)
        assert all(line["run_id"] and line["event"] for line in lines)
        assert not any(workers.settings.secret_key in json.dumps(line) for line in lines)
    events = [line["event"] for name in ("a", "b") for line in workers.log(name)]
    assert events.count("lease.acquired") == 1


def test_kill_9_of_the_leader_hands_over(sessions: sessionmaker[Session], workers: Workers, tmp_path: Path) -> None:
    at("2026-11-09T10:00:00Z")
    ingest(sessions, "listing-water.txt")
    missing = tmp_path / "later.txt"
    workers.extra = f'[[sources]]\npath = "{missing}"\ntheme = "Water and Sanitation"\n'
    a = workers.start(AFTER_SLOT, "a")
    wait_for(lambda: leader_pid(sessions) == a.pid, what="a to lead")
    b = workers.start(AFTER_SLOT, "b")
    try:
        time.sleep(1.0)
        assert leader_pid(sessions) == a.pid  # b stands by
        code, report = workers.status()
        assert code == 1 and any("poll-sources run failed" in p for p in report["problems"])  # type: ignore[attr-defined]
        assert report["failing_sources"][0]["location"] == str(missing)  # type: ignore[index]
        os.kill(a.pid, signal.SIGKILL)
        a.wait(5)
        took = wait_for(lambda: leader_pid(sessions) == b.pid, limit=10, what="b to take over")
        assert took < 2 + 1.5  # the lease (2 s) runs out, b's next try (every 2/3 s) takes it
        # b said whom it stood by for, once, and that it took over.
        wait_for(lambda: any(e["event"] == "worker.promoted" for e in workers.log("b")), what="worker.promoted")
        standby = [e for e in workers.log("b") if e["event"] == "worker.standby"]
        assert len(standby) == 1 and standby[0]["leader_pid"] == str(a.pid), standby
        missing.write_text(Path(fixture_path("listing-water-week2.txt")).read_text(encoding="utf-8"))
        # The next scheduled poll runs under b and ingests the new source.
        wait_for(lambda: _last_ok_poll_by(sessions, b.pid), what="a poll by b")
        code, report = workers.status()
        assert code == 0 and report["leader"]["pid"] == b.pid  # type: ignore[index]
    finally:
        assert stop(b)[0] == 0


def _last_ok_poll_by(sessions: sessionmaker[Session], pid: int) -> bool:
    with sessions() as s:
        run = s.scalar(select(JobRun).where(JobRun.job_id == "poll-sources").order_by(JobRun.id.desc()))
        return bool(
            run
            and run.holder.split(":")[1] == str(pid)
            and run.outcome == "ok"
            and run.counts
            and json.loads(run.counts)["new"] > 0
        )


def test_sigterm_finishes_the_message_in_flight(
    sessions: sessionmaker[Session], workers: Workers, smtp: tuple[FaultyHandler, str]
) -> None:
    handler = smtp[0]
    handler.pace = 1.0  # each message takes the server a second to accept
    week_with_news(sessions, *PEOPLE)
    worker = workers.start(AFTER_SLOT, "w")
    wait_for(lambda: len(handler.received) == 1, what="the first message to be in flight")
    code, took = stop(worker)
    assert code == 0 and took < 5
    counts = statuses(sessions)
    assert counts["sending"] == 0 and counts["sent"] == len(handler.received) >= 1  # recorded, nothing half-done
    assert counts["planned"] == len(PEOPLE) - counts["sent"]
    assert leader_pid(sessions) is None
    handler.pace = 0.0
    again = workers.start(AFTER_SLOT, "w2")  # the retry job sends the rest
    try:
        wait_for(lambda: statuses(sessions).get("sent", 0) == len(PEOPLE), what="the rest")
    finally:
        assert stop(again)[0] == 0
    assert [len(handler.to(p)) for p in PEOPLE] == [1] * len(PEOPLE)


def test_downtime_over_two_slots_gives_one_digest(
    sessions: sessionmaker[Session], workers: Workers, smtp: tuple[FaultyHandler, str]
) -> None:
    handler = smtp[0]
    week_with_news(sessions, *PEOPLE[:2])
    first = workers.start(AFTER_SLOT, "w1")
    wait_for(lambda: statuses(sessions).get("sent", 0) == 2, what="week one")
    assert stop(first)[0] == 0
    at("2026-11-19T10:00:00Z")
    ingest(sessions, "listing-water-week2.txt")
    # Down for two weekly slots (11-23 and 11-30); back on 11-30 at 09:00Z.
    back = workers.start("2026-11-30T09:00:00Z", "w2")
    try:
        wait_for(lambda: statuses(sessions).get("sent", 0) == 4, what="the digest after downtime")
        time.sleep(1.5)
    finally:
        assert stop(back)[0] == 0
    runs = plan_runs(sessions)
    assert [(r.reason, json.loads(r.counts or "{}")["planned"]) for r in runs] == [
        ("start", 2),
        ("start", 2),  # one digest for the missed slots, not one per slot
    ]
    with sessions() as s:
        # Keyed by the newest slot each time (Monday 08:00 Paris): 11-23 was missed, and is not planned on its own.
        assert sorted(set(s.scalars(select(Digest.period)))) == ["2026-11-16T0700Z", "2026-11-30T0700Z"]
    assert [len(handler.to(p)) for p in PEOPLE[:2]] == [2, 2]
    # A restart with no slot missed plans nothing more.
    again = workers.start("2026-11-30T10:00:00Z", "w3")
    try:
        wait_for(lambda: len(plan_runs(sessions)) == 3, what="w3's first planning run")
        time.sleep(1.0)
    finally:
        assert stop(again)[0] == 0
    assert json.loads(plan_runs(sessions)[-1].counts or "{}")["planned"] == 0
    assert [len(handler.to(p)) for p in PEOPLE[:2]] == [2, 2]


def test_the_catch_up_waits_for_the_first_poll(
    sessions: sessionmaker[Session], workers: Workers, smtp: tuple[FaultyHandler, str], tmp_path: Path
) -> None:
    """Start-up after a missed slot with a source that has news: the catch-up digest carries that news.

    Before, the catch-up planned at the same moment as the first poll, marked everyone done for the period
    with nothing in it, and the practices of that poll waited a whole week.
    """
    handler = smtp[0]
    at("2026-11-10T10:00:00Z")
    from tests.test_send import add, create_themes

    create_themes(sessions, "Water and Sanitation")
    for person in PEOPLE[:2]:
        add(sessions, person, "Water and Sanitation")
    source = tmp_path / "water.txt"
    source.write_text(Path(fixture_path("listing-water.txt")).read_text(encoding="utf-8"), encoding="utf-8")
    workers.extra = f'[[sources]]\npath = "{source}"\ntheme = "Water and Sanitation"\n'
    worker = workers.start(AFTER_SLOT, "w")
    try:
        wait_for(lambda: statuses(sessions).get("sent", 0) == 2, limit=60, what="the catch-up digests")
    finally:
        assert stop(worker)[0] == 0
    runs = plan_runs(sessions)
    assert [(r.reason, json.loads(r.counts or "{}")["planned"]) for r in runs] == [("start", 2)]
    with sessions() as s:
        poll = s.scalars(select(JobRun).where(JobRun.job_id == "poll-sources").order_by(JobRun.id)).first()
        assert poll is not None and poll.finished_at is not None
        assert poll.finished_at <= runs[0].started_at  # planning started only after the poll had finished
    for person in PEOPLE[:2]:
        (received,) = handler.to(person)
        assert "Clean Taps Now" in received.data.decode("utf-8", "replace")
    # Ingest and delivery log through their own named loggers, in the worker's JSON format.
    lines = workers.log("w")
    assert {"source.ingested", "digest.ingest"} <= {str(e["event"]) for e in lines} | {str(e["logger"]) for e in lines}
    assert any(e["event"] == "smtp.connected" and e["logger"] == "digest.mail.send.transport" for e in lines)


def test_sigterm_stops_the_worker_while_a_poll_is_reading_a_slow_server(
    sessions: sessionmaker[Session], workers: Workers, tmp_path: Path
) -> None:
    from tests.feedserver import running

    with running() as server:
        url = server.serve("/slow.rss", body=Path(fixture_path("feed-drupal-water.rss")).read_bytes(), trickle=0.5)
        workers.extra = f'http_deadline = 3600\n[[sources]]\nurl = "{url}"\ntheme = "Water and Sanitation"\n'
        worker = workers.start(AFTER_SLOT, "w")
        try:
            wait_for(lambda: bool(server.hits("/slow.rss")), limit=60, what="the poll to reach the slow server")
            time.sleep(1.0)  # well into the trickle (the body takes minutes at this pace)
        finally:
            code, took = stop(worker, limit=60)
    assert code == 0
    assert took < 10, took  # generous: it stops at the next check, within a fraction of a second
    events = [e["event"] for e in workers.log("w")]
    assert "worker.stopped" in events


@pytest.mark.probe
def test_the_store_dropped_under_a_running_worker(
    pg_url: str, settings: Settings, smtp: tuple[FaultyHandler, str], tmp_path: Path
) -> None:
    """The worker's PostgreSQL database is dropped while it leads: one JSON event says so (and a few more at growing
    intervals while it lasts), never a bare traceback; `status` says the store cannot be used; SIGTERM still stops
    it within seconds."""
    from dataclasses import replace

    from sqlalchemy import create_engine, text

    from digest.store import db

    engine = db.make_engine(pg_url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    week_with_news(sessions, *PEOPLE)
    workers = Workers(replace(settings, database_url=pg_url), smtp[1], tmp_path)
    worker = workers.start(AFTER_SLOT, "w")
    try:
        wait_for(lambda: statuses(sessions).get("sent", 0) == len(PEOPLE), limit=60, what="the digests")
        engine.dispose()
        admin = create_engine(pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{pg_url.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()
        # Lease renewals every 2/3 s, polls and retries every 1.2 s: a dozen failures a second before the fix.
        time.sleep(8)
        code, _report = (
            subprocess.run(
                [sys.executable, "-m", "digest", "status"],
                capture_output=True,
                text=True,
                env=dict(os.environ, DIGEST_CONFIG=str(workers.config())),
            ).returncode,
            None,
        )
        assert code == 1
    finally:
        code, took = stop(worker, limit=30)
    assert code == 0 and took < 3, took
    raw = (tmp_path / "w.log").read_text().splitlines()
    lines = [json.loads(line) for line in raw]  # every line one JSON event: no bare traceback
    events = Counter(str(line["event"]) for line in lines)
    assert events["store.unavailable"] == 1, events
    assert sum(1 for line in lines if line["level"] == "error") <= 4, events
    assert events["worker.stopped"] == 1
