"""Throughput: `digest send` end to end (plan, render, SMTP, ledger) into Postfix's smtp-sink, against Postfix's own
smtp-source sending the same number of messages of the same size into the same sink, in the same run.

Prints both rates and their ratio, on SQLite (one sender) and on PostgreSQL (four senders: `--processes 4`). Each is
measured in ROUNDS rounds, `digest send` and smtp-source one after the other, the store restored to what was prepared
before each (a copy of the SQLite file; a PostgreSQL database made from the prepared one as a template): a shared
machine's speed drifts from minute to minute, so each round's ratio is taken between runs a few seconds apart, and
the median round is the figure. Each round also runs `digest send` once more with nothing left due: what a command
costs whatever it sends (start-up, connections, looking for work, exit; smtp-source, in C, has next to none), and
prints the messages' own pace, the run less that.
Needs Debian's postfix (smtp-sink, smtp-source; `make system-packages` does not install it: apt-get install
postfix) and, for the PostgreSQL half, PostgreSQL on 127.0.0.1:5432 (or DIGEST_TEST_POSTGRES).

    .venv/bin/python benchmarks/bench_throughput.py [N]        # N subscribers, 10,000 by default
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, insert, select, text

from digest.store import db
from digest.store.models import Subscriber, Subscription, Theme

SERVER = os.environ.get("DIGEST_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")
THEMES = ["Water and Sanitation", "Urban Resilience", "Decent Work"]
WORDS = (
    "Community water kiosks sell clean water at a fair price and train local women to run them, "
    "with the city paying for the pipes and the utility for the meters. "
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def export(path: Path, per_theme: int = 10) -> None:
    """``per_theme`` practices per theme, each with a summary of about 800 characters: with ten, digests of
    ~20-25 KB."""
    practices = [
        {
            "id": f"p-{t}-{i}",
            "title": f"Practice {i} of {theme}: neighbourhood committees that get things done",
            "summary": (WORDS * 5)[:800],
            "url": f"https://practices.example.org/p/{t}/{i}",
            "themes": [theme],
            "submitted_by": "Ms. Jana NOVÁKOVÁ",
        }
        for t, theme in enumerate(THEMES)
        for i in range(per_theme)
    ]
    path.write_text(json.dumps({"practices": practices}), encoding="utf-8")


def prepare(workdir: Path, database_url: str, smtp_url: str, subscribers: int, per_theme: int = 10) -> dict[str, str]:
    config = workdir / "digest.toml"
    config.write_text(
        f'database_url = "{database_url}"\nsmtp_url = "{smtp_url}"\nsecret_key = "bench-secret-0123456789abcdef"\n'
        f'base_url = "https://digest.example.org"\noutbox_dir = "{workdir / "outbox"}"\nfeeds_dir = "{workdir}"\n'
        "batch_size = 500\nmax_attempts = 6\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {"DIGEST_CONFIG": str(config)}
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    now = datetime(2026, 11, 10, 10, tzinfo=UTC)
    sessions = db.session_factory(engine)
    with sessions() as s, s.begin():
        for name in THEMES:
            s.add(Theme(name=name, slug=name.lower().replace(" ", "-"), created_at=now))
    with sessions() as s, s.begin():
        themes = list(s.scalars(select(Theme.id).order_by(Theme.id)))
        for start in range(0, subscribers, 5000):
            s.execute(
                insert(Subscriber),
                [
                    {"email": f"reader{i}@example.org", "status": "confirmed", "created_at": now, "confirmed_at": now}
                    for i in range(start, min(subscribers, start + 5000))
                ],
            )
        ids = list(s.scalars(select(Subscriber.id).order_by(Subscriber.id)))
        # Seven different theme choices, so seven different digests.
        choices = [[0], [1], [2], [0, 1], [1, 2], [0, 2], [0, 1, 2]]
        rows = [
            {"subscriber_id": sid, "theme_id": themes[t], "created_at": now, "cursor": 0}
            for n, sid in enumerate(ids)
            for t in choices[n % 7]
        ]
        for start in range(0, len(rows), 10_000):
            s.execute(insert(Subscription), rows[start : start + 10_000])
    engine.dispose()
    # Subscribers as a week of service leaves them: placed on their schedules by an earlier run (with nothing to
    # send yet), so that the run measured plans and sends, as every run but the very first does.
    subprocess.run(
        [sys.executable, "-m", "digest", "send", "--json"],
        env=env | {"DIGEST_NOW": "2026-11-11T10:00:00Z"},
        check=True,
        capture_output=True,
    )
    export(workdir / "export.json", per_theme)
    subprocess.run(
        [sys.executable, "-m", "digest", "ingest", str(workdir / "export.json")],
        env=env | {"DIGEST_NOW": "2026-11-12T10:00:00Z"},
        check=True,
        capture_output=True,
    )
    if database_url.startswith("postgresql"):
        # A store in service has its statistics (autovacuum's ANALYZE); one just filled has none until autovacuum
        # comes by, and each round's copy is made from this one.
        engine = db.make_engine(database_url)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        engine.dispose()
    return env


def message_size(env: dict[str, str]) -> int:
    """The mean size of the seven distinct digests (their subscribers are reader0 ... reader6)."""
    sizes = []
    for n in range(7):
        command = [sys.executable, "-m", "digest", "preview", f"reader{n}@example.org", "--eml"]
        eml = subprocess.run(
            command, env=env | {"DIGEST_NOW": "2026-11-16T09:00:00Z"}, check=True, capture_output=True
        ).stdout
        sizes.append(len(eml))
    return sum(sizes) // len(sizes)


class Sink:
    """Postfix's smtp-sink on a free loopback port (it accepts and discards everything)."""

    def __enter__(self) -> Sink:
        self.port = free_port()
        self.process = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "nobody", f"127.0.0.1:{self.port}", "1000"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait()


