"""The whole journey in headless Chromium (Debian's, driven by Playwright; no browser download): subscribe on the
home page by keyboard, without JavaScript -> the confirmation at a real SMTP server -> confirm -> a digest ->
its List-Unsubscribe URL opened (nothing changes) -> the one-click POST (unsubscribed). axe-core checks each page.

DIGEST_SCREENSHOTS=1 also writes the home, manage (in English and French) and operator pages to docs/screenshots/
(committed, shown in the README and docs/monitoring.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RecordingHandler, fixture_path, free_port
from tests.webserver import environment, serving, write_config

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
# As root, without the sandbox; and no calls home, which this machine's closed network refuses.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAIL_DEADLINE = 60.0

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed here (.ci/run installs it: apt-get install chromium)",
)


def digest(config: Path, *args: str, cwd: Path | None = None, now: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "digest", *args],
        env=environment(config) | ({"DIGEST_NOW": now} if now else {}),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def past_their_first_slot() -> str:
    """An instant past the first slot of whoever confirmed just now, whatever their schedule (a month on)."""
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(days=32)).isoformat()


def wait_for_mail(handler: RecordingHandler, address: str, count: int) -> None:
    deadline = time.monotonic() + MAIL_DEADLINE
    while len(handler.to(address)) < count:
        assert time.monotonic() < deadline, f"mail {count} to {address} did not arrive"
        time.sleep(0.1)


def link(handler: RecordingHandler, address: str, base: str, path: str) -> str:
    body = handler.to(address)[-1].message.get_body(("plain",))
    assert body is not None
    found = re.findall(re.escape(base + path) + r"[^\s>]+", body.get_content())
    assert found, body.get_content()
    return str(found[-1])


def status(config: Path, address: str) -> tuple[str, list[str]]:
    rows = json.loads(digest(config, "subscribers", "list", "--json"))
    (row,) = [r for r in rows if r["email"] == address]
    return row["status"], row["themes"]


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def serious_violations(browser: object, url: str, locale: str = "en") -> list[str]:
    """axe-core on the page (in a context of its own, with JavaScript and the CSP bypassed for axe's script)."""
    from axe_playwright_python.sync_playwright import Axe

    context = browser.new_context(bypass_csp=True, locale=locale)  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.goto(url)
        results = Axe().run(page)
        return [
            f"{v['id']} ({v['impact']}): {v['help']}"
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
    finally:
        context.close()


def assert_aligned(page: object) -> None:
    """At desktop width: the theme checkboxes' columns start level, and every field of a form is as tall and as
    wide as the others (a dropdown beside a text field, the timezone list beside the rest)."""
    layout = page.evaluate(  # type: ignore[attr-defined]
        """() => {
        const tops = {};
        for (const li of document.querySelectorAll('ul.choices li')) {
            const box = li.getBoundingClientRect();
            const column = Math.round(box.left);
            tops[column] = Math.min(tops[column] ?? Infinity, box.top);
        }
        const fields = [...document.querySelectorAll('select, input[type=email], input[type=date], input[type=number]')]
            .map(f => { const b = f.getBoundingClientRect(); return [f.id || f.name, b.height, b.width]; });
        return {tops: Object.values(tops), fields};
    }"""
    )
    tops, fields = layout["tops"], layout["fields"]
    assert len(tops) == 2 and abs(tops[0] - tops[1]) < 0.5, tops
    assert max(h for _, h, _ in fields) - min(h for _, h, _ in fields) < 0.5, fields
    assert max(w for _, _, w in fields) - min(w for _, _, w in fields) < 0.5, fields


def test_subscribe_confirm_receive_and_leave_in_one_click(
    browser: object, tmp_path: Path, smtp_server: tuple[RecordingHandler, str]
) -> None:
    handler, smtp_url = smtp_server
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "digest.toml", f"sqlite:///{tmp_path / 'digest.db'}", base, smtp_url)
    digest(config, "ingest", fixture_path("listing-water.txt"), fixture_path("listing-goal6.txt"))
    address = "ada@example.org"

    with serving(config, port):
        # The person's browser: no JavaScript at all; the pages must work without it.
        context = browser.new_context(java_script_enabled=False, viewport={"width": 1000, "height": 900})  # type: ignore[attr-defined]
        page = context.new_page()
        page.goto(base + "/")
        assert page.get_by_role("heading", level=1).count() == 1
        assert serious_violations(browser, base + "/") == []
        if os.environ.get("DIGEST_SCREENSHOTS"):
            DOCS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(DOCS / "home.png"), full_page=True)

        # By keyboard alone: type the address, Tab and Space through both themes, Tab to the button, Enter.
        page.get_by_label("Your email address").focus()
        page.keyboard.type(address)
        for theme in ("Goal 6: Clean water and sanitation", "Water and Sanitation"):
            page.keyboard.press("Tab")
            page.keyboard.press("Space")
            assert page.get_by_label(theme, exact=True).is_checked()
        page.keyboard.press("Tab")  # how often: weekly, the operator's default, left as it is
        assert page.evaluate("document.activeElement.id") == "frequency"
        page.keyboard.press("Tab")  # the folded day and hour: passed over
        assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
        page.keyboard.press("Tab")  # the language of the mails: the page's (English), left as it is
        assert page.evaluate("document.activeElement.id") == "language"
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        page.wait_for_url(base + "/subscribe/sent")
        assert "Check your inbox" in page.content()

        wait_for_mail(handler, address, 1)
        confirm_url = link(handler, address, base, "/confirm/")
        page.goto(confirm_url)
        assert serious_violations(browser, confirm_url) == []
        assert status(config, address)[0] == "pending"  # opening the link confirms nothing
        page.get_by_role("button", name="Confirm my subscription").click()
        page.wait_for_load_state()
        assert "You are subscribed" in page.content()
        assert status(config, address) == ("confirmed", ["goal-6-clean-water-and-sanitation", "water-and-sanitation"])
        wait_for_mail(handler, address, 2)  # the welcome
        assert "Welcome" in handler.to(address)[-1].message["Subject"]

        digest(config, "ingest", fixture_path("listing-water-week2.txt"))
        digest(config, "send", now=past_their_first_slot())
        wait_for_mail(handler, address, 3)
        mail = handler.to(address)[-1].message
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe_url, mailto = re.findall(r"<([^>]+)>", mail["List-Unsubscribe"])  # https first (one click)
        assert mailto.startswith("mailto:") and mailto.endswith("?subject=unsubscribe")
        assert unsubscribe_url.startswith(base + "/unsubscribe/")

        html = mail.get_body(("html",))
        assert html is not None
        digest_page = browser.new_context(viewport={"width": 1000, "height": 900})  # type: ignore[attr-defined]
        shown = digest_page.new_page()
        shown.set_content(html.get_content())
        # The single column is at most 640 px wide however wide the window is.
        widths = shown.evaluate("[...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().width)")
        assert max(widths[1:]) <= 640, widths
        digest_page.close()

        manage_url = link(handler, address, base, "/manage/")
        page.goto(manage_url)
        assert page.get_by_role("heading", name="Your digest settings").is_visible()
        assert_aligned(page)
        page.goto(base + "/")
        assert_aligned(page)
        page.goto(manage_url)
        assert serious_violations(browser, manage_url) == []
        if os.environ.get("DIGEST_SCREENSHOTS"):
            page.screenshot(path=str(DOCS / "manage.png"), full_page=False)
        view_url = link(handler, address, base, "/digests/")
        page.goto(view_url)
        assert str(mail["Subject"]) in page.content()

        page.goto(unsubscribe_url)  # a GET, as a person or a link scanner opening it
        assert page.get_by_role("button", name="Unsubscribe").is_visible()
        assert status(config, address)[0] == "confirmed"
        # The mailbox provider's one-click POST: no cookie, no CSRF token, no redirect followed.
        answer = httpx.post(unsubscribe_url, data={"List-Unsubscribe": "One-Click"}, timeout=30)
        assert answer.status_code == 200
        assert status(config, address)[0] == "unsubscribed"
        context.close()


