"""What a probe of attacks and faults found, kept so the next probe starts where this one ended (`make probe` runs
these with the kill, proxy, bounce and store-outage tests): dates out of the calendar, tokens in logs, everything
kept about a person in their download, erase leaving nothing, settings that must be refused at load."""

from __future__ import annotations

import json
import logging
import mailbox
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest import clock
from digest.config import SourceConfig, load_settings
from digest.errors import ConfigError
from digest.ingest import ingest_sources
from digest.logs import JsonFormatter
from digest.mail.build.verp import return_path
from digest.mail.replies.bounces import read_bounces
from digest.mail.send.resend import resend
from digest.mail.send.transport import transport_for
from digest.store.models import Base, Digest, RateWindow, Subscriber
from digest.subscriptions.tokens import Purpose, make_token
from digest.web import limits
from tests.conftest import Cli, at, fixture_path
from tests.test_mail_quality import dsn
from tests.webapp import WATER, Web, confirmed, csrf, subscribe

pytestmark = pytest.mark.probe


# Dates out of the calendar -----------------------------------------------------------------------------------


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "2028-01-01"])
def test_a_pause_out_of_bounds_is_one_line_in_the_cli(run_cli: Cli, day: str) -> None:
    run_cli("ingest", str(Path(__file__).parent / "fixtures" / "listing-water.txt"), now="2026-11-10T10:00:00Z")
    run_cli("subscribe", "ada@example.org", "--theme", WATER, "--confirmed", "--timezone", "Europe/Berlin")
    done = run_cli("subscribers", "set", "ada@example.org", "--pause-until", day, now="2026-11-10T10:00:00Z")
    assert done.exit_code == 1 and "Traceback" not in done.output
    lines = done.output.splitlines()
    assert lines[0].startswith(f"error: pause until {day}") and lines[1].startswith("hint: "), lines