def digest_send(env: dict[str, str], processes: int) -> tuple[float, int]:
    started = time.perf_counter()
    extra = ["--processes", str(processes)] if processes > 1 else []
    done = subprocess.run(
        [sys.executable, "-m", "digest", "send", "--json", *extra],
        env=env | {"DIGEST_NOW": "2026-11-16T09:00:00Z"},
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return elapsed, int(json.loads(done.stdout)["sent"])


def smtp_source(port: int, count: int, size: int, sessions: int) -> float:
    """smtp-source sending ``count`` messages of ``size`` bytes over ``sessions`` parallel sessions (as many as
    `digest send` has senders: the link's speed with that much parallelism)."""
    started = time.perf_counter()
    subprocess.run(
        [
            "/usr/sbin/smtp-source",
            "-s",
            str(sessions),
            "-m",
            str(count),
            "-l",
            str(size),
            "-f",
            "bench@example.org",
            "-t",
            "reader@example.org",
            f"127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


ROUNDS = 3


def restore_sqlite(pristine: Path, database: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(pristine, database)


def restore_postgres(admin: Engine, pristine: str, database: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{database}" TEMPLATE "{pristine}"'))


def run(label: str, database_url: str, subscribers: int, processes: int, restore: Callable[[], str]) -> None:
    """Prepare once; then ROUNDS rounds of: the store restored (``restore()`` gives the URL to send from), `digest
    send`, `digest send` again with nothing left due (what a run costs before and after its messages: start-up,
    connections, the looks for work, exit), smtp-source with the same count and size."""
    rounds = []
    with tempfile.TemporaryDirectory() as tmp, Sink() as sink:
        env = prepare(Path(tmp), database_url, f"smtp://127.0.0.1:{sink.port}", subscribers)
        size = message_size(env)
        config = Path(env["DIGEST_CONFIG"]).read_text(encoding="utf-8")
        for _ in range(ROUNDS):
            url = restore()
            Path(env["DIGEST_CONFIG"]).write_text(config.replace(database_url, url), encoding="utf-8")
            elapsed, sent = digest_send(env, processes)
            idle, again = digest_send(env, processes)
            assert again == 0, f"a second run sent {again}"
            reference = smtp_source(sink.port, sent, size, processes)
            rounds.append((sent / elapsed / (sent / reference), elapsed, reference, sent, idle))
    for n, (ratio, elapsed, reference, sent, idle) in enumerate(rounds, 1):
        print(
            f"  round {n}: digest send {sent / elapsed:6.0f}/s ({elapsed:5.1f} s; {idle:4.2f} s with nothing due), "
            f"smtp-source {sent / reference:6.0f}/s ({reference:5.1f} s): {ratio:4.2f}"
        )
    ratio, elapsed, reference, sent, idle = sorted(rounds)[len(rounds) // 2]
    ours, theirs = sent / elapsed, sent / reference
    print(
        f"{label:34} {sent:>7} msgs of {size / 1024:5.1f} KB   digest send {ours:7.0f}/s ({elapsed:6.1f} s)   "
        f"smtp-source {theirs:7.0f}/s ({reference:5.1f} s)   ratio {ratio:4.2f} (median of {ROUNDS})"
    )
    # What the run costs whatever it sends (Python's start-up and imports, connections, the looks for work, exit)
    # is paid once per command; the messages' own pace is what is left.
    pace = sent / (elapsed - idle)
    print(
        f"{'':34} the same run with nothing due: {idle:4.2f} s; the messages' own pace (run less that) "
        f"{pace:7.0f}/s: {pace / theirs:4.2f} of smtp-source"
    )


def main() -> None:
    subscribers = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    if not shutil.which("/usr/sbin/smtp-sink"):
        sys.exit("needs Postfix's smtp-sink and smtp-source: apt-get install postfix")
    print(
        f"{subscribers} subscribers, 7 distinct digests; plan + render + SMTP + ledger vs smtp-source with as many "
        "sessions as senders (-s N)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        prepared, database = Path(tmp) / "prepared.db", Path(tmp) / "bench.db"

        def fresh_sqlite() -> str:
            if not prepared.exists():  # the first round: what was prepared is kept aside
                shutil.copyfile(database, prepared)
            restore_sqlite(prepared, database)
            return f"sqlite:///{database}"

        run("SQLite, 1 sender", f"sqlite:///{database}", subscribers, 1, fresh_sqlite)
    name = "digest_bench_" + secrets.token_hex(4)
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # no PostgreSQL here: the SQLite figures stand alone
        print(f"PostgreSQL not reachable at {SERVER}: {e}")
        return
    work = name + "_run"

    def fresh_postgres() -> str:
        restore_postgres(admin, name, work)
        return f"{SERVER}/{work}"

    try:
        run("PostgreSQL, 4 senders (--processes 4)", f"{SERVER}/{name}", subscribers, 4, fresh_postgres)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{work}" WITH (FORCE)'))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
