"""The same store on a real PostgreSQL: migrations, aware timestamps, and a full ingest-plan-send cycle.

Each test creates its own database with a random name on 127.0.0.1:5432 and drops it afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings, SourceConfig
from digest.ingest import ingest_sources
from digest.mail.send.runs import plan_and_send
from digest.mail.send.transport import transport_for
from digest.store import db
from digest.store.digests import Planned, store_planned
from digest.store.models import ContentPractice, Digest, Practice
from digest.subscriptions.subscribers import subscribe
from tests.conftest import RecordingHandler, at, fixture_path


@pytest.fixture
def pg_sessions(pg_url: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(pg_url)
    db.upgrade(engine)
    yield db.session_factory(engine)
    engine.dispose()


def test_migrations_reach_head_and_are_idempotent(pg_url: str) -> None:
    engine = db.make_engine(pg_url)
    db.upgrade(engine)
    assert db.schema_is_current(engine)
    db.upgrade(engine)  # a second run changes nothing and does not fail
    with engine.connect() as conn:
        tables = set(conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")))
    assert {"themes", "practices", "subscribers", "digests", "contents", "content_practices"} <= tables
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migrations_build_the_schema_the_models_describe(backend: str, pg_url: str, tmp_path: Path) -> None:
    """Tables, columns, keys, indexes and constraints: what Alembic would generate from the models is nothing."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from digest.store.models import Base

    engine = db.make_engine(pg_url if backend == "postgresql" else f"sqlite:///{tmp_path / 'schema.db'}")
    db.upgrade(engine)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert differences == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_whether_the_schema_is_current_is_read_without_alembic(backend: str, pg_url: str, tmp_path: Path) -> None:
    """Every command asks; the answer comes from alembic_version and the newest migration's file name, which must
    be alembic's own head: no for a new database and for one a migration behind, yes at the head."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", db.MIGRATIONS)
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [db.head_revision()]
    engine = db.make_engine(pg_url if backend == "postgresql" else f"sqlite:///{tmp_path / 'current.db'}")
    assert not db.schema_is_current(engine)  # new: no alembic_version table
    previous = script.get_revision(db.head_revision()).down_revision
    assert isinstance(previous, str)
    db.upgrade(engine, previous)
    assert not db.schema_is_current(engine)
    db.upgrade(engine)
    assert db.schema_is_current(engine)
    engine.dispose()


def test_full_cycle_on_postgres(
    pg_url: str,
    pg_sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: tuple[RecordingHandler, str],
) -> None:
    handler, smtp_url = smtp_server
    pg_settings = replace(settings, database_url=pg_url, smtp_url=smtp_url)
    at("2026-11-09T10:00:00Z")
    ingest_sources(pg_sessions, [SourceConfig(fixture_path("listing-goal6.txt"))], at("2026-11-09T10:00:00Z"))
    with db.transaction(pg_sessions) as s:
        subscribe(s, "ada@example.org", ["goal-6-clean-water-and-sanitation"], at("2026-11-10T10:00:00Z"), True)
    now = at("2026-11-11T10:00:00Z")
    reports = ingest_sources(
        pg_sessions,
        [SourceConfig(fixture_path("listing-water.txt")), SourceConfig(fixture_path("listing-goal6.txt"))],
        now,
    )
    assert [(r.new, r.joined) for r in reports] == [(4, 1), (0, 0)]
    at("2026-11-16T09:00:00Z")
    report = plan_and_send(pg_sessions, pg_settings, transport_for(pg_settings))
    assert (report.planned, report.sent) == (0, 0)  # the kiosk joined Water, not Goal 6: nothing new for ada
    with db.transaction(pg_sessions) as s:
        subscribe(s, "ada@example.org", ["water-and-sanitation"], at("2026-11-16T09:30:00Z"))
    at("2026-11-18T10:00:00Z")
    ingest_sources(pg_sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], at("2026-11-18T10:00:00Z"))
    at("2026-11-23T09:00:00Z")
    report = plan_and_send(pg_sessions, pg_settings, transport_for(pg_settings))
    assert (report.planned, report.sent) == (1, 1)
    (received,) = handler.received
    assert "Greywater Reuse in Jordanian Mosques" in received.message.get_body(("plain",)).get_content()
    with pg_sessions() as s:
        digest = s.scalar(select(Digest))
        assert digest is not None and digest.status == "sent"
        assert digest.sent_at is not None and digest.sent_at.utcoffset() is not None
        assert digest.sent_at.isoformat() == "2026-11-23T09:00:00+00:00"
        assert len(s.scalars(select(ContentPractice)).all()) == 1
        practice = s.scalar(select(Practice).where(Practice.title.like("Menstrual%")))
        assert practice is not None and "Zoë Müller" in practice.summary


def test_four_senders_at_once_each_digest_planned_and_sent_once(
    pg_url: str, tmp_path: Path, smtp_server: tuple[RecordingHandler, str]
) -> None:
    """Four `digest send` processes started together on one PostgreSQL database: all exit 0, and each of 300
    subscribers gets exactly one digest (planning claims rows with SKIP LOCKED and ignores conflicts; sending
    claims each digest with a guarded UPDATE)."""

    from sqlalchemy import func, insert

    from digest.store.models import Subscriber, Subscription, Theme

    handler, url = smtp_server
    engine = db.make_engine(pg_url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    at("2026-11-09T10:00:00Z")
    ingest_sources(sessions, [SourceConfig(fixture_path("listing-water.txt"))], at("2026-11-09T10:00:00Z"))
    people = [f"reader{n}@example.org" for n in range(300)]
    with sessions() as s, s.begin():
        (theme_id,) = s.scalars(select(Theme.id)).all()
        s.execute(
            insert(Subscriber),
            [
                {
                    "email": e,
                    "status": "confirmed",
                    "created_at": at("2026-11-10T10:00:00Z"),
                    "confirmed_at": at("2026-11-10T10:00:00Z"),
                }
                for e in people
            ],
        )
        ids = list(s.scalars(select(Subscriber.id)))
        s.execute(
            insert(Subscription),
            [
                {"subscriber_id": i, "theme_id": theme_id, "cursor": 0, "created_at": at("2026-11-10T10:00:00Z")}
                for i in ids
            ],
        )
    from tests.test_scale import config, senders  # the same settings and processes as the scale tests

    procs = senders(config(tmp_path, pg_url, url, batch_size=20), 4)
    outcomes = [(*p.communicate(timeout=300), p.returncode) for p in procs]
    for _, err, code in outcomes:
        assert code == 0 and "Traceback" not in err, err
    planned = [json.loads(out)["planned"] for out, _, _ in outcomes]
    sent = [json.loads(out)["sent"] for out, _, _ in outcomes]
    assert sum(planned) == 300 and sum(sent) == 300, (planned, sent)
    assert [len(handler.to(p)) for p in people] == [1] * 300
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Digest)) == 300
        # Each digest counted once in the sent tally, by four senders' statements at once (and no claim counted).
        assert s.scalar(text("SELECT n FROM tallies WHERE name = 'sent'")) == 300
    engine.dispose()


def plan_digests(sessions: sessionmaker[Session], subjects: list[str]) -> list[Planned]:
    """A confirmed subscriber for each subject and a digest planned for each (store_planned, one batch, one
    content); the Planned rows, in order."""
    from digest.store.models import Subscriber
    from digest.store.states import SubscriberStatus

    now = at("2026-11-16T09:00:00Z")
    with db.transaction(sessions) as s:
        people = [
            Subscriber(email=f"r{n}@example.org", status=SubscriberStatus.CONFIRMED, created_at=now)
            for n in range(len(subjects))
        ]
        s.add_all(people)
        s.flush()
        planned = [
            Planned(p.id, "2026-11-16", f"<2026-11-16.{p.id}@digest.test>", subject, "h" * 64)
            for p, subject in zip(people, subjects, strict=True)
        ]
        assert store_planned(s, {"h" * 64: ("{}", [])}, planned, now) == len(subjects)
    return planned


def test_the_sent_tally_counts_digests_that_become_sent_whatever_the_statement(
    pg_sessions: sessionmaker[Session],
) -> None:
    """One statement marking several digests sent counts each once; digests already sent, updated again, and
    digests moved to any other state count nothing; a rolled-back statement counts nothing."""
    plan_digests(pg_sessions, ["s"] * 5)

    def tally() -> int:
        with pg_sessions() as s:
            return int(s.scalar(text("SELECT n FROM tallies WHERE name = 'sent'")) or 0)

    def update(sql: str) -> None:
        with db.transaction(pg_sessions) as s:
            s.execute(text(sql))

    assert tally() == 0
    update("UPDATE digests SET status = 'sending'")  # a claim
    assert tally() == 0
    update("UPDATE digests SET status = 'sent' WHERE subscriber_id IN (SELECT id FROM subscribers ORDER BY id LIMIT 3)")
    assert tally() == 3
    update("UPDATE digests SET status = 'sent'")  # three already sent, two become so
    assert tally() == 5
    update("UPDATE digests SET subject = 'again'")
    assert tally() == 5
    with pytest.raises(RuntimeError), db.transaction(pg_sessions) as s:
        s.execute(text("UPDATE digests SET status = 'deferred'"))
        s.execute(text("UPDATE digests SET status = 'sent'"))
        raise RuntimeError("rolled back")
    assert tally() == 5


def test_a_claim_walks_the_waiting_digests_in_order_whatever_the_statistics_say(pg_url: str) -> None:
    """Statistics taken while the table was empty, then 20,000 digests planned (as in a big run before autovacuum
    comes by): the claim still walks ix_digests_waiting in id order and stops at its limit, never reading every
    waiting digest through a bitmap and sorting them (40-90 ms a claim at 50k)."""
    from datetime import UTC, datetime, timedelta

    from digest.store.digests import _WALK, _claiming, claim

    engine = db.make_engine(pg_url)
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (email, key, feed_key, status, created_at, confirmed_at, bounces) "
                "VALUES ('ada@example.org', 'k', 'f', 'confirmed', now(), now(), 0)"
            )
        )
        conn.execute(text("INSERT INTO contents (hash, body, created_at) VALUES ('h', '{}', now())"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO digests (subscriber_id, period, message_id, subject, content_hash, status, planned_at, "
                "attempts) SELECT 1, 'p' || n, '<' || n || '@x>', 's', 'h', 'planned', now(), 0 "
                "FROM generate_series(1, 20000) AS n"
            )
        )
    now = datetime.now(UTC)
    values = {"now": now, "stale_before": now - timedelta(minutes=10), "max_attempts": 6, "limit": 100, "holder": "h"}
    compiled = _claiming(True, False).compile(dialect=engine.dialect)
    with engine.begin() as conn:
        conn.execute(_WALK)
        plan = "\n".join(
            row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.construct_params(values))
        )
    assert "Index Scan using ix_digests_waiting" in plan, plan
    assert "Bitmap" not in plan and "Sort" not in plan, plan
    claimed = claim(engine, "h", now, 100, timedelta(minutes=10), [], 6)
    assert [c.id for c in claimed] == list(range(1, 101))
    engine.dispose()


def test_planned_digests_keep_every_character_of_their_subjects(pg_sessions: sessionmaker[Session]) -> None:
    """Planning writes a batch's texts to PostgreSQL as binary arrays: quotes, backslashes, commas, braces, the
    word NULL, spaces at the ends and any script come back as they went in."""
    now = at("2026-11-16T09:00:00Z")
    subjects = ['Water "kiosks", {pipes}', "a\\b\\\\c", "NULL", " edges ", "Zoë & Łódź — 水と衛生", "", "x,y}{"]
    planned = plan_digests(pg_sessions, subjects)
    with db.transaction(pg_sessions) as s:
        again = store_planned(s, {"h" * 64: ("{}", [])}, planned[:2], now)
        assert again == 0  # a slot already planned is passed over, never an error
    with pg_sessions() as s:
        stored = s.execute(select(Digest.subscriber_id, Digest.subject, Digest.message_id, Digest.planned_at)).all()
    assert sorted((r[0], r[1], r[2]) for r in stored) == sorted((p[0], p[3], p[2]) for p in planned)
    assert {r[3] for r in stored} == {now}
