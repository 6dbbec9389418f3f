"""Feeds that speak the reader's language where they can: a feed's own words (its title when ours, its subtitle)
in the feed's language, the default_language for public feeds and the subscriber's for their own, with xml:lang
on the feed (and `language` in the JSON Feed); and links from a mail to the site's pages carry the reader's
language, so a French reader lands on French pages whatever their browser asks."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import feedparser

from digest.web import create_app
from tests.webapp import WATER, Web, confirmed, csrf


def test_public_feeds_speak_the_default_language(web: Web) -> None:
    client = create_app(replace(web.settings, default_language="es")).test_client()
    everything = feedparser.parse(client.get("/feeds/all.atom").data)
    assert everything.feed.title == "Todas las prácticas"
    assert everything.feed.subtitle == "Las prácticas añadidas recientemente a cualquier tema"
    assert everything.feed.get("language") == "es"
    theme = client.get(f"/feeds/{WATER}.atom").data
    assert b'xml:lang="es"' in theme.split(b"<entry", 1)[0]
    assert feedparser.parse(theme).feed.subtitle == "Las prácticas añadidas recientemente a Water and Sanitation"
    listed = json.loads(client.get("/feeds/all.json").data)
    assert listed["language"] == "es" and listed["title"] == "Todas las prácticas"
    # In English by default, the same way.
    english = feedparser.parse(web.client().get("/feeds/all.atom").data)
    assert english.feed.title == "All practices" and english.feed.get("language") == "en"


def test_a_personal_feed_speaks_its_readers_language(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    client = web.client()
    client.post(manage, data={"csrf_token": csrf(client, manage), "action": "language", "language": "fr"})
    page = client.get(manage).text
    atom = re.search(r'value="http://digest.localhost(/feeds/me/[^"]+\.atom)"', page)
    assert atom
    feed = feedparser.parse(client.get(atom.group(1)).data)
    assert feed.feed.title == "Vos pratiques\u00a0: Water and Sanitation" and feed.feed.get("language") == "fr"
    as_json = json.loads(client.get(atom.group(1).removesuffix(".atom") + ".json").data)
    assert as_json["language"] == "fr" and as_json["title"].startswith("Vos pratiques")


def test_links_from_a_french_digest_open_french_pages(web: Web) -> None:
    from digest import clock
    from digest.config import SourceConfig
    from digest.ingest import ingest_sources
    from tests.conftest import at, fixture_path

    client = web.client()
    form = {"csrf_token": csrf(client, "/"), "email": "bea@example.org", "theme": [WATER], "language": "fr"}
    at("2026-11-09T12:00:00Z")
    try:
        assert client.post("/subscribe", data=form).status_code == 303
        confirm = web.link("bea@example.org", "/confirm/")
        assert client.post(confirm, data={"csrf_token": csrf(client, confirm)}).status_code == 200
    finally:
        clock.set_fixed_now(None)
    at("2026-11-20T10:00:00Z")
    ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    at("2026-11-23T09:00:00Z")
    web.send()
    clock.set_fixed_now(None)
    digest = web.mails_to("bea@example.org")[-1]
    text = digest.get_body(("plain",)).get_content()
    ours = re.findall(r"http://digest.localhost(/(?:practices|themes)/[^\s?]+\?lang=fr)", text)
    assert ours, text
    browser = web.client()  # a browser that asks for English
    for path in ours[:3]:
        answer = browser.get(path, headers={"Accept-Language": "en"})
        assert answer.status_code == 200 and '<html lang="fr">' in answer.text, path
