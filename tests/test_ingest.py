"""Storing ingested items: one practice per identity, memberships per theme, reports, no loss on bad input."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from digest.clock import now
from digest.config import SourceConfig
from digest.ingest import ingest_sources
from digest.store.models import Membership, Practice, Theme
from tests.conftest import SAMPLES_ABSENT, SHARED_SAMPLES, fixture_path


def count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_one_practice_in_two_themes(sessions: sessionmaker[Session]) -> None:
    reports = ingest_sources(
        sessions,
        [SourceConfig(fixture_path("listing-water.txt")), SourceConfig(fixture_path("listing-goal6.txt"))],
        now(),
    )
    assert [r.error for r in reports] == [None, None]
    assert (reports[0].new, reports[1].new, reports[1].unchanged, reports[1].joined) == (5, 2, 1, 1)
    assert count(sessions, Practice) == 7
    with sessions() as s:
        kiosk = s.scalar(select(Practice).where(Practice.title.like("Community Water Kiosks%")))
        assert kiosk is not None
        assert sorted(m.theme.slug for m in kiosk.memberships) == [
            "goal-6-clean-water-and-sanitation",
            "water-and-sanitation",
        ]


def test_reingest_changes_nothing(sessions: sessionmaker[Session]) -> None:
    sources = [SourceConfig(fixture_path("listing-water.txt")), SourceConfig(fixture_path("listing-goal6.txt"))]
    ingest_sources(sessions, sources, now())
    memberships = count(sessions, Membership)
    again = ingest_sources(sessions, sources, now())
    assert [(r.new, r.updated, r.joined) for r in again] == [(0, 0, 0), (0, 0, 0)]
    assert [r.unchanged for r in again] == [5, 3]
    assert count(sessions, Membership) == memberships


def test_changed_text_updates_without_new_membership(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    original = Path(fixture_path("listing-water.txt")).read_text(encoding="utf-8")
    ingest_sources(sessions, [SourceConfig(fixture_path("listing-water.txt"))], now())
    edited = tmp_path / "water.txt"
    # Same title and first paragraph (the identity), a changed second paragraph.
    edited.write_text(original.replace("basic plumbing and bookkeeping", "plumbing, bookkeeping and first aid"))
    (report,) = ingest_sources(sessions, [SourceConfig(str(edited))], now())
    assert (report.new, report.updated, report.unchanged) == (0, 1, 4)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Practice).where(Practice.summary.like("%first aid%"))) == 1
    assert count(sessions, Membership) == 5


def test_theme_override_and_missing_theme(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    text = Path(fixture_path("listing-water.txt")).read_text(encoding="utf-8")
    bare = tmp_path / "bare.txt"
    bare.write_text(text.replace("Subscribe to Water and Sanitation", ""), encoding="utf-8")
    (failed,) = ingest_sources(sessions, [SourceConfig(str(bare))], now())
    assert failed.error and "bare.txt" in failed.error and "no theme" in failed.error
    assert "--theme" in failed.hint
    assert count(sessions, Practice) == 0  # the failed source's transaction stored nothing
    (ok,) = ingest_sources(sessions, [SourceConfig(str(bare), "Drinking Water")], now())
    assert ok.themes == ["Drinking Water"] and ok.new == 5


def test_bad_source_stops_no_other_and_loses_nothing(sessions: sessionmaker[Session]) -> None:
    ingest_sources(sessions, [SourceConfig(fixture_path("listing-goal6.txt"))], now())
    before = count(sessions, Practice)
    reports = ingest_sources(
        sessions,
        [
            SourceConfig(fixture_path("undecodable.txt")),
            SourceConfig(fixture_path("missing.txt")),
            SourceConfig(fixture_path("listing-water.txt")),
        ],
        now(),
    )
    assert reports[0].error and "undecodable.txt" in reports[0].error
    assert reports[1].error and "missing.txt" in reports[1].error and "cannot read" in reports[1].error
    assert reports[2].ok and reports[2].new == 4
    assert count(sessions, Practice) == before + 4


def test_duplicate_identity_with_other_text_in_one_source_is_reported(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    block = "Same Title\n\nSubmitted by A on\n\nSame first paragraph.\n\n{extra}\n\n"
    path = tmp_path / "dup.txt"
    path.write_text(block.format(extra="One ending.") + block.format(extra="Other ending.") + "Subscribe to T\n")
    (report,) = ingest_sources(sessions, [SourceConfig(str(path))], now())
    assert report.new == 1
    assert any("same identity" in p.reason for p in report.problems)


def test_hostile_text_is_stored_as_text(sessions: sessionmaker[Session]) -> None:
    (report,) = ingest_sources(sessions, [SourceConfig(fixture_path("listing-hostile.txt"))], now())
    assert report.new == 1
    with sessions() as s:
        practice = s.scalar(select(Practice))
        assert practice is not None and practice.title.startswith("<script>")


def test_real_samples_give_fifteen_practices(sessions: sessionmaker[Session]) -> None:
    import pytest

    if not SHARED_SAMPLES.is_dir():
        pytest.skip(SAMPLES_ABSENT)
    sources = [SourceConfig(str(p)) for p in sorted(SHARED_SAMPLES.glob("*.txt"))]
    ingest_sources(sessions, sources, now())
    assert count(sessions, Practice) == 15
    assert count(sessions, Theme) == 2
    with sessions() as s:
        terrassa = s.scalars(select(Practice).where(Practice.title.like("%Terrassa%"))).all()
        assert len(terrassa) == 1 and len(terrassa[0].memberships) == 2
        assert all(p.title for p in s.scalars(select(Practice)))
    again = ingest_sources(sessions, sources, now())
    assert sum(r.new + r.updated + r.joined for r in again) == 0


def test_migration_keeps_stored_practices_findable(tmp_path: Path) -> None:
    """A practice stored before practice keys existed (schema 0001) is found again by the identity of its uid."""
    from digest.ingest import read_source
    from digest.ingest.merge import identity_of, key_of
    from digest.store import db

    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    db.upgrade(engine, "0001")
    kiosk = read_source(fixture_path("listing-water.txt")).items[0]
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO practices (uid, identity, title, title_derived, summary, first_seen_at, updated_at,"
            " content_hash) VALUES (?, ?, ?, 0, ?, '2026-11-01 10:00:00', '2026-11-01 10:00:00', 'old')",
            (key_of(identity_of(kiosk)), identity_of(kiosk), kiosk.title, kiosk.summary),
        )
    db.upgrade(engine)
    (report,) = ingest_sources(db.session_factory(engine), [SourceConfig(fixture_path("listing-water.txt"))], now())
    assert (report.new, report.updated) == (4, 1)  # the old row is updated (its hash was 'old'), not duplicated
    engine.dispose()
