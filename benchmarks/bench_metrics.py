"""What a Prometheus scrape of /metrics costs on a big store: 100,000 subscribers and 1,000,000 digests (SQLite, or
PostgreSQL with a URL), against references measured in the same run: a `SELECT 1`, and one count of every digest
(what a scrape that grouped the digests by state would at least cost).

Prints the median of 20 scrapes (the whole exposition: this process's metrics and the store's figures); asserts
nothing (target: under 20 ms).

    .venv/bin/python benchmarks/bench_metrics.py [DATABASE_URL]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from digest.metrics import exposition, registry_for
from digest.store import db

SUBSCRIBERS, DIGESTS = 100_000, 1_000_000


def fill(url: str) -> None:
    engine = db.make_engine(url)
    db.upgrade(engine)
    now = datetime(2026, 11, 30, 9, tzinfo=UTC)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO contents (hash, body, created_at) VALUES ('c', '{}', :t)"), {"t": stamp})
        conn.execute(
            text(
                "INSERT INTO subscribers (id, email, key, feed_key, feed_only, status, bounces, created_at,"
                " next_due_at) VALUES (:id, :email, :key, :fk, false, :status, 0, :t, :due)"
            ),
            [
                {
                    "id": n,
                    "email": f"s{n}@example.org",
                    "key": f"k{n}",
                    "fk": f"f{n}",
                    "status": "confirmed" if n % 10 else "unsubscribed",
                    "t": stamp,
                    # A weekly schedule: one subscriber in a hundred is due at this hour.
                    "due": stamp if n % 100 == 0 else (now + timedelta(days=n % 7 + 1)).strftime("%Y-%m-%d %H:%M:%S"),
                }
                for n in range(1, SUBSCRIBERS + 1)
            ],
        )
        # Ten periods per subscriber: all sent but the newest, of which a few are failed, cancelled or waiting.
        # Loaded in one transaction: on PostgreSQL the sent tally's trigger is off meanwhile (a million updates of
        # one row in one transaction is not what a sender does: it commits every few messages), and set after.
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            conn.execute(text("ALTER TABLE digests DISABLE TRIGGER USER"))
        batch = []
        for n in range(DIGESTS):
            subscriber, period = n % SUBSCRIBERS + 1, n // SUBSCRIBERS
            newest = period == DIGESTS // SUBSCRIBERS - 1
            status = ("planned", "deferred", "failed", "cancelled")[n % 4] if newest and n % 50 == 0 else "sent"
            sent = (now - timedelta(days=7 * (10 - period))).strftime("%Y-%m-%d %H:%M:%S") if status == "sent" else None
            batch.append({"s": subscriber, "p": f"w{period}", "st": status, "m": f"<{n}@b>", "t": stamp, "sent": sent})
            if len(batch) == 50_000:
                _digests(conn, batch)
                batch = []
        _digests(conn, batch)
        if postgres:
            conn.execute(text("ALTER TABLE digests ENABLE TRIGGER USER"))
            conn.execute(text("UPDATE tallies SET n = (SELECT count(*) FROM digests WHERE status = 'sent')"))
        conn.execute(text("ANALYZE"))
    engine.dispose()


def _digests(conn: object, rows: list[dict[str, object]]) -> None:
    if rows:
        conn.execute(  # type: ignore[attr-defined]
            text(
                "INSERT INTO digests (subscriber_id, period, status, message_id, subject, content_hash, planned_at,"
                " sent_at, attempts) VALUES (:s, :p, :st, :m, 'x', 'c', :t, :sent, 1)"
            ),
            rows,
        )


def median_ms(action: object, runs: int = 20) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{Path(tmp) / 'big.db'}"
        started = time.perf_counter()
        fill(url)
        print(
            f"store: {SUBSCRIBERS:,} subscribers, {DIGESTS:,} digests ({time.perf_counter() - started:.0f} s to fill)"
        )
        engine = db.make_engine(url)
        registry = registry_for(engine)

        def select_one() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        def count_all() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT count(*) FROM digests")).scalar()

        def scrape() -> None:
            body, _ = exposition(registry, None)
            assert b"digest_digests_sent_total" in body

        scrape()  # warm
        figures = [("SELECT 1", median_ms(select_one)), ("count(*) of digests", median_ms(count_all, 5))]
        figures.append(("scrape of /metrics", median_ms(scrape)))
        for name, ms in figures:
            print(f"{name:24} {ms:8.2f} ms")
        print(f"scrape / count(*): {figures[2][1] / figures[1][1]:.2f}")
        engine.dispose()


if __name__ == "__main__":
    main()
