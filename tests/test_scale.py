"""Several senders on one store: each digest sent by exactly one of them, all exit 0, the work shared; a sender
killed with -9 leaves only accepted messages whose outcome was not yet recorded (its group, `sent_per_commit`)
to be sent again (same Message-ID); the hourly limit holds
across senders; frozen content is stored once per distinct content."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from digest.config import SourceConfig
from digest.ingest import ingest_sources
from digest.store import db
from digest.store.models import Content, Digest, Subscriber, Subscription, Theme
from tests.conftest import RecordingHandler, fixture_path, smtp_controller

NOW = "2026-11-16T09:00:00Z"
# Generous: four Python processes and an SMTP server on a busy 2-core machine.
DEADLINE = 600


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        yield request.getfixturevalue("pg_url")
    else:
        yield f"sqlite:///{tmp_path / 'digest.db'}"


@pytest.fixture
def server() -> Iterator[tuple[RecordingHandler, str]]:
    handler = RecordingHandler()
    with smtp_controller(handler) as url:
        yield handler, url


ENGINES: list[Engine] = []


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    yield
    while ENGINES:
        ENGINES.pop().dispose()


def populate(url: str, count: int) -> tuple[sessionmaker[Session], list[str]]:
    """``count`` confirmed subscribers of one or both water themes, each with news: one digest each."""
    engine = db.make_engine(url)
    ENGINES.append(engine)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    when = datetime(2026, 11, 10, 10, tzinfo=UTC)
    reports = ingest_sources(
        sessions,
        [SourceConfig(fixture_path("listing-water.txt")), SourceConfig(fixture_path("listing-goal6.txt"))],
        when,
    )
    assert all(r.ok for r in reports)
    people = [f"reader{n}@example.org" for n in range(count)]
    with sessions() as s, s.begin():
        themes = list(s.scalars(select(Theme.id).order_by(Theme.id)))
        s.execute(
            insert(Subscriber),
            [{"email": e, "status": "confirmed", "created_at": when, "confirmed_at": when} for e in people],
        )
        ids = list(s.scalars(select(Subscriber.id).order_by(Subscriber.id)))
        # A third follow both themes, the rest one or the other: three distinct digests.
        chosen = [themes if n % 3 == 0 else themes[n % 2 : n % 2 + 1] for n in range(len(ids))]
        rows = [
            {"subscriber_id": sid, "theme_id": t, "cursor": 0, "created_at": when}
            for sid, mine in zip(ids, chosen, strict=True)
            for t in mine
        ]
        s.execute(insert(Subscription), rows)
    return sessions, people


def repeats(handler: Any, people: list[str]) -> dict[str, list[str]]:
    """Everyone got their digest; who got it more than once, with the Message-IDs they got."""
    ids: dict[str, list[str]] = {}
    for r in handler.received:
        ids.setdefault(r.recipients[0], []).append(str(r.message["Message-ID"]))
    assert set(ids) == set(people)
    return {who: got for who, got in ids.items() if len(got) > 1}


def config(tmp_path: Path, database: str, smtp: str, **extra: object) -> dict[str, str]:
    path = tmp_path / "digest.toml"
    lines = [
        f'database_url = "{database}"',
        f'smtp_url = "{smtp}"',
        'base_url = "https://digest.test"',
        'secret_key = "test-secret-0123456789abcdef"',
        'id_domain = "digest.test"',
        'timezone = "Europe/Paris"',
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return env | {"DIGEST_CONFIG": str(path), "DIGEST_NOW": NOW}


def senders(env: dict[str, str], count: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "digest", "send", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]


def test_four_senders_deliver_each_digest_exactly_once_and_share_the_work(
    store: str, server: tuple[RecordingHandler, str], tmp_path: Path
) -> None:
    handler, url = server
    count = 3000 if store.startswith("postgresql") else 1200
    sessions, people = populate(store, count)
    procs = senders(config(tmp_path, store, url), 4)
    outcomes = [(*p.communicate(timeout=DEADLINE), p.returncode) for p in procs]
    for _, err, code in outcomes:
        assert code == 0 and "Traceback" not in err, err
    reports = [json.loads(out) for out, _, _ in outcomes]
    assert sum(r["planned"] for r in reports) == count and sum(r["sent"] for r in reports) == count
    assert sum(1 for r in reports if r["sent"] > 0) > 1, [r["sent"] for r in reports]  # more than one did work
    received = Counter(r.recipients[0] for r in handler.received)
    assert received == Counter(dict.fromkeys(people, 1))
    with sessions() as s:
        assert Counter(s.scalars(select(Digest.status))) == Counter({"sent": count})
        # Three kinds of subscriber, three digests: each stored once, however many carry it.
        assert s.scalar(select(func.count()).select_from(Content)) == 3


def test_a_sender_killed_mid_run_leaves_only_its_unrecorded_group(
    pg_url: str, server: tuple[RecordingHandler, str], tmp_path: Path
) -> None:
    handler, url = server
    count = 2000
    sessions, people = populate(pg_url, count)
    group = 10
    env = config(tmp_path, pg_url, url, sent_per_commit=group)
    procs = senders(env, 4)
    deadline = time.monotonic() + DEADLINE
    victim = None
    while victim is None:
        # Mid-run: once 200 messages are in, a sender that is alive and holds claims (a sender may also finish
        # early, when what is left is still being planned by the others).
        assert time.monotonic() < deadline and any(p.poll() is None for p in procs), "the run ended too soon"
        if len(handler.received) >= 200:
            with sessions() as s:
                holders = set(s.scalars(select(Digest.claimed_by).where(Digest.status == "sending")))
            victim = next((p for p in procs if p.poll() is None and f"{socket.gethostname()}:{p.pid}" in holders), None)
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    for p in procs:
        if p is not victim:
            _, err = p.communicate(timeout=DEADLINE)
            assert p.returncode == 0, err
    # The survivors took over what the dead sender had claimed: nothing left, nothing lost, no run needed.
    with sessions() as s:
        assert Counter(s.scalars(select(Digest.status))) == Counter({"sent": count})
    repeated = repeats(handler, people)
    assert len(repeated) <= group, repeated  # at most the group it had not yet recorded when it died
    assert all(len(set(got)) == 1 and len(got) == 2 for got in repeated.values())  # with its Message-ID


def test_the_hourly_limit_holds_across_senders(
    pg_url: str, server: tuple[RecordingHandler, str], tmp_path: Path
) -> None:
    handler, url = server
    populate(pg_url, 300)
    procs = senders(config(tmp_path, pg_url, url, rate_per_hour=40), 3)
    outcomes = [(*p.communicate(timeout=DEADLINE), p.returncode) for p in procs]
    assert all(code == 0 for _, _, code in outcomes), [err for _, err, _ in outcomes]
    assert len(handler.received) == 40
    assert any(json.loads(out)["rate_limited"] for out, _, _ in outcomes)


def test_send_with_several_processes(store: str, server: tuple[RecordingHandler, str], tmp_path: Path) -> None:
    handler, url = server
    sessions, people = populate(store, 400)
    command = [sys.executable, "-m", "digest", "send", "--json", "--processes", "3"]
    done = subprocess.run(command, env=config(tmp_path, store, url), capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sent"] == 400
    assert Counter(r.recipients[0] for r in handler.received) == Counter(dict.fromkeys(people, 1))
    if store.startswith("sqlite"):
        assert "take turns writing" in done.stderr


@pytest.mark.parametrize("how", ["raises", "vanishes"])
def test_a_sender_process_that_dies_is_named_and_the_others_finish(
    server: tuple[RecordingHandler, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """One of the --processes senders dies (an unforeseen exception, or gone without a word): the run reports
    which and why, fails, and the other senders deliver everything, once."""
    from dataclasses import replace as with_values

    from digest.config import load_settings
    from digest.mail.send import senders as senders

    handler, url = server
    sessions, people = populate(f"sqlite:///{tmp_path / 'digest.db'}", 200)
    env = config(tmp_path, f"sqlite:///{tmp_path / 'digest.db'}", url)
    settings = with_values(load_settings(env["DIGEST_CONFIG"], environ={}), smtp_url=url)
    real = senders.deliver_due

    def dies_once(*args: object, **kwargs: object) -> object:
        try:  # the first sender to get here (creating the file is atomic) dies; the others send
            os.close(os.open(tmp_path / "died", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return real(*args, **kwargs)  # type: ignore[arg-type]
        if how == "vanishes":
            os._exit(3)
        raise RuntimeError("the sender broke")

    monkeypatch.setattr(senders, "deliver_due", dies_once)  # the senders are forked: they run this one
    report = senders.send_in_processes(sessions, settings, 3)
    expected = "RuntimeError: the sender broke (exit code 1)" if how == "raises" else "without a report (exit code 3)"
    assert report.error is not None and "of 3 failed: " in report.error and expected in report.error, report.error
    assert report.sent == 200
    assert Counter(r.recipients[0] for r in handler.received) == Counter(dict.fromkeys(people, 1))


def test_migration_moves_frozen_content_into_contents_once(tmp_path: Path) -> None:
    from sqlalchemy import text

    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    ENGINES.append(engine)
    db.upgrade(engine, "0009")
    with engine.begin() as conn:
        for n in range(5):
            conn.execute(
                text(
                    "INSERT INTO subscribers (email, status, bounces, created_at, key) "
                    "VALUES (:e, 'confirmed', 0, '2026-11-01 10:00:00', :k)"
                ),
                {"e": f"r{n}@example.org", "k": f"key{n}"},
            )
            body = '{"period":"p","sections":[]}' if n < 4 else "{}"
            conn.execute(
                text(
                    "INSERT INTO digests (subscriber_id, period, status, message_id, subject, content, "
                    "planned_at, attempts) VALUES (:s, 'p', 'sent', :m, 'x', :c, '2026-11-01 10:00:00', 1)"
                ),
                {"s": n + 1, "m": f"<m{n}@d.test>", "c": body},
            )
    db.upgrade(engine)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM contents")) == 2
        bodies = conn.execute(
            text("SELECT d.id, c.body FROM digests d JOIN contents c ON c.hash = d.content_hash ORDER BY d.id")
        ).all()
    assert [b for _, b in bodies] == ['{"period":"p","sections":[]}'] * 4 + ["{}"]


def test_migration_moves_the_ledger_into_what_each_content_gives(tmp_path: Path) -> None:
    """0011: ledger rows become content_practices, once per distinct content; two digests with the same JSON but
    different practices counted past the cap get contents of their own; each subscriber's ledger reads the same."""
    from sqlalchemy import text

    from digest.store.queries import ledger
    from digest.subscriptions.subscribers import get_subscriber

    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    ENGINES.append(engine)
    db.upgrade(engine, "0010")
    when = "2026-11-01 10:00:00"
    body = '{"period":"p","sections":[]}'
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO themes (name, slug, created_at) VALUES ('Water', 'water', :w)"), {"w": when})
        for n in range(1, 4):
            conn.execute(
                text(
                    "INSERT INTO practices (uid, identity, title, title_derived, summary, first_seen_at, "
                    "updated_at, content_hash) VALUES (:u, :u, :t, 0, 's', :w, :w, 'h')"
                ),
                {"u": f"p{n}", "t": f"Practice {n}", "w": when},
            )
        conn.execute(
            text("INSERT INTO contents (hash, body, created_at) VALUES ('old', :b, :w)"), {"b": body, "w": when}
        )
        # Four digests of one stored content: three gave practices 1 (listed) and 2 (counted), one gave 1 and 3.
        for n, counted in enumerate([2, 2, 2, 3]):
            conn.execute(
                text(
                    "INSERT INTO subscribers (email, status, bounces, created_at, key) "
                    "VALUES (:e, 'confirmed', 0, :w, :k)"
                ),
                {"e": f"r{n}@example.org", "w": when, "k": f"k{n}"},
            )
            conn.execute(
                text(
                    "INSERT INTO digests (subscriber_id, period, status, message_id, subject, content_hash, "
                    "planned_at, attempts) VALUES (:s, 'p', 'sent', :m, 'x', 'old', :w, 1)"
                ),
                {"s": n + 1, "m": f"<m{n}@d.test>", "w": when},
            )
            for practice, summarised in ((1, 0), (counted, 1)):
                conn.execute(
                    text(
                        "INSERT INTO ledger (subscriber_id, practice_id, digest_id, theme_id, summarised) "
                        "VALUES (:s, :p, :s, 1, :m)"
                    ),
                    {"s": n + 1, "p": practice, "m": summarised},
                )
    db.upgrade(engine)
    with engine.connect() as conn:
        tables = set(conn.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table'")))
        contents = conn.execute(text("SELECT hash, body FROM contents ORDER BY hash")).all()
        given = conn.execute(
            text(
                "SELECT content_hash, position, practice_id, summarised FROM content_practices "
                "ORDER BY content_hash, position"
            )
        ).all()
        carried = conn.execute(text("SELECT content_hash, count(*) FROM digests GROUP BY content_hash")).all()
    assert "ledger" not in tables
    assert len(contents) == 2 and {b for _, b in contents} == {body} and "old" not in {h for h, _ in contents}
    assert sorted(n for _, n in carried) == [1, 3]
    assert sorted((p, s) for _, _, p, s in given) == [(1, 0), (1, 0), (2, 1), (3, 1)]
    with db.session_factory(engine)() as session:
        for n, counted in enumerate([2, 2, 2, 3]):
            record = ledger(session, get_subscriber(session, f"r{n}@example.org"))
            assert [(p.uid, p.summarised) for d in record.digests for p in d.practices] == [
                ("p1", False),
                (f"p{counted}", True),
            ]


def test_the_waiting_index_holds_exactly_the_waiting_states() -> None:
    """ix_digests_waiting's predicate is written out in SQL (a query must repeat it word for word to use the
    index): it must name the states store.states calls waiting, no more, no fewer."""
    import re

    from digest.store.models import WAITING_SQL
    from digest.store.states import WAITING

    assert set(re.findall(r"'([a-z]+)'", WAITING_SQL)) == {str(s) for s in WAITING}


def test_a_send_never_scans_the_digests(
    server: tuple[RecordingHandler, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """There is no index on status (each change of state would move a row in it): every query of a send run that
    reads or updates digests must still find them by an index (ids, the waiting index, a subscriber's, the sent),
    never by reading the whole table; SQLite's query plans of every statement the run sends say so."""
    from sqlalchemy import event

    from digest import clock
    from digest.config import Settings
    from digest.mail.send.runs import plan_and_send
    from digest.mail.send.transport import transport_for

    handler, url = server
    database = f"sqlite:///{tmp_path / 'digest.db'}"
    sessions, people = populate(database, 30)
    engine = sessions.kw["bind"]
    seen: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if "digests" in statement and not executemany and not statement.lstrip().upper().startswith("INSERT"):
            seen.append((statement, parameters))

    clock.set_fixed_now(clock.parse_instant(NOW))
    settings = Settings(
        database_url=database,
        smtp_url=url,
        base_url="https://digest.test",
        id_domain="digest.test",
        secret_key="test-secret-0123456789abcdef",
        outbox_dir=str(tmp_path),
        rate_per_hour=1_000_000,  # so that the hourly budget is read too (what went out in the last hour)
    )
    report = plan_and_send(sessions, settings, transport_for(settings))
    assert report.sent == len(people) and len(handler.received) == len(people)
    event.remove(engine, "before_cursor_execute", _capture)
    assert len(seen) > 5 and any("sent_at >=" in statement for statement, _ in seen)
    with engine.connect() as conn:
        for statement, parameters in seen:
            plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            assert not [step for step in plan if step.startswith("SCAN digests") and "INDEX" not in step], (
                statement,
                plan,
            )


def test_recording_sent_goes_in_groups_and_clears_bounces_in_the_same_transaction(store: str) -> None:
    """Accepted messages are recorded `sent` a group at a time (one transaction on the recorder's own
    connection): until the group is full, or its first message has waited `max_age`, or the sender flushes, the
    store still says `sending`; a subscriber's hard-bounce count is cleared in the same transaction; on both
    databases."""
    from digest import clock
    from digest.store.digests import Claimed, SentRecorder

    sessions, _ = populate(store, 6)
    now = clock.now()
    with sessions() as s, s.begin():
        ids = list(s.scalars(select(Subscriber.id).order_by(Subscriber.id)))
        s.add(Content(hash="c" * 64, body="{}", created_at=now))
        s.flush()
        for sid in ids:
            s.add(
                Digest(
                    subscriber_id=sid,
                    period="p",
                    status="sending",
                    message_id=f"<{sid}@d.test>",
                    subject="s",
                    content_hash="c" * 64,
                    planned_at=now,
                    attempts=1,
                    claimed_by="me",
                    claimed_at=now,
                )
            )
        s.execute(update(Subscriber).where(Subscriber.id == ids[1]).values(bounces=2))
    with sessions() as s:
        digests = {d.subscriber_id: d.id for d in s.scalars(select(Digest))}

    def pending(sid: int, bounces: int = 0) -> Claimed:
        return Claimed(digests[sid], sid, "x@example.org", "k", "<m>", "s", "p", "c" * 64, 1, bounces)

    def stored() -> list[tuple[str, str | None, int]]:
        with sessions() as s:
            return [
                (r.status, r.claimed_by, r.bounces)
                for r in s.execute(
                    select(Digest.status, Digest.claimed_by, Subscriber.bounces)
                    .join(Subscriber)
                    .order_by(Subscriber.id)
                )
            ]

    sending, sent = ("sending", "me"), ("sent", None)
    recorder = SentRecorder(sessions.kw["bind"], "me", group=3, max_age=3600)
    try:
        recorder.sent(pending(ids[0]), now)
        recorder.sent(pending(ids[1], bounces=2), now)
        assert recorder.waiting == 2
        assert [r[:2] for r in stored()] == [sending] * 6 and stored()[1][2] == 2  # not yet written
        recorder.sent(pending(ids[2]), now)  # the group is full: all three, and the count cleared with them
        assert recorder.waiting == 0
        assert stored() == [(*sent, 0), (*sent, 0), (*sent, 0), *[(*sending, 0)] * 3]
        recorder.sent(pending(ids[3]), now)
        recorder.flush_if_old()  # younger than max_age: kept
        assert stored()[3][:2] == sending
        recorder.max_age = 0
        recorder.flush_if_old()  # now old enough: written alone
        assert stored()[3][:2] == sent
        recorder.sent(pending(ids[4]), now)
        recorder.flush()  # a sender that claims, waits or stops writes what it holds
        assert [r[:2] for r in stored()] == [sent] * 5 + [sending]
    finally:
        recorder.close()
    with sessions() as s:
        rows = s.execute(select(Digest.sent_at).where(Digest.status == "sent")).all()
        assert len(rows) == 5 and all(r.sent_at == now for r in rows)  # stored as the ORM stores a time
