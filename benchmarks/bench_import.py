"""CSV subscriber import at 100k rows, against the same file only parsed and validated (the reference).

Prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_import.py [ROWS]
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from digest import clock
from digest.ingest.merge import ThemeCache
from digest.store import db
from digest.subscriptions.imports import import_csv
from digest.subscriptions.subscribers import normalize_email


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    clock.set_fixed_now(datetime(2026, 11, 9, 10, tzinfo=UTC))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "people.csv"
        with path.open("w", encoding="utf-8") as f:
            f.write("email,themes\n")
            for i in range(rows):
                f.write(f"user{i}@example.org,water;goal-6\n" if i % 1000 else f"bad address {i},water\n")
        engine = db.make_engine(f"sqlite:///{d}/b.db")
        db.upgrade(engine)
        sessions = db.session_factory(engine)
        with sessions() as s, s.begin():
            cache = ThemeCache(s)
            cache.get("Water", clock.now())
            cache.get("Goal 6", clock.now())

        t0 = time.perf_counter()
        with path.open(encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:
                    normalize_email(row["email"])
                except Exception:
                    pass
        reference = time.perf_counter() - t0

        t0 = time.perf_counter()
        report = import_csv(sessions, str(path), clock.now(), confirmed=True)
        elapsed = time.perf_counter() - t0
    print(f"rows: {rows}, created: {report.created}, reported: {len(report.errors)}")
    print(f"parse + validate only (reference): {reference:.2f} s")
    print(
        f"full import:                       {elapsed:.2f} s "
        f"({elapsed / reference:.2f}x reference, {rows / elapsed:,.0f} rows/s)"
    )


if __name__ == "__main__":
    main()
