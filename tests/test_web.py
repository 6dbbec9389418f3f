"""The web app in-process (Flask's test client) on a real store and a real SMTP server on loopback."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import func, select

from digest import clock
from digest.config import DEFAULT_SECRET, SourceConfig
from digest.errors import ConfigError
from digest.ingest import ingest_sources
from digest.mail.send.transport import transport_for
from digest.store.models import Digest, Erasure, Subscriber, Subscription
from digest.subscriptions.tokens import Purpose, make_token
from digest.web import create_app
from tests.conftest import at, fixture_path
from tests.webapp import BASE, GOAL6, WATER, Web, confirmed, csrf, subscribe

# Double opt-in -----------------------------------------------------------------------------------------------


def test_subscribe_sends_one_confirmation_and_nothing_else_until_a_button_is_pressed(web: Web) -> None:
    client = web.client()
    assert subscribe(client, "Ada@Example.org", WATER, GOAL6) == (303, "/subscribe/sent")
    (mail,) = web.mails_to("ada@example.org")
    assert mail["Subject"] == "Confirm your practice digest subscription"
    assert mail["List-Unsubscribe"] is None and mail["Precedence"] is None  # a notice, not bulk mail
    body = mail.get_body(("plain",))
    assert body is not None and "* Goal 6: Clean water and sanitation\r\n  * Water and Sanitation" in body.get_content()
    assert web.status("ada@example.org") == "pending"

    at("2026-11-16T09:00:00Z")
    web.send()
    assert len(web.mails_to("ada@example.org")) == 1, "an unconfirmed address got more than its confirmation"
    clock.set_fixed_now(None)

    confirm = web.link("ada@example.org", "/confirm/")
    page = client.get(confirm)  # what a link scanner does
    assert page.status_code == 200 and "Confirm my subscription" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert web.status("ada@example.org") == "pending"

    done = client.post(confirm, data={"csrf_token": csrf(client, confirm)})
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert web.status("ada@example.org") == "confirmed"
    assert web.themes("ada@example.org") == {WATER, GOAL6}


def test_the_answer_is_the_same_whether_the_address_is_known_or_not(web: Web) -> None:
    confirmed(web, "known@example.org", WATER)
    known = subscribe(web.client(), "known@example.org", GOAL6)
    unknown = subscribe(web.client(), "stranger@example.org", GOAL6)
    assert known == unknown == (303, "/subscribe/sent")
    assert web.client().get(known[1]).text == web.client().get(unknown[1]).text
    # The known address is told it is subscribed (with its manage link); its themes are not changed by whoever
    # typed it in.
    newest = web.mails_to("known@example.org")[-1]
    assert newest["Subject"] == "You are subscribed already"
    assert web.link("known@example.org", "/manage/")
    assert web.themes("known@example.org") == {WATER}
    assert web.status("known@example.org") == "confirmed"


@pytest.mark.parametrize(
    ("email", "themes", "message"),
    [
        ("not an address", [WATER], "Enter an email address"),
        ("ada@example.org", [], "Choose at least one theme"),
        ("ada@example.org", ["no-such-theme"], "unknown theme"),
    ],
)
def test_a_bad_subscribe_form_says_what_to_fix_and_sends_nothing(
    web: Web, email: str, themes: list[str], message: str
) -> None:
    client = web.client()
    answer = client.post("/subscribe", data={"csrf_token": csrf(client, "/"), "email": email, "theme": themes})
    assert answer.status_code == 400 and message in answer.text
    assert f'value="{email}"' in answer.text  # what they typed is kept
    assert web.mail.received == []


def test_forms_need_their_csrf_token(web: Web) -> None:
    client = web.client()
    assert client.post("/subscribe", data={"email": "ada@example.org", "theme": WATER}).status_code == 400
    assert web.mail.received == []
    assert subscribe(client, "ada@example.org", WATER)[0] == 303
    confirm = web.link("ada@example.org", "/confirm/")
    other = web.client()  # another browser: no session, so no valid token
    assert other.post(confirm, data={"csrf_token": "forged"}).status_code == 400
    assert web.status("ada@example.org") == "pending"


# Tokens ------------------------------------------------------------------------------------------------------


def test_tampered_wrong_purpose_foreign_and_expired_links_do_nothing(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    key = web.key("ada@example.org")
    client = web.client()
    token = manage.rsplit("/", 1)[1]
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert client.get(f"/manage/{tampered}").status_code == 404
    # A manage link does not unsubscribe, an unsubscribe link does not manage, a view link does neither.
    assert client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    unsubscribe = make_token(web.settings.secret_key, Purpose.UNSUBSCRIBE, key)
    assert client.get(f"/manage/{unsubscribe}").status_code == 404
    assert client.get(f"/confirm/{unsubscribe}").status_code == 404
    # Signed with another secret (the default anyone can read): refused.
    forged = make_token(DEFAULT_SECRET, Purpose.UNSUBSCRIBE, key)
    assert client.post(f"/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert web.status("ada@example.org") == "confirmed"

    # A confirmation link older than confirm_hours: expired, says so, confirms nothing.
    assert subscribe(client, "late@example.org", WATER)[0] == 303
    late = web.key("late@example.org")
    old = make_token(web.settings.secret_key, Purpose.CONFIRM, late)
    # Links age on digest's clock (DIGEST_NOW), like everything else: 71 hours on, still good; 73, expired.
    at(datetime.now(UTC).replace(microsecond=0).isoformat())
    clock.set_fixed_now(clock.now() + timedelta(hours=71))
    assert client.get(f"/confirm/{old}").status_code == 200
    clock.set_fixed_now(clock.now() + timedelta(hours=2))
    page = client.get(f"/confirm/{old}")
    assert page.status_code == 410 and "expired" in page.text
    assert client.post(f"/confirm/{old}", data={"csrf_token": csrf(client, "/")}).status_code == 410
    assert web.status("late@example.org") == "pending"
    clock.set_fixed_now(None)
    # The token reveals neither the id nor the address.
    payload = base64.urlsafe_b64decode(token.split(".")[0] + "==").decode("latin-1")
    assert "ada" not in payload and payload.strip('"') == key


# One-click unsubscribe (RFC 8058) ----------------------------------------------------------------------------


def test_one_click_unsubscribe_get_changes_nothing_post_leaves_at_once(web: Web) -> None:
    confirmed(web, "ada@example.org", WATER)
    at("2026-11-16T09:00:00Z")
    reports = ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    assert all(r.ok for r in reports)
    web.send()
    clock.set_fixed_now(None)
    digest = web.mails_to("ada@example.org")[-1]
    url = digest["List-Unsubscribe"].split(",")[0].strip().strip("<>")  # the https URL comes first (one click)
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = url.removeprefix(BASE)
    part = digest.get_body(("plain",))
    assert part is not None and url in part.get_content()  # a visible link in the body too

    client = web.client()
    page = client.get(path)
    assert page.status_code == 200 and "<button" in page.text
    assert web.status("ada@example.org") == "confirmed"
    assert client.post(path, data={}).status_code == 400  # not the RFC 8058 body: nothing done
    assert web.status("ada@example.org") == "confirmed"

    # What a mailbox provider sends: no cookie, no CSRF token, just the body.
    fresh = web.client()
    answer = fresh.post(path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200 and "Location" not in answer.headers
    assert "Set-Cookie" not in answer.headers
    assert web.status("ada@example.org") == "unsubscribed"
    assert fresh.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200  # again: still fine


# Manage -----------------------------------------------------------------------------------------------------


def test_manage_changes_themes_schedule_pause_and_leave(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    client = web.client()

    def change(**form: str | list[str]) -> str:
        answer = client.post(manage, data={"csrf_token": csrf(client, manage), **form})
        assert answer.status_code == 303, answer.text
        return client.get(manage).text

    assert "Your themes are saved." in change(action="themes", theme=[GOAL6])
    assert web.themes("ada@example.org") == {GOAL6}
    assert "Choose at least one theme." in change(action="themes", theme=[])
    assert web.themes("ada@example.org") == {GOAL6}

    page = change(action="schedule", frequency="monthly", monthday="31", hour="7", timezone="Asia/Tokyo")
    assert "monthly on day 31 at 07:00 Asia/Tokyo" in page
    page = change(action="schedule", frequency="weekly", weekday="friday", hour="18", timezone="America/New_York")
    assert "weekly on Friday at 18:00 America/New_York" in page
    page = change(action="schedule", frequency="weekly", weekday="friday", hour="25", timezone="Mars/Olympus")
    assert "is not an hour" in page
    assert "weekly on Friday at 18:00 America/New_York" in page

    until = (clock.now() + timedelta(days=10)).date()
    assert f"Paused until {until.strftime('%A, %B %-d, %Y')}" in change(action="pause", until=until.isoformat())
    assert "Resume now" in client.get(manage).text
    assert "Digests come again" in change(action="resume")

    assert "You have left" in change(action="leave")
    assert web.status("ada@example.org") == "unsubscribed"


# Export and erase --------------------------------------------------------------------------------------------


def test_export_holds_everything_and_erase_leaves_only_counts(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    at("2026-11-16T09:00:00Z")
    assert all(
        r.ok for r in ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    )
    web.send()
    clock.set_fixed_now(None)
    client = web.client()

    exported = client.get(manage + "/data.json")
    assert exported.status_code == 200 and exported.mimetype == "application/json"
    assert "attachment" in exported.headers["Content-Disposition"]
    data = json.loads(exported.data)
    assert data["email"] == "ada@example.org" and data["status"] == "confirmed"
    assert [s["slug"] for s in data["subscriptions"]] == [WATER]
    (sent,) = data["digests"]
    assert sent["status"] == "sent" and sent["practices"]
    assert {p["theme"] for p in sent["practices"]} == {"Water and Sanitation"}

    unticked = client.post(manage + "/erase", data={"csrf_token": csrf(client, manage)})
    assert unticked.status_code == 303 and web.status("ada@example.org") == "confirmed"
    erased = client.post(manage + "/erase", data={"csrf_token": csrf(client, manage), "confirm": "yes"})
    assert erased.status_code == 200 and "Erased" in erased.text
    with web.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
        for table in (Subscription, Digest):  # the ledger is their digests' share of shared contents
            assert session.scalar(select(func.count()).select_from(table)) == 0
        (row,) = session.scalars(select(Erasure)).all()
        assert (row.digests_sent, row.themes) == (1, 1)
        assert row.erased_on.hour == row.erased_on.minute == 0
    assert client.get(manage).status_code == 404  # every link they had stops working

    # A re-subscription starts fresh: pending, a new key, nothing of the old ledger.
    assert subscribe(web.client(), "ada@example.org", GOAL6)[0] == 303
    assert web.status("ada@example.org") == "pending"
    assert "/manage/" + make_token(web.settings.secret_key, Purpose.MANAGE, web.key("ada@example.org")) != manage


# Feeds over HTTP ---------------------------------------------------------------------------------------------


def test_feeds_answer_conditional_gets(web: Web) -> None:
    client = web.client()
    first = client.get(f"/feeds/{WATER}.atom")
    assert first.status_code == 200
    assert first.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag.startswith('"') and not etag.startswith("W/")  # strong
    assert "max-age" in first.headers["Cache-Control"]
    assert first.data.startswith(b"<?xml") and b"Water and Sanitation" in first.data

    assert client.get(f"/feeds/{WATER}.atom", headers={"If-None-Match": etag}).status_code == 304
    assert client.get(f"/feeds/{WATER}.atom", headers={"If-Modified-Since": modified}).status_code == 304
    assert client.get(f"/feeds/{WATER}.atom", headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get("/feeds/all.atom").status_code == 200
    assert client.get("/feeds/no-such-theme.atom").status_code == 404
    assert client.get(f"/feeds/{WATER}.rss").status_code == 404

    at("2026-11-16T09:00:00Z")
    assert all(
        r.ok for r in ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    )
    clock.set_fixed_now(None)
    changed = client.get(f"/feeds/{WATER}.atom", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    since = format_datetime(at("2026-11-10T00:00:00Z"), usegmt=True)
    clock.set_fixed_now(None)
    assert client.get(f"/feeds/{WATER}.atom", headers={"If-Modified-Since": since}).status_code == 200


# Pages -------------------------------------------------------------------------------------------------------


def test_home_theme_and_practice_pages(web: Web) -> None:
    client = web.client()
    home = client.get("/")
    assert home.status_code == 200
    assert re.search(r'<label for="theme-\d+">Water and Sanitation</label>', home.text)
    assert f'rel="alternate" type="application/atom+xml" title="Water and Sanitation" href="/feeds/{WATER}.atom"' in (
        home.text
    )
    csp = home.headers["Content-Security-Policy"]
    # Scripts from the site only (the form's time zone guess), none inline, nothing from elsewhere.
    assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "<script>" not in home.text
    assert home.headers["Referrer-Policy"] == "no-referrer"

    theme = client.get(f"/themes/{WATER}")
    assert theme.status_code == 200 and "Water and Sanitation" in theme.text
    uid = re.findall(r'href="/practices/([^"]+)"', theme.text)[0]
    practice = client.get(f"/practices/{uid}")
    assert practice.status_code == 200 and f"/themes/{WATER}" in practice.text
    assert client.get(f"/themes/{WATER}?page=99").status_code == 404
    assert client.get(f"/themes/{WATER}?page=x").status_code == 404
    assert client.get("/themes/nothing-here").status_code == 404
    assert client.get("/practices/nothing-here").status_code == 404
    assert client.get("/healthz").text == "ok\n"

    small = replace(web.settings, page_size=2)
    paged = create_app(small).test_client().get(f"/themes/{WATER}?page=2")
    assert paged.status_code == 200 and 'rel="prev"' in paged.text and '<ol class="practices" start="3">' in paged.text


def test_a_digest_links_its_web_view_and_the_practice_page(web: Web) -> None:
    confirmed(web, "ada@example.org", WATER)
    at("2026-11-16T09:00:00Z")
    assert all(
        r.ok for r in ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    )
    web.send()
    clock.set_fixed_now(None)
    view = web.link("ada@example.org", "/digests/")
    page = web.client().get(view)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    digest = web.mails_to("ada@example.org")[-1]
    assert str(digest["Subject"]) in page.text
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert web.client().get(view[:-4] + "AAAA").status_code == 404
    # Practices without a source link point at their page here, which exists.
    html = digest.get_body(("html",))
    assert html is not None
    for uid in re.findall(re.escape(BASE) + r"/practices/([\w-]+)", html.get_content()):
        assert web.client().get(f"/practices/{uid}").status_code == 200


# Limits and secrets ------------------------------------------------------------------------------------------


def test_rate_limits_per_address_and_per_client(web: Web) -> None:
    client = web.client()
    for _ in range(3):
        assert subscribe(client, "ada@example.org", WATER) == (303, "/subscribe/sent")
    # Past the address's limit: the same answer, and no mail.
    assert subscribe(client, "ada@example.org", WATER) == (303, "/subscribe/sent")
    assert len(web.mails_to("ada@example.org")) == 3

    # The client has sent 4 requests this hour (the counts are in the store, whichever app instance counts).
    strict = create_app(replace(web.settings, subscribe_per_client_per_hour=6)).test_client()
    assert subscribe(strict, "b@example.org", WATER)[0] == 303
    assert subscribe(strict, "c@example.org", WATER)[0] == 303
    assert subscribe(strict, "d@example.org", WATER)[0] == 429
    assert web.mails_to("d@example.org") == []


def test_the_default_secret_is_refused_outside_development(web: Web) -> None:
    with pytest.raises(ConfigError, match="secret_key is the development default"):
        create_app(replace(web.settings, secret_key=DEFAULT_SECRET))
    with pytest.raises(ConfigError, match="shorter than 16"):
        create_app(replace(web.settings, secret_key="short"))
    assert create_app(replace(web.settings, secret_key=DEFAULT_SECRET, environment="development"))
    with pytest.raises(ConfigError, match="sending over SMTP .* refused"):
        transport_for(replace(web.settings, secret_key=DEFAULT_SECRET))
    # The Maildir of `make run` keeps working with it.
    assert transport_for(replace(web.settings, secret_key=DEFAULT_SECRET, smtp_url="")).describe().startswith("outbox")


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_migration_gives_every_existing_subscriber_a_key_of_their_own(
    store: str, tmp_path: object, request: pytest.FixtureRequest
) -> None:
    from sqlalchemy import text

    from digest.store import db

    url = f"sqlite:///{tmp_path}/old.db" if store == "sqlite" else request.getfixturevalue("pg_url")
    engine = db.make_engine(url)
    db.upgrade(engine, "0007")
    with engine.begin() as conn:
        for n in range(1500):  # more than one batch of the migration
            conn.execute(
                text("INSERT INTO subscribers (email, status, bounces, created_at) VALUES (:e, 'confirmed', 0, :t)"),
                {"e": f"reader{n}@example.org", "t": at("2026-11-01T10:00:00Z")},
            )
    db.upgrade(engine)
    with engine.connect() as conn:
        keys = list(conn.scalars(text("SELECT key FROM subscribers")))
    assert len(keys) == len(set(keys)) == 1500 and all(len(k) >= 22 for k in keys)
    engine.dispose()
