"""A welcome after confirming: one short mail in the subscriber's language (their themes, their schedule and when
the first digest comes in their zone, the manage link, their own feed, how to leave), once, whatever happens
again; never to an address imported or subscribed as already confirmed unless asked (--welcome)."""

from __future__ import annotations

import re
from email.message import EmailMessage

from digest import clock
from tests.conftest import Cli, RecordingHandler, at, fixture_path
from tests.webapp import WATER, Web, confirmed, csrf


def _welcomes(mails: list[EmailMessage]) -> list[EmailMessage]:
    return [m for m in mails if "Welcome" in m["Subject"] or "Bienvenue" in m["Subject"]]


def test_confirming_on_the_page_sends_one_welcome_that_says_what_comes_and_when(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER)  # confirmed on Monday 9 November 2026, at noon UTC
    (welcome,) = _welcomes(web.mails_to("ada@example.org"))
    assert welcome["List-Unsubscribe"] is None  # a notice answering what they did, not bulk mail
    text = welcome.get_body(("plain",)).get_content()
    assert "Water and Sanitation" in text
    # The config's default: weekly on Monday at 08:00 Europe/Paris; the first slot after noon on the 9th is the 16th.
    assert "Monday, November 16, 2026" in text and "Europe/Paris" in text, text
    assert manage in text and "/feeds/me/" in text and "/unsubscribe/" in text
    # Confirming again (the link opened twice, the button pressed twice) welcomes nobody twice.
    client = web.client()
    (first, *_) = web.mails_to("ada@example.org")
    confirm = re.search(r"http://digest.localhost(/confirm/\S+)", first.get_body(("plain",)).get_content())
    assert confirm
    at("2026-11-09T13:00:00Z")  # within the link's 72 hours
    try:
        again = client.post(confirm.group(1), data={"csrf_token": csrf(client, "/")})  # the button pressed twice
    finally:
        clock.set_fixed_now(None)
    assert again.status_code == 200
    assert len(_welcomes(web.mails_to("ada@example.org"))) == 1


def test_the_welcome_is_in_the_subscribers_language(web: Web) -> None:
    client = web.client()
    form = {"csrf_token": csrf(client, "/"), "email": "bea@example.org", "theme": [WATER], "language": "fr"}
    assert client.post("/subscribe", data=form).status_code == 303
    confirm = web.link("bea@example.org", "/confirm/")
    assert client.post(confirm, data={"csrf_token": csrf(client, confirm)}).status_code == 200
    (welcome,) = _welcomes(web.mails_to("bea@example.org"))
    assert welcome["Content-Language"] == "fr" and welcome["Subject"].startswith("Bienvenue")


def test_the_cli_welcomes_a_confirmation_by_hand_and_an_import_only_when_asked(
    run_cli: Cli, smtp_server: tuple[RecordingHandler, str]
) -> None:
    handler, url = smtp_server
    env = {"DIGEST_SMTP_URL": url, "DIGEST_ENVIRONMENT": "development"}
    run_cli("ingest", fixture_path("listing-water.txt"), now="2026-11-09T10:00:00Z")
    # Consent given elsewhere: no welcome, unless asked.
    assert run_cli("subscribe", "ada@example.org", "--theme", WATER, "--confirmed", **env).exit_code == 0
    asked = run_cli("subscribe", "bo@example.org", "--theme", WATER, "--confirmed", "--welcome", **env)
    assert asked.exit_code == 0 and "welcome mail sent" in asked.output, asked.output
    # Pending, then confirmed by hand: welcomed.
    run_cli("subscribe", "cy@example.org", "--theme", WATER, **env)
    done = run_cli("subscribers", "confirm", "cy@example.org", **env)
    assert done.exit_code == 0 and "welcome mail sent" in done.output, done.output
    subjects = {(r.recipients[0], str(r.message["Subject"])) for r in handler.received}
    welcomed = {to for to, subject in subjects if subject.startswith("Welcome")}
    assert welcomed == {"bo@example.org", "cy@example.org"}


def test_a_mail_server_away_loses_the_welcome_not_the_confirmation(run_cli: Cli) -> None:
    from tests.conftest import free_port

    run_cli("ingest", fixture_path("listing-water.txt"), now="2026-11-09T10:00:00Z")
    dead = f"smtp://127.0.0.1:{free_port()}"
    env = {"DIGEST_SMTP_URL": dead, "DIGEST_ENVIRONMENT": "development"}
    done = run_cli("subscribe", "ada@example.org", "--theme", WATER, "--confirmed", "--welcome", **env)
    assert done.exit_code == 0 and "welcome mail could not be sent" in done.stderr, done.output
    assert '"status": "confirmed"' in run_cli("subscribers", "list", "--json").output
