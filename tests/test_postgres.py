"""The same store on a real PostgreSQL: migrations, aware timestamps, and a full ingest-plan-send cycle.

Each test creates its own database with a random name on 127.0.0.1:5432 and drops it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings, SourceConfig
from digest.ingest import ingest_sources
from digest.mail.send import plan_and_send
from digest.mail.transport import transport_for
from digest.store import db
from digest.store.models import Digest, LedgerEntry, Practice
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
    assert {"themes", "practices", "memberships", "subscribers", "subscriptions", "digests", "ledger"} <= tables
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
        assert len(s.scalars(select(LedgerEntry)).all()) == 1
        practice = s.scalar(select(Practice).where(Practice.title.like("Menstrual%")))
        assert practice is not None and "Zoë Müller" in practice.summary
