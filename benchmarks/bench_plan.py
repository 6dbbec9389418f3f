"""Planning cost with per-subscriber schedules: it should grow with the subscribers who are due, not with all.

Prints figures, asserts nothing. Three runs on SQLite, each on a fresh database with the same new practices:
  A  10k subscribers, 1/7 of them due (a daily-spread weekly schedule: one weekday's share);
  B  100k subscribers, 1/7 due                -> B/A should be ~10 (ten times as many due);
  C  100k subscribers, as many due as in A     -> C/A should be ~1 (the others cost nothing).

    .venv/bin/python benchmarks/bench_plan.py [N]     (N = 10000; B and C use 10 N)
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select

from digest import clock
from digest.config import Settings, SourceConfig
from digest.ingest import ingest_sources
from digest.mail.plan.planner import PlanPolicy, plan_due
from digest.store import db
from digest.store.models import Subscriber, Subscription, Theme

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
NOW = datetime(2026, 11, 16, 9, tzinfo=UTC)


def run(subscribers: int, due: int) -> tuple[float, int]:
    """Seconds for one planning run over ``subscribers`` of whom ``due`` are due, and how many it planned."""
    with tempfile.TemporaryDirectory() as d:
        settings = Settings(database_url=f"sqlite:///{Path(d) / 'b.db'}", batch_size=500, timezone="Europe/Paris")
        engine = db.make_engine(settings.database_url)
        db.upgrade(engine)
        sessions = db.session_factory(engine)
        clock.set_fixed_now(datetime(2026, 11, 9, 10, tzinfo=UTC))
        ingest_sources(sessions, [SourceConfig(str(FIXTURES / "listing-goal6.txt"))], clock.now())
        with sessions() as s, s.begin():
            themes = list(s.scalars(select(Theme.id)))
            rows = []
            for i in range(subscribers):
                # The due ones were due this morning; the others later this week (their own weekdays).
                when = NOW - timedelta(hours=2) if i < due else NOW + timedelta(days=1 + i % 6, hours=i % 24)
                rows.append(
                    {
                        "email": f"u{i}@example.org",
                        "status": "confirmed",
                        "created_at": clock.now(),
                        "confirmed_at": clock.now(),
                        "frequency": "weekly",
                        "day": 0,
                        "hour": 8,
                        "next_due_at": when,
                    }
                )
            for start in range(0, len(rows), 20_000):
                s.execute(insert(Subscriber), rows[start : start + 20_000])
            ids = list(s.scalars(select(Subscriber.id)))
            subs = [{"subscriber_id": i, "theme_id": themes[0], "created_at": clock.now(), "cursor": 0} for i in ids]
            for start in range(0, len(subs), 20_000):
                s.execute(insert(Subscription), subs[start : start + 20_000])
        clock.set_fixed_now(datetime(2026, 11, 11, 10, tzinfo=UTC))
        for name in ("listing-water.txt", "listing-water-week2.txt"):
            ingest_sources(sessions, [SourceConfig(str(FIXTURES / name))], clock.now())
        clock.set_fixed_now(NOW)
        started = time.perf_counter()
        report = plan_due(sessions, PlanPolicy.from_settings(settings), NOW)
        elapsed = time.perf_counter() - started
        engine.dispose()
        assert report.due == due, report
        return elapsed, report.planned


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    a, planned_a = run(n, n // 7)
    b, planned_b = run(10 * n, 10 * n // 7)
    c, planned_c = run(10 * n, n // 7)
    print(f"A  {n:>7,} subscribers, {n // 7:>6,} due: {a:6.2f} s ({planned_a:,} planned)")
    print(f"B  {10 * n:>7,} subscribers, {10 * n // 7:>6,} due: {b:6.2f} s ({planned_b:,} planned)   B/A = {b / a:.2f}")
    print(f"C  {10 * n:>7,} subscribers, {n // 7:>6,} due: {c:6.2f} s ({planned_c:,} planned)   C/A = {c / a:.2f}")
    print("planning cost follows the subscribers due (B/A ~ 10), not all subscribers (C/A ~ 1)")


if __name__ == "__main__":
    main()
