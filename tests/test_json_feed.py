"""JSON Feed 1.1 beside each Atom feed: the specification's required parts, the same entries as the Atom document
(ids, titles, links, dates, authors, tags, languages), the same validators and 304s, archives chained with
next_url, the personal feed private and revoked with its link, the files written by `digest feeds` the bytes
served, and the pages advertising it."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import feedparser

from digest import clock
from digest.config import SourceConfig
from digest.feeds.files import build_feeds
from digest.ingest import ingest_sources
from tests.conftest import fixture_path
from tests.webapp import WATER, Web, confirmed, csrf

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def check_spec(feed: dict[str, Any]) -> None:
    """JSON Feed 1.1's required and typed members (https://jsonfeed.org/version/1.1)."""
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(feed["title"], str) and feed["title"]
    assert isinstance(feed["items"], list)
    for key in ("home_page_url", "feed_url", "next_url"):
        assert key not in feed or feed[key].startswith(("http://", "https://"))
    assert all(isinstance(a["name"], str) for a in feed.get("authors", []))
    assert all(h["type"] == "WebSub" and h["url"] for h in feed.get("hubs", []))
    for item in feed["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert isinstance(item.get("content_text") or item.get("content_html"), str)
        assert item["url"].startswith(("http://", "https://"))  # every item a link
        for key in ("date_published", "date_modified"):
            assert RFC3339.match(item[key]), item[key]
        assert all(isinstance(t, str) for t in item.get("tags", []))
        assert all(isinstance(a["name"], str) for a in item.get("authors", []))


def _ingest_more(web: Web) -> None:
    ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())


def test_each_json_feed_holds_the_atom_feeds_entries(web: Web) -> None:
    _ingest_more(web)
    client = web.client()
    for name in (WATER, "all"):
        answer = client.get(f"/feeds/{name}.json")
        assert answer.status_code == 200 and answer.mimetype == "application/feed+json"
        feed = json.loads(answer.data)
        check_spec(feed)
        atom = feedparser.parse(client.get(f"/feeds/{name}.atom").data)
        assert feed["title"] == atom.feed.title
        assert feed["feed_url"].endswith(f"/feeds/{name}.json")
        assert [i["id"] for i in feed["items"]] == [e.id for e in atom.entries]
        for item, entry in zip(feed["items"], atom.entries, strict=True):
            assert item["title"] == entry.title and item["url"] == entry.link
            assert datetime.fromisoformat(item["date_modified"]) == datetime.fromisoformat(entry.updated)
            assert datetime.fromisoformat(item["date_published"]) == datetime.fromisoformat(entry.published)
            assert item["tags"] == [t.label for t in entry.tags]
            assert item.get("authors", [{}])[0].get("name") == entry.get("author")
            assert item.get("language") == entry.get("language")


def test_json_feeds_have_their_own_validators_and_304s(web: Web) -> None:
    client = web.client()
    first = client.get(f"/feeds/{WATER}.json")
    atom = client.get(f"/feeds/{WATER}.atom")
    assert first.headers["ETag"] != atom.headers["ETag"]
    again = client.get(f"/feeds/{WATER}.json", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    # The Atom document's tag does not stand for the JSON one.
    assert client.get(f"/feeds/{WATER}.json", headers={"If-None-Match": atom.headers["ETag"]}).status_code == 200
    _ingest_more(web)
    changed = client.get(f"/feeds/{WATER}.json", headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and changed.headers["ETag"] != first.headers["ETag"]
    assert client.get("/feeds/nothing.json").status_code == 404


def test_archives_chained_by_next_url_give_every_entry_once(web: Web) -> None:
    from dataclasses import replace

    from digest.web import create_app

    _ingest_more(web)
    client = create_app(replace(web.settings, feed_max_entries=2)).test_client()
    base = web.settings.base_url
    seen: list[str] = []
    url: str | None = f"{base}/feeds/all.json"
    while url:
        answer = client.get(url.removeprefix(base))
        assert answer.status_code == 200, url
        feed = json.loads(answer.data)
        check_spec(feed)
        seen += [i["id"] for i in feed["items"]]
        url = feed.get("next_url")
    atom = feedparser.parse(client.get("/feeds/all.atom").data)
    assert len(seen) == len(set(seen)) > len(atom.entries)  # more than the current document holds, each once


def test_the_personal_json_feed_is_private_and_dies_with_its_link(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    client = web.client()
    page = client.get(manage).text
    atom = re.search(r'value="(http://digest.localhost/feeds/me/[^"]+\.atom)"', page)
    assert atom
    path = atom.group(1).removeprefix("http://digest.localhost").removesuffix(".atom") + ".json"
    answer = client.get(path)
    assert answer.status_code == 200 and "private" in answer.headers["Cache-Control"]
    check_spec(json.loads(answer.data))
    client.post(manage, data={"csrf_token": csrf(client, manage), "action": "feed-link"})
    assert client.get(path).status_code == 404


def test_digest_feeds_writes_the_json_feeds_the_web_serves(web: Web) -> None:
    with web.sessions() as session:
        results = build_feeds(session, web.settings)
    written = {Path(r.path).name: Path(r.path) for r in results}
    client = web.client()
    for name in (f"{WATER}.json", "all.json"):
        assert written[name].read_bytes() == client.get(f"/feeds/{name}").data


def test_pages_advertise_the_json_feeds(web: Web) -> None:
    client = web.client()
    home = client.get("/").text
    theme = client.get(f"/themes/{WATER}").text
    assert 'type="application/feed+json"' in home and 'href="/feeds/all.json"' in home
    assert f'type="application/feed+json" title="Water and Sanitation" href="/feeds/{WATER}.json"' in theme