def test_a_pause_out_of_bounds_on_the_page_says_why(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    client = web.client()
    for day in ("9999-12-31", "0001-01-01"):
        answer = client.post(manage, data={"csrf_token": csrf(client, manage), "action": "pause", "until": day})
        assert answer.status_code == 303
        page = client.get(manage)
        assert f"pause until {day}" in page.text and page.status_code == 200
    with web.sessions() as session:
        assert session.scalar(select(Subscriber.paused_until)) is None


# Tokens never reach a log line -------------------------------------------------------------------------------


def test_a_crash_under_a_token_url_is_logged_by_route_without_the_token(
    web: Web, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from digest.subscriptions import subscribers

    manage = confirmed(web, "ada@example.org", WATER)
    token = manage.rsplit("/", 1)[1]

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(subscribers, "pause", broken)
    client = web.client()
    with caplog.at_level(logging.INFO):
        form = {"csrf_token": csrf(client, manage), "action": "pause", "until": "2027-01-01"}
        answer = client.post(manage, data=form)
        assert client.get("/unsubscribe/" + token + "x").status_code == 404
    assert answer.status_code == 500 and token not in answer.text
    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert any('"web.crashed"' in line and '"route": "/manage/<token>"' in line for line in lines), lines
    assert lines and not any(token in line for line in lines), lines


# Everything kept about a person, and nothing after erase -----------------------------------------------------

# Columns about the store rather than the person: row ids and the keys that join rows, the key their links are
# signed for, a subscription's position in the store's order, which content row a digest points at (its practices
# are listed instead), which sender process held it, and a bounce report's dedup hash.
NOT_EXPORTED = {
    # The keys its links name (secrets, like the links themselves; the manage page shows the feed link).
    "subscribers": {"id", "key", "feed_key"},
    "subscriptions": {"id", "subscriber_id", "theme_id", "cursor"},
    "digests": {"id", "subscriber_id", "content_hash", "claimed_by"},
    "resends": {"id", "digest_id"},
    "bounces": {"id", "subscriber_id", "digest_id", "source"},
}


def _leaves(value: object) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_leaves(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_leaves(v) for v in value)) if value else set()
    return {str(value)} if value is not None else set()


def _rows_about(session: Session, subscriber_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table that names the subscriber, directly or through one of their digests."""
    digests = list(session.scalars(select(Digest.id).where(Digest.subscriber_id == subscriber_id)))
    found: dict[str, list[dict[str, Any]]] = {}
    for table in Base.metadata.sorted_tables:
        if table.name == "subscribers":
            condition = table.c.id == subscriber_id
        elif "subscriber_id" in table.c:
            condition = table.c.subscriber_id == subscriber_id
        elif any(fk.column.table.name == "digests" for fk in table.foreign_keys):
            (fk,) = [fk for fk in table.foreign_keys if fk.column.table.name == "digests"]
            condition = fk.parent.in_(digests)
        else:
            continue
        found[table.name] = [dict(row._mapping) for row in session.execute(select(table).where(condition))]
    return found


def test_the_download_holds_every_stored_fact_about_a_suppressed_person(web: Web, tmp_path: Path) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    at("2026-11-16T09:00:00Z")
    assert all(
        r.ok for r in ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    )
    web.send()
    resend(web.sessions, web.settings, transport_for(web.settings), "ada@example.org", None)
    with web.sessions() as session:
        digest_id, message_id = session.execute(select(Digest.id, Digest.message_id)).one()
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(
        dsn(
            return_path(web.settings, digest_id),
            "ada@example.org",
            "failed",
            "5.1.1",
            message_id,
            "550 5.1.1 mailbox gone",
        )
    )
    box.close()
    read_bounces(web.sessions, web.settings, tmp_path / "bounces", clock.now())
    clock.set_fixed_now(None)
    assert web.status("ada@example.org") == "suppressed"

    data = json.loads(web.client().get(manage + "/data.json").data)
    leaves = _leaves(data)
    with web.sessions() as session:
        subscriber_id = session.scalars(select(Subscriber.id)).one()
        rows = _rows_about(session, subscriber_id)
    assert set(rows) >= {"subscribers", "subscriptions", "digests", "resends", "bounces"}, set(rows)
    missing = []
    for table, found in rows.items():
        assert found, f"no {table} row: the test does not cover that table"
        for row in found:
            for column, value in row.items():
                if value is None or column in NOT_EXPORTED.get(table, set()):
                    continue
                shown = value.isoformat() if isinstance(value, datetime) else str(value)
                if shown not in leaves:
                    missing.append(f"{table}.{column} = {shown!r}")
    assert not missing, missing


def test_erase_leaves_no_counter_and_its_page_is_private(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    client = web.client()
    assert subscribe(client, "ada@example.org", WATER)[0] == 303  # counted against the address's bucket
    bucket = limits.bucket(web.settings, "address", "ada@example.org")
    with web.sessions() as session:
        assert session.scalar(select(RateWindow.hits).where(RateWindow.bucket == bucket))
    erased = client.post(manage + "/erase", data={"csrf_token": csrf(client, manage), "confirm": "yes"})
    assert erased.status_code == 200 and "Erased" in erased.text
    assert erased.headers["Cache-Control"] == "no-store" and "noindex" in erased.headers["X-Robots-Tag"]
    with web.sessions() as session:
        assert session.scalar(select(RateWindow.hits).where(RateWindow.bucket == bucket)) is None


# Settings refused at load, not when first used ---------------------------------------------------------------


def test_a_number_in_quotes_is_refused_with_the_fix(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('batch_size = "500"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, environ={})
    assert f"batch_size (from {config}): '500' is text, not a number" in str(refused.value)
    assert "batch_size = 500" in refused.value.hint
    assert load_settings(None, environ={"DIGEST_BATCH_SIZE": "500"}).batch_size == 500  # a variable is always text


def test_a_feeds_dir_that_cannot_be_written_is_refused_at_load(tmp_path: Path) -> None:
    # /sys: the permission bits say root may write; the kernel says no. Only trying tells.
    with pytest.raises(ConfigError) as refused:
        load_settings(None, environ={"DIGEST_FEEDS_DIR": "/sys/digest-feeds"})
    assert "feeds_dir" in str(refused.value) and "cannot write in /sys" in str(refused.value)


def test_token_expiry_follows_digest_now() -> None:
    """DIGEST_NOW moves a link's age like every other time (so expiry can be replayed)."""
    at("2026-11-10T10:00:00Z")
    token = make_token("test-secret-0123456789abcdef", Purpose.CONFIRM, "k")
    from digest.subscriptions.tokens import TokenError, read_token

    at("2026-11-12T09:00:00Z")
    assert read_token("test-secret-0123456789abcdef", token, Purpose.CONFIRM, 72 * 3600) == "k"
    at("2026-11-13T10:00:01Z")
    with pytest.raises(TokenError) as expired:
        read_token("test-secret-0123456789abcdef", token, Purpose.CONFIRM, 72 * 3600)
    assert expired.value.expired
