"""Plain text, for those who prefer it: a subscriber who chose it (on the manage page or with `digest subscribers
set --format text`) gets each digest as one text/plain part, still with List-Unsubscribe (one click) and the manage
link; everyone else keeps HTML with its text alternative. Sent to a real SMTP server on loopback."""

from __future__ import annotations

from digest import clock
from digest.config import SourceConfig
from digest.ingest import ingest_sources
from tests.conftest import Cli, at, fixture_path
from tests.webapp import WATER, Web, confirmed, csrf


def _week_later(web: Web) -> None:
    at("2026-11-20T10:00:00Z")
    ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    at("2026-11-23T09:00:00Z")
    web.send()
    clock.set_fixed_now(None)


def test_a_plain_text_reader_gets_one_text_part_with_every_link(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    confirmed(web, "bo@example.org", WATER)
    client = web.client()
    page = client.get(manage).text
    assert 'name="format" value="text"' in page
    answer = client.post(manage, data={"csrf_token": csrf(client, manage), "action": "format", "format": "text"})
    assert answer.status_code == 303
    assert 'id="format-text" name="format" value="text" checked' in client.get(manage).text
    _week_later(web)
    (text,) = web.mails_to("ada@example.org")[-1:]
    assert not text.is_multipart() and text.get_content_type() == "text/plain"
    assert text["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert text["List-Unsubscribe"].startswith("<http://digest.localhost/unsubscribe/")
    body = text.get_content()
    assert "/manage/" in body and "/unsubscribe/" in body and "Greywater" in body
    # Someone else with the same digest keeps both parts: the rendering is shared, the format is theirs.
    (html,) = web.mails_to("bo@example.org")[-1:]
    assert html.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in html.iter_parts()] == ["text/plain", "text/html"]
    assert html["Subject"] == text["Subject"]


def test_the_format_is_set_from_the_command_line_and_refused_when_unknown(run_cli: Cli) -> None:
    run_cli("ingest", fixture_path("listing-water.txt"), now="2026-11-09T10:00:00Z")
    run_cli("subscribe", "ada@example.org", "--theme", WATER, "--confirmed", now="2026-11-09T10:00:00Z")
    done = run_cli("subscribers", "set", "ada@example.org", "--format", "text")
    assert done.exit_code == 0 and "plain text" in done.output, done.output
    listed = run_cli("subscribers", "list", "--json").output
    assert '"format": "text"' in listed
    refused = run_cli("subscribers", "set", "ada@example.org", "--format", "pdf")
    assert refused.exit_code == 2 and "--format" in refused.output
    assert run_cli("subscribers", "set", "ada@example.org", "--format", "html").exit_code == 0
    assert '"format": "html"' in run_cli("subscribers", "list", "--json").output


def test_the_manage_page_refuses_a_format_it_does_not_offer(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    client = web.client()
    client.post(manage, data={"csrf_token": csrf(client, manage), "action": "format", "format": "pdf"})
    page = client.get(manage).text
    assert "is not html or text" in page
    assert 'id="format-html" name="format" value="html" checked' in page