# What each journey's pages say in French and Spanish (the labels the steps below press).
JOURNEY = {
    "fr": {"email": "Votre adresse électronique", "subscribe": "S’abonner",
           "sent": "Consultez votre boîte de réception",
           "confirm": "Confirmer mon abonnement", "confirmed": "Abonnement confirmé", "settings": "Vos réglages"},
    "es": {"email": "Su dirección de correo", "subscribe": "Suscribirse", "sent": "Revise su bandeja de entrada",
           "confirm": "Confirmar mi suscripción", "confirmed": "Suscripción confirmada", "settings": "Sus ajustes"},
}  # fmt: skip


@pytest.mark.parametrize("language", ["fr", "es"])
def test_the_journey_in_french_and_in_spanish(
    browser: object, tmp_path: Path, smtp_server: tuple[RecordingHandler, str], language: str
) -> None:
    """A browser that asks for the language (Accept-Language from its locale): every page and both mails in it,
    each axe-clean, with lang on <html> and on the practices written in another language."""
    from tests.test_translations import assert_in_language, assert_mail_in_language, visible_text

    words = JOURNEY[language]
    handler, smtp_url = smtp_server
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "digest.toml", f"sqlite:///{tmp_path / 'digest.db'}", base, smtp_url)
    digest(config, "ingest", fixture_path("listing-water.txt"))
    address = f"lecteur-{language}@example.org"
    mixed = tmp_path / "mixed.json"
    mixed.write_text(
        json.dumps(
            {
                "practices": [
                    {
                        "id": "m1",
                        "title": "Agua para todos",
                        "summary": "Un programa municipal.",
                        "language": "es",
                        "themes": ["Water and Sanitation"],
                        "url": "https://practices.example.org/m1",
                    },
                    {
                        "id": "m2",
                        "title": "Clean wells",
                        "summary": "A programme.",
                        "language": "en",
                        "themes": ["Water and Sanitation"],
                        "url": "https://practices.example.org/m2",
                    },
                ]
            }  # fmt: skip
        ),
        encoding="utf-8",
    )

    def check(page: object, url: str, name: str) -> None:
        html = page.content()  # type: ignore[attr-defined]
        assert f'<html lang="{language}">' in html, name
        assert_in_language(visible_text(html), language, name)
        assert serious_violations(browser, url, language) == [], name

    with serving(config, port):
        context = browser.new_context(  # type: ignore[attr-defined]
            java_script_enabled=False, locale=language, viewport={"width": 1000, "height": 900}
        )
        page = context.new_page()
        page.goto(base + "/")
        check(page, base + "/", "home")
        page.get_by_label(words["email"]).fill(address)
        page.get_by_label("Water and Sanitation", exact=True).check()
        assert page.get_by_label("Water and Sanitation", exact=True).is_checked()
        page.get_by_role("button", name=words["subscribe"]).click()
        page.wait_for_url(base + "/subscribe/sent")
        assert words["sent"] in page.content()
        check(page, base + "/subscribe/sent", "check inbox")

        wait_for_mail(handler, address, 1)
        assert_mail_in_language(handler.to(address)[-1].message, language)
        confirm_url = link(handler, address, base, "/confirm/")
        page.goto(confirm_url)
        check(page, confirm_url, "confirm")
        page.get_by_role("button", name=words["confirm"]).click()
        page.wait_for_load_state()
        assert words["confirmed"] in page.content()
        wait_for_mail(handler, address, 2)  # the welcome, in their language
        assert_mail_in_language(handler.to(address)[-1].message, language)

        digest(config, "ingest", str(mixed))
        digest(config, "send", now=past_their_first_slot())
        wait_for_mail(handler, address, 3)
        mail = handler.to(address)[-1].message
        assert_mail_in_language(mail, language)
        body = mail.get_body(("html",))
        assert body is not None
        assert re.search(r'<h3 lang="es"[^>]*><a [^>]*>Agua para todos</a>', body.get_content())
        manage_url = link(handler, address, base, "/manage/")
        page.goto(manage_url)
        assert page.get_by_role("heading", name=words["settings"]).is_visible()
        check(page, manage_url, "manage")
        if os.environ.get("DIGEST_SCREENSHOTS") and language == "fr":
            page.screenshot(path=str(DOCS / "manage-fr.png"), full_page=False)
        theme_url = base + "/themes/water-and-sanitation"
        page.goto(theme_url)
        assert page.locator('h2[lang="es"]').count() == 1 and page.locator('h2[lang="en"]').count() == 1
        check(page, theme_url, "theme")
        view_url = link(handler, address, base, "/digests/")
        page.goto(view_url)
        assert f'<html lang="{language}">' in page.content()
        context.close()


