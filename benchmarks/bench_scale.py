"""Scale: peak memory, planning and sending time, and database bytes per digest, at 10k and 100k subscribers
(and 1M with --million), each run in a fresh process on a fresh SQLite database, sending into Postfix's smtp-sink.

Prints figures and the ratios against the 10k run; asserts nothing. Targets: peak RSS 100k/10k <= 1.3; bytes per
digest row under 1 KB whatever the content's size (the content is stored once per distinct digest, in `contents`).

    .venv/bin/python benchmarks/bench_scale.py [--million]
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_throughput import Sink, prepare  # noqa: E402


def child(database: str, smtp_url: str) -> None:
    """Plan then send, in this process; print the timings as JSON (the parent reads this process's peak RSS)."""
    from digest import clock
    from digest.config import load_settings
    from digest.mail.plan.planner import PlanPolicy, plan_due
    from digest.mail.send.delivery import SendReport
    from digest.mail.send.runs import deliver_due
    from digest.mail.send.transport import transport_for
    from digest.store import db

    settings = load_settings()
    clock.set_fixed_now(clock.parse_instant("2026-11-16T09:00:00Z"))
    factory = db.session_factory(db.make_engine(settings.database_url))
    started = time.perf_counter()
    plan = plan_due(factory, PlanPolicy.from_settings(settings), clock.now())
    planned = time.perf_counter()
    report = deliver_due(factory, settings, transport_for(settings), SendReport())
    done = time.perf_counter()
    # This process's own peak (VmHWM, of the memory map exec gave it): the rusage a parent reads after wait4 also
    # counts the parent's own size at the fork, which grows with the subscribers it prepared.
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(
        json.dumps(
            {
                "planned": plan.planned,
                "sent": report.sent,
                "plan_s": planned - started,
                "send_s": done - planned,
                "rss_mb": peak_kb / 1024,
            }
        )
    )


def digest_bytes(path: Path) -> dict[str, float]:
    """Bytes per digest: the digests table and its indexes, and its share of the contents and of what they give
    (content_practices: the ledger, stored once per distinct content)."""
    with sqlite3.connect(path) as conn:
        count = conn.execute("SELECT count(*) FROM digests").fetchone()[0] or 1
        sizes = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
        tables = {name: tbl for name, tbl in conn.execute("SELECT name, tbl_name FROM sqlite_master")}
    per_table: dict[str, int] = {}
    for name, size in sizes.items():
        per_table[tables.get(name, name)] = per_table.get(tables.get(name, name), 0) + size
    return {k: per_table.get(k, 0) / count for k in ("digests", "content_practices", "contents")}


def measure(subscribers: int, per_theme: int = 10) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, Sink() as sink:
        database = Path(tmp) / "scale.db"
        env = prepare(Path(tmp), f"sqlite:///{database}", f"smtp://127.0.0.1:{sink.port}", subscribers, per_theme)
        command = [sys.executable, __file__, "--child"]
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
        if done.returncode:
            raise RuntimeError(f"the run failed ({done.returncode})")
        figures = json.loads(done.stdout)
        return figures | {f"{k}_b": v for k, v in digest_bytes(database).items()}


def main() -> None:
    if "--child" in sys.argv:
        child("", "")
        return
    sizes = [10_000, 100_000] + ([1_000_000] if "--million" in sys.argv else [])
    # The same 10k with five times the practices (50 per theme; past the cap of 50 a digest counts the rest):
    # what a digest row costs must not change.
    big = measure(10_000, per_theme=50)
    print(
        "subscribers   planned      sent   plan s   send s  peak RSS MB   "
        "bytes/digest: row+indexes  ledger (content_practices)  contents"
    )
    results = {}
    for n in sizes:
        r = results[n] = measure(n)
        print(
            f"{n:>11,} {r['planned']:>9,.0f} {r['sent']:>9,.0f} {r['plan_s']:8.1f} {r['send_s']:8.1f} "
            f"{r['rss_mb']:12.1f}   {r['digests_b']:26.0f} {r['content_practices_b']:29.1f} "
            f"{r['contents_b']:9.1f}"
        )
    print(
        f"{'10,000 (5x practices)':>21} {big['sent']:>9,.0f} {big['plan_s']:8.1f} {big['send_s']:8.1f} "
        f"{big['rss_mb']:12.1f}   {big['digests_b']:26.0f} {big['content_practices_b']:29.1f} "
        f"{big['contents_b']:9.1f}"
    )
    base = results[sizes[0]]
    for n in sizes[1:]:
        r = results[n]
        rss, row = r["rss_mb"] / base["rss_mb"], r["digests_b"] / base["digests_b"]
        print(
            f"ratio {n // 1000}k/{sizes[0] // 1000}k: peak RSS {rss:.2f}x (target <= 1.3), "
            f"planning {r['plan_s'] / base['plan_s']:.1f}x and sending {r['send_s'] / base['send_s']:.1f}x for "
            f"{n // sizes[0]}x the subscribers, bytes per digest row {row:.2f}x"
        )
    print(
        f"5x the practices at 10k: bytes per digest row {big['digests_b'] / base['digests_b']:.2f}x, "
        f"all of a digest's share {total(big) / total(base):.2f}x ({total(base):.0f} -> {total(big):.0f} bytes)"
    )


def total(r: dict[str, float]) -> float:
    return r["digests_b"] + r["content_practices_b"] + r["contents_b"]


if __name__ == "__main__":
    main()
