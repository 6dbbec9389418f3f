"""Promises to subscribers and operators, as a new user tried them: dates in the reader's own timezone, theme names
not slugs, canonical timezones only, honest subjects, the CLI's confirmation mail, hints that say what happens
next, broken feeds that fail, refused links logged, the pages crawlers and browsers ask for."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.config import DEFAULT_SECRET
from digest.logs import JsonFormatter
from digest.store.models import Subscriber
from digest.subscriptions.tokens import Purpose, make_token
from tests.conftest import Cli, RecordingHandler, fixture_path
from tests.feedserver import FeedServer
from tests.webapp import WATER, Web, confirmed, csrf

NOW = "2026-12-01T10:00:00Z"


# Dates in the reader's timezone -------------------------------------------------------------------------------


def test_a_pause_reads_back_as_the_day_chosen_east_of_utc(run_cli: Cli) -> None:
    run_cli("ingest", fixture_path("listing-water.txt"), now=NOW)
    run_cli("subscribe", "bob@example.net", "--theme", WATER, "--confirmed", now=NOW)
    run_cli("subscribers", "set", "bob@example.net", "--timezone", "Europe/Berlin", now=NOW)
    paused = run_cli("subscribers", "set", "bob@example.net", "--pause-until", "2026-12-11", now=NOW)
    assert paused.exit_code == 0, paused.output
    assert "paused until 2026-12-11" in paused.output  # not the UTC instant, a day early
    listed = run_cli("subscribers", "list", now=NOW)
    assert "paused until 2026-12-11" in listed.output and "Europe/Berlin" in listed.output
    # The next one is the first slot on or after that day, said in Berlin time (weekly Monday 08:00).
    assert "next 2026-12-14 08:00" in listed.output
    # Moving to Tokyo keeps the day they chose.
    moved = run_cli("subscribers", "set", "bob@example.net", "--timezone", "Asia/Tokyo", now=NOW)
    assert "paused until 2026-12-11" in moved.output, moved.output


def test_the_manage_page_says_every_date_in_the_readers_timezone(web: Web) -> None:
    manage = confirmed(web, "bob@example.net", WATER)
    client = web.client()
    schedule = {"action": "schedule", "frequency": "weekly", "weekday": "monday", "hour": "8", "timezone": "Asia/Tokyo"}
    assert client.post(manage, data={"csrf_token": csrf(client, manage), **schedule}).status_code == 303
    page = client.get(manage).text
    # Babel's English: "Monday, December 7, 2026 at 8:00 AM".
    assert re.search(r"Next one due Monday, \w+ \d+, 20\d\d at 8:00\u202fAM \(Asia/Tokyo\)", page), page
    answer = client.post(manage, data={"csrf_token": csrf(client, manage), "action": "pause", "until": "2027-01-08"})
    assert answer.status_code == 303
    page = client.get(manage).text
    assert page.count("Friday, January 8, 2027") == 2, page  # the notice and the section agree
    assert "Next one due" not in page  # paused: the next slot is after the pause, not "due"


# Names, zones, subjects, the unsubscribe page ---------------------------------------------------------------


def test_the_confirm_page_names_the_themes(web: Web) -> None:
    client = web.client()
    from tests.webapp import subscribe

    assert subscribe(client, "ada@example.org", WATER)[0] == 303
    page = client.get(web.link("ada@example.org", "/confirm/"))
    assert "<li>Water and Sanitation</li>" in page.text and f"<li>{WATER}</li>" not in page.text


def test_only_canonical_timezones_are_offered_and_accepted(web: Web, run_cli: Cli) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    client = web.client()
    page = client.get(manage).text
    offered = re.findall(r"<option(?: selected)?>([A-Za-z_/+-]+)</option>", page)
    assert {"UTC", "Europe/Paris", "America/Argentina/Buenos_Aires"} <= set(offered)
    assert not {"localtime", "Factory", "US/Eastern", "Asia/Calcutta", "posixrules"} & set(offered)
    assert '<optgroup label="Common">' in page and '<optgroup label="Europe">' in page
    # A zone posted by hand that is not one to choose is refused, not stored.
    form = {
        "csrf_token": csrf(client, manage),
        "action": "schedule",
        "frequency": "daily",
        "hour": "7",
        "timezone": "localtime",
    }
    assert client.post(manage, data=form).status_code == 303
    assert "not an IANA timezone" in client.get(manage).text
    with web.sessions() as session:
        assert session.scalar(select(Subscriber.timezone)) is None

    run_cli("ingest", fixture_path("listing-water.txt"), now=NOW)
    run_cli("subscribe", "bob@example.net", "--theme", WATER, "--confirmed", now=NOW)
    alias = run_cli("subscribers", "set", "bob@example.net", "--timezone", "US/Eastern", now=NOW)
    assert alias.exit_code == 1 and "'US/Eastern' is another name of America/New_York" in alias.output
    local = run_cli("subscribers", "set", "bob@example.net", "--timezone", "localtime", now=NOW)
    assert local.exit_code == 1 and "'localtime' is not an IANA timezone" in local.output


def test_the_unsubscribe_page_names_the_address_and_a_bodyless_post_offers_the_button(web: Web) -> None:
    confirmed(web, "bob@example.net", WATER)
    token = make_token(web.settings.secret_key, Purpose.UNSUBSCRIBE, web.key("bob@example.net"))
    client = web.client()
    page = client.get(f"/unsubscribe/{token}")
    assert "<strong>b…@example.net</strong>" in page.text and "bob@" not in page.text
    bare = client.post(f"/unsubscribe/{token}")
    assert bare.status_code == 400 and "Press the button" in bare.text
    assert 'type="submit">Unsubscribe</button>' in bare.text  # the button it speaks of is on the page
    assert web.status("bob@example.net") == "confirmed"


# The CLI's confirmation mail ----------------------------------------------------------------------------------


def test_a_cli_subscription_gets_the_confirmation_mail_and_can_be_confirmed(
    run_cli: Cli, smtp_server: tuple[RecordingHandler, str]
) -> None:
    handler, url = smtp_server
    run_cli("ingest", fixture_path("listing-water.txt"), now=NOW)
    done = run_cli("subscribe", "ada@example.org", "--theme", WATER, DIGEST_SMTP_URL=url, now=NOW)
    assert done.exit_code == 0 and "confirmation mail sent" in done.output, done.output
    (mail,) = handler.to("ada@example.org")
    assert mail.message["Subject"] == "Confirm your practice digest subscription"
    body = mail.message.get_body(("plain",))
    assert body is not None and "https://digest.test/confirm/" in body.get_content()
    assert "Water and Sanitation" in body.get_content()
    listed = run_cli("subscribers", "list", now=NOW)
    assert "awaiting confirmation" in listed.output and "next at the next run" not in listed.output

    again = run_cli("subscribers", "resend-confirmation", "ada@example.org", DIGEST_SMTP_URL=url, now=NOW)
    assert again.exit_code == 0 and len(handler.to("ada@example.org")) == 2
    assert run_cli("subscribers", "confirm", "ada@example.org", now=NOW).exit_code == 0
    assert "confirmed" in run_cli("subscribers", "list", now=NOW).output
    refused = run_cli("subscribers", "resend-confirmation", "ada@example.org", DIGEST_SMTP_URL=url, now=NOW)
    assert refused.exit_code == 1 and "not awaiting confirmation" in refused.output


# Hints that say what happens next, and sources that fail when they give nothing -----------------------------


def test_a_failed_url_says_whether_anything_tries_it_again(run_cli: Cli, feed_server: FeedServer) -> None:
    missing = feed_server.url("/missing.atom")
    adhoc = run_cli("ingest", missing, now=NOW)
    assert adhoc.exit_code == 1
    assert "not a configured source, so nothing retries it" in adhoc.output
    assert "next run" not in adhoc.output
    run_cli.config.write_text(run_cli.config.read_text() + f'\n[[sources]]\nurl = "{missing}"\n', encoding="utf-8")
    configured = run_cli("ingest", now=NOW)
    assert configured.exit_code == 1 and "read again by the next run" in configured.output


@pytest.mark.parametrize(
    ("document", "fault"),
    [
        (
            '<rss version="2.0"><channel><title>Water &nbsp;</title><link>https://x.test/</link></channel></rss>',
            "undefined entity",
        ),
        (
            '<feed xmlns="http://www.w3.org/2005/Atom"><title>W</title><x:entry><title>T</title>'
            '<link href="https://x.test/1"/></x:entry></feed>',
            "unbound prefix",
        ),
        ('<rss version="2.0"><channel><title>W</title><itm><title>T</title></item></channel></rss>', "mismatched tag"),
    ],
    ids=["undefined entity", "unbound prefix", "mismatched tag"],
)
def test_a_broken_feed_that_gives_nothing_fails(run_cli: Cli, tmp_path: Path, document: str, fault: str) -> None:
    """Complete documents (they end with their root's end tag) with one XML fault, from which a lenient reading gets
    no entry: the source is broken, not empty, and the command fails naming the fault (a cron job notices)."""
    feed = tmp_path / "broken.xml"
    feed.write_text(f'<?xml version="1.0"?>{document}\n', encoding="utf-8")
    done = run_cli("ingest", str(feed), now=NOW)
    assert done.exit_code == 1, done.output
    assert "not well-formed XML" in done.output and fault in done.output and "no entry could be read" in done.output


def test_a_broken_feed_that_still_gives_entries_is_read_leniently(run_cli: Cli, tmp_path: Path) -> None:
    feed = tmp_path / "lenient.xml"
    feed.write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>W</title><item><title>A &bogus; B'
        "</title><link>https://x.test/1</link></item></channel></rss>\n",
        encoding="utf-8",
    )
    done = run_cli("ingest", str(feed), now=NOW)
    assert done.exit_code == 0 and "1 new" in done.output and "read leniently" in done.output, done.output


# Links signed with another secret -----------------------------------------------------------------------------


def test_a_refused_link_is_logged_with_its_reason_and_the_page_blames_nobody(
    web: Web, caplog: pytest.LogCaptureFixture
) -> None:
    confirmed(web, "ada@example.org", WATER)
    key = web.key("ada@example.org")
    other_key = make_token(DEFAULT_SECRET, Purpose.MANAGE, key)
    other_page = make_token(web.settings.secret_key, Purpose.UNSUBSCRIBE, key)
    client = web.client()
    with caplog.at_level(logging.INFO):
        page = client.get(f"/manage/{other_key}")
        # From another client: one client's refusals within a minute are counted into one more line.
        assert client.get(f"/manage/{other_page}", environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 404
    assert page.status_code == 404 and "cut short or changed" not in page.text
    assert "newest digest" in page.text
    lines = [JsonFormatter().format(r) for r in caplog.records if r.getMessage() == "web.link_refused"]
    assert len(lines) == 2, lines
    assert '"reason": "bad signature: altered, cut short, or signed with another secret_key"' in lines[0]
    assert '"reason": "a link for another page (unsubscribe)"' in lines[1]
    assert all('"route": "/manage/<token>"' in line and other_key not in line for line in lines)


# What browsers and crawlers ask for -------------------------------------------------------------------------


def test_favicon_robots_and_descriptions(web: Web) -> None:
    client = web.client()
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.data[:4] == b"\x00\x00\x01\x00"  # an ICO
    robots = client.get("/robots.txt")
    assert robots.status_code == 200 and robots.mimetype == "text/plain"
    for path in ("/confirm/", "/manage/", "/unsubscribe/", "/digests/", "/feeds/me/"):
        assert f"Disallow: {path}" in robots.text
    home = client.get("/").text
    assert re.search(r'<meta name="description" content="[^"]{50,}">', home)
    theme = client.get(f"/themes/{WATER}").text
    assert '<meta name="description" content="New practices in Water and Sanitation' in theme
    manage = confirmed(web, "ada@example.org", WATER)
    assert '<meta name="robots" content="noindex, nofollow">' in client.get(manage).text


def test_make_run_says_what_happened(run_cli: Cli) -> None:
    """A run with nothing to send does not say digests were written."""
    done = run_cli("run", "--once", "--json", now=NOW)
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["send"]["sent"] == 0
    plain = run_cli("run", "--once", now=NOW)
    assert "0 sent" in plain.output and "open one with any mail client" not in plain.output