def test_the_operator_page_passes_axe_and_shows_its_charts(
    browser: object, tmp_path: Path, smtp_server: tuple[RecordingHandler, str]
) -> None:
    from argon2 import PasswordHasher

    handler, smtp_url = smtp_server
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(
        tmp_path / "digest.toml",
        f"sqlite:///{tmp_path / 'digest.db'}",
        base,
        smtp_url,
        environment="development",
        operator_password_hash=PasswordHasher().hash("operator password 123"),
    )
    # The sources by paths relative to a folder of their own: the page (and its screenshot in the README) shows
    # nothing of the machine that made it.
    for name in ("listing-water.txt", "listing-goal6.txt", "listing-water-week2.txt"):
        (tmp_path / "examples").mkdir(exist_ok=True)
        shutil.copy(fixture_path(name), tmp_path / "examples" / name)
    digest(config, "ingest", "examples/listing-water.txt", "examples/listing-goal6.txt", cwd=tmp_path)
    for n in range(3):
        digest(
            config,
            "subscribe",
            f"r{n}@example.org",
            "--theme",
            "Water and Sanitation",
            "--confirmed",
            now="2026-11-09T10:00:00Z",
        )
    digest(config, "ingest", "examples/listing-water-week2.txt", cwd=tmp_path)
    digest(config, "send")  # today: past their first slot
    with serving(config, port):
        context = browser.new_context(  # type: ignore[attr-defined]
            bypass_csp=True,
            http_credentials={"username": "operator", "password": "operator password 123"},
            viewport={"width": 1000, "height": 900},
        )
        try:
            page = context.new_page()
            answer = page.goto(base + "/operator/")
            assert answer is not None and answer.status == 200
            assert page.locator("svg.chart").count() == 3
            assert page.locator("#themes th[scope=row]").count() == 2
            from axe_playwright_python.sync_playwright import Axe

            violations = [
                f"{v['id']} ({v['impact']}): {v['help']}"
                for v in Axe().run(page).response["violations"]
                if v["impact"] in ("serious", "critical")
            ]
            assert not violations, violations
            if os.environ.get("DIGEST_SCREENSHOTS"):
                page.screenshot(path=str(DOCS / "operator.png"), full_page=True)

            # The operator acts: finds a subscriber, suppresses them after confirming, and the audit log says so.
            def clean() -> list[str]:
                return [
                    f"{page.url}: {v['id']} ({v['impact']}): {v['help']}"
                    for v in Axe().run(page).response["violations"]
                    if v["impact"] in ("serious", "critical")
                ]

            page.fill("#q", "r1")
            page.click("form[role=search] button")
            assert not clean()
            page.click("a:has-text('r1@example.org')")
            assert page.locator("#status").inner_text().startswith("confirmed")
            assert page.locator("#ledger th[scope=row]").count() == 1
            assert not clean()
            page.click("#act-suppress")
            assert "This will stop all mail to r1@example.org" in page.content()
            assert not clean()
            page.fill("#reason", "asked by phone")
            page.click("#confirm")
            assert page.locator("#status").inner_text().startswith("suppressed")
            page.goto(base + "/operator/")
            row = page.locator("#audit tbody tr").first.inner_text()
            assert "operator" in row and "subscriber.suppress" in row and "r1@example.org" in row
            assert "asked by phone" in row
        finally:
            context.close()


def test_the_subscribe_form_takes_a_schedule_and_guesses_the_time_zone(
    browser: object, tmp_path: Path, smtp_server: tuple[RecordingHandler, str]
) -> None:
    """A visitor in Tokyo (the browser's time zone) asks for a daily digest at 07:00 with the folded fields; the
    confirmation page says so. Without script, the operator's zone is used."""
    handler, smtp_url = smtp_server
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "digest.toml", f"sqlite:///{tmp_path / 'digest.db'}", base, smtp_url)
    digest(config, "ingest", fixture_path("listing-water.txt"))
    with serving(config, port):
        for address, script, zone in (("tokyo@example.org", True, "Asia/Tokyo"), ("plain@example.org", False, "")):
            context = browser.new_context(  # type: ignore[attr-defined]
                timezone_id="Asia/Tokyo", java_script_enabled=script, viewport={"width": 1000, "height": 900}
            )
            try:
                page = context.new_page()
                page.goto(base + "/")
                page.get_by_label("Your email address").fill(address)
                page.get_by_label("Water and Sanitation", exact=True).check()
                page.get_by_label("How often").select_option("daily")
                page.locator("summary").click()  # unfold the day and hour
                page.get_by_label("Hour").select_option("7")
                page.get_by_role("button", name="Subscribe").click()
                page.wait_for_url(base + "/subscribe/sent")
                wait_for_mail(handler, address, 1)
                page.goto(link(handler, address, base, "/confirm/"))
                page.get_by_role("button", name="Confirm my subscription").click()
                page.wait_for_load_state()
                expected = zone or "Europe/Paris"  # the config's timezone when the browser says nothing
                assert f"daily at 07:00 {expected}" in page.content(), page.content()
            finally:
                context.close()
