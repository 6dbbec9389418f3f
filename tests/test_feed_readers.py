"""The feeds as readers get them: valid Atom (RFC 4287's RELAX NG schema), every entry a link, categories, the
same bytes on disk and on the web, conditional GET answered before rendering, gzip, RFC 5005 archives that reach
every practice once, a personal feed behind its own revocable link, and bad paths answered 404."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import sqlite3
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from lxml import etree
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings, SourceConfig
from digest.feeds.files import build_feeds
from digest.ingest import ingest_sources
from digest.subscriptions.tokens import Purpose, make_token
from digest.web import create_app
from tests.conftest import at, fixture_path
from tests.webapp import GOAL6, WATER, Web, confirmed, csrf, subscribe

ATOM = "{http://www.w3.org/2005/Atom}"
HISTORY = "{http://purl.org/syndication/history/1.0}"
SCHEMA = etree.RelaxNG(etree.parse(str(Path(__file__).parent / "fixtures" / "atom.rng")))


def valid_atom(data: bytes, where: str) -> etree._Element:
    """The document's root, once RFC 4287's schema and its appendix's two Schematron rules hold (an author for
    every entry, and a link rel=alternate or a content in each), and feedparser reads it without complaint."""
    root = etree.fromstring(data)
    assert SCHEMA.validate(etree.ElementTree(root)), f"{where}: {SCHEMA.error_log}"
    feed_author = root.find(f"{ATOM}author") is not None
    for entry in root.iter(f"{ATOM}entry"):
        assert feed_author or entry.find(f"{ATOM}author") is not None, where
        links = [link for link in entry.findall(f"{ATOM}link") if link.get("rel", "alternate") == "alternate"]
        assert links or entry.find(f"{ATOM}content") is not None, where
    parsed = feedparser.parse(data)
    assert not parsed.bozo, (where, parsed.get("bozo_exception"))
    return root


def export(path: Path, count: int, theme: str, start: int = 0, with_url: bool = True) -> str:
    """A JSON export of ``count`` practices in ``theme`` (every other one with a source URL)."""
    items = [
        {
            "id": f"p-{n}",
            "title": f"Practice number {n}",
            "summary": f"What practice {n} does.",
            "themes": [theme],
            **({"url": f"https://source.example.org/p/{n}"} if with_url and n % 2 else {}),
        }
        for n in range(start, start + count)
    ]
    path.write_text(json.dumps({"practices": items}), encoding="utf-8")
    return str(path)


def ingest(sessions: sessionmaker[Session], *locations: str) -> None:
    reports = ingest_sources(sessions, [SourceConfig(location) for location in locations], clock.now())
    assert all(r.ok for r in reports), [r.error for r in reports]


# Every entry a link ---------------------------------------------------------------------------------------------


def test_every_entry_links_to_a_page_and_every_feed_to_its_theme_page(web: Web) -> None:
    client = web.client()
    for name in (f"{WATER}.atom", f"{GOAL6}.atom", "all.atom"):
        answer = client.get(f"/feeds/{name}")
        assert answer.status_code == 200
        root = valid_atom(answer.data, name)
        feed_links = {link.get("rel"): link.get("href") for link in root.findall(f"{ATOM}link")}
        assert feed_links["self"] == f"{web.settings.base_url}/feeds/{name}"
        expected_page = f"{web.settings.base_url}/" if name == "all.atom" else f"{web.settings.base_url}/themes/"
        assert feed_links["alternate"].startswith(expected_page)
        if name != "all.atom":
            assert client.get(feed_links["alternate"].removeprefix(web.settings.base_url)).status_code == 200
        entries = root.findall(f"{ATOM}entry")
        assert entries
        for entry in entries:
            alternate = [link for link in entry.findall(f"{ATOM}link") if link.get("rel") == "alternate"]
            assert len(alternate) == 1 and alternate[0].get("href"), etree.tostring(entry)
            href = alternate[0].get("href")
            assert href.startswith(("https://", "http://"))
            if href.startswith(web.settings.base_url):
                # Ours: the practice's page, which exists.
                assert client.get(href.removeprefix(web.settings.base_url)).status_code == 200
            categories = entry.findall(f"{ATOM}category")
            assert categories and all(c.get("term") and c.get("label") for c in categories)
    # The listing fixtures carry no source URLs: every entry links to its page here.
    water = etree.fromstring(client.get(f"/feeds/{WATER}.atom").data)
    first = water.find(f"{ATOM}entry")
    assert first is not None
    link = first.find(f"{ATOM}link")
    assert link is not None and "/practices/" in link.get("href", "")
    assert link.get("type") == "text/html"


def test_a_source_url_is_the_alternate_and_our_page_the_related_link(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    at("2026-11-10T10:00:00Z")
    ingest(sessions, export(tmp_path / "x.json", 4, "Water"))
    with sessions() as session:
        build_feeds(session, settings)
    parsed = feedparser.parse((Path(settings.feeds_dir) / "water.atom").read_bytes())
    for entry in parsed.entries:
        number = int(entry.title.rsplit(" ", 1)[1])
        rels = {link.rel: link.href for link in entry.links}
        if number % 2:
            assert rels["alternate"] == f"https://source.example.org/p/{number}"
            assert rels["related"].startswith("https://digest.test/practices/")
        else:
            assert rels["alternate"].startswith("https://digest.test/practices/")
        assert entry.link == rels["alternate"]
        assert [t.term for t in entry.tags] == ["water"] and entry.tags[0].label == "Water"


def test_files_and_served_documents_are_the_same_bytes(web: Web) -> None:
    with web.sessions() as session:
        results = build_feeds(session, web.settings)
    assert results and not any(r.error for r in results)
    client = web.client()
    for result in results:
        name = Path(result.path).relative_to(web.settings.feeds_dir).as_posix()
        assert client.get(f"/feeds/{name}").data == Path(result.path).read_bytes(), name


def test_newsboat_reads_every_entry_with_a_link(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """A real reader: newsboat reloads the feeds written to disk and stores every entry with a non-empty URL."""
    newsboat = shutil.which("newsboat")
    if newsboat is None:
        pytest.skip("newsboat is not installed here (.ci/run installs it: apt-get install newsboat)")
    at("2026-11-10T10:00:00Z")
    ingest(sessions, fixture_path("listing-water.txt"), fixture_path("listing-goal6.txt"))
    ingest(sessions, export(tmp_path / "x.json", 6, "Water and Sanitation"))
    with sessions() as session:
        build_feeds(session, settings)
    feeds = sorted(Path(settings.feeds_dir).glob("*.atom"))
    urls = tmp_path / "urls"
    urls.write_text("".join(f"file://{path}\n" for path in feeds), encoding="utf-8")
    cache = tmp_path / "cache.db"
    done = subprocess.run(
        [newsboat, "-u", str(urls), "-c", str(cache), "-C", "/dev/null", "-x", "reload"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "TERM": "dumb"},
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(cache) as db:
        rows = db.execute("SELECT feedurl, title, url FROM rss_item").fetchall()
    # newsboat keeps an item once by its id, whichever feeds list it (all.atom and a theme's).
    expected = {e.id for path in feeds for e in feedparser.parse(path.read_bytes()).entries}
    assert len(rows) == len(expected) > 10
    empty = [(feed, title) for feed, title, url in rows if not url]
    assert not empty, empty
    assert all(url.startswith(("https://digest.test/practices/", "https://source.example.org/")) for _, _, url in rows)


# Conditional GET, the cache, compression -------------------------------------------------------------------------


def count_renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the documents the web app renders from now on."""
    from digest.web import feeds

    rendered: list[str] = []
    original = feeds.render_document

    def counted(session: Any, settings: Settings, document: Any, as_json: bool = False) -> Any:
        rendered.append(document.path.removesuffix(".atom") + ".json" if as_json else document.path)
        return original(session, settings, document, as_json)

    monkeypatch.setattr(feeds, "render_document", counted)
    return rendered


def test_a_reader_that_has_the_feed_gets_304_before_anything_is_rendered(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = web.client()
    rendered = count_renders(monkeypatch)
    first = client.get(f"/feeds/{WATER}.atom")
    assert rendered == [f"{WATER}.atom"]
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert set(first.headers["Cache-Control"].split(", ")) == {"public", "max-age=300"}
    assert "Accept-Encoding" in first.headers["Vary"]
    assert client.get(f"/feeds/{WATER}.atom", headers={"If-None-Match": etag}).status_code == 304
    assert client.get(f"/feeds/{WATER}.atom", headers={"If-None-Match": f'"other", {etag}'}).status_code == 304
    assert client.get(f"/feeds/{WATER}.atom", headers={"If-Modified-Since": modified}).status_code == 304
    # Rendered once already: the next 200 comes from the process's cache.
    again = client.get(f"/feeds/{WATER}.atom")
    assert again.status_code == 200 and again.data == first.data and again.headers["ETag"] == etag
    assert client.get(f"/feeds/{WATER}.atom", headers={"If-None-Match": '"stale"'}).status_code == 200
    assert rendered == [f"{WATER}.atom"]
    # Another document is not in the cache: it is rendered, once.
    client.get(f"/feeds/{GOAL6}.atom")
    client.get(f"/feeds/{GOAL6}.atom")
    assert rendered == [f"{WATER}.atom", f"{GOAL6}.atom"]


def test_validators_change_when_the_feed_does_and_only_then(web: Web, tmp_path: Path) -> None:
    client = web.client()
    before = client.get(f"/feeds/{WATER}.atom")
    other = client.get(f"/feeds/{GOAL6}.atom")
    everything = client.get("/feeds/all.atom")
    at("2026-11-20T10:00:00Z")
    ingest(web.sessions, fixture_path("listing-water.txt"))  # nothing new
    assert client.get(f"/feeds/{WATER}.atom", headers={"If-None-Match": before.headers["ETag"]}).status_code == 304
    ingest(web.sessions, fixture_path("listing-water-week2.txt"))
    after = client.get(f"/feeds/{WATER}.atom", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"]
    assert b"Greywater Reuse" in after.data
    assert after.headers["Last-Modified"] != before.headers["Last-Modified"]
    # The feed of all practices changed with it; a theme the ingest did not touch did not.
    assert client.get("/feeds/all.atom", headers={"If-None-Match": everything.headers["ETag"]}).status_code == 200
    assert client.get(f"/feeds/{GOAL6}.atom", headers={"If-None-Match": other.headers["ETag"]}).status_code == 304
    # A setting that shapes the documents gives new validators.
    moved = create_app(replace(web.settings, base_url="https://elsewhere.example.org")).test_client()
    assert moved.get(f"/feeds/{GOAL6}.atom", headers={"If-None-Match": other.headers["ETag"]}).status_code == 200


def test_feeds_and_pages_are_gzipped_for_clients_that_take_it(web: Web, tmp_path: Path) -> None:
    at("2026-11-10T10:00:00Z")
    ingest(web.sessions, export(tmp_path / "x.json", 40, "Water and Sanitation"))
    client = web.client()
    plain = client.get(f"/feeds/{WATER}.atom")
    packed = client.get(f"/feeds/{WATER}.atom", headers={"Accept-Encoding": "gzip, deflate"})
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.data) == plain.data and len(packed.data) < len(plain.data) / 3
    # Each representation has its own strong validator; either one answers 304.
    assert packed.headers["ETag"] != plain.headers["ETag"]
    for etag in (plain.headers["ETag"], packed.headers["ETag"]):
        answer = client.get(f"/feeds/{WATER}.atom", headers={"If-None-Match": etag, "Accept-Encoding": "gzip"})
        assert answer.status_code == 304
    home = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert home.headers["Content-Encoding"] == "gzip" and b"<html" in gzip.decompress(home.data)
    theme = client.get(f"/themes/{WATER}", headers={"Accept-Encoding": "gzip"})
    assert theme.headers["Content-Encoding"] == "gzip"
    assert client.get("/", headers={"Accept-Encoding": "identity"}).headers.get("Content-Encoding") is None


def test_a_page_that_carries_a_signed_link_or_echoes_a_form_is_not_compressed(web: Web) -> None:
    """BREACH: a compressed page holding a secret beside text an attacker chose leaks the secret by its length."""
    manage = confirmed(web, "ada@example.org", WATER)
    client = web.client()
    page = client.get(manage, headers={"Accept-Encoding": "gzip"})
    assert page.status_code == 200 and "Content-Encoding" not in page.headers
    token = csrf(client, "/")
    echoed = client.post(
        "/subscribe", data={"csrf_token": token, "email": "x" * 900}, headers={"Accept-Encoding": "gzip"}
    )
    assert echoed.status_code == 400 and "Content-Encoding" not in echoed.headers


# RFC 5005 archives ----------------------------------------------------------------------------------------------


def follow_archives(client: Any, path: str) -> list[str]:
    """Every entry id from the current document back through prev-archive, checking each document on the way."""
    ids: list[str] = []
    seen: set[str] = set()
    while path:
        answer = client.get(path)
        assert answer.status_code == 200, path
        root = valid_atom(answer.data, path)
        ids.extend(e.findtext(f"{ATOM}id") or "" for e in root.findall(f"{ATOM}entry"))
        links = {link.get("rel"): link.get("href") for link in root.findall(f"{ATOM}link")}
        if "/archives/" in path:
            assert root.find(f"{HISTORY}archive") is not None, path
            assert links["current"].endswith(".atom") and "/archives/" not in links["current"]
            assert set(answer.headers["Cache-Control"].split(", ")) == {"public", "max-age=604800"}
        else:
            assert root.find(f"{HISTORY}archive") is None
        assert path not in seen
        seen.add(path)
        nxt = links.get("prev-archive")
        path = nxt.removeprefix("https://digest.test") if nxt else ""
    return ids


@pytest.mark.parametrize("count", [4, 5, 9, 10, 23])
def test_following_prev_archive_reaches_every_practice_exactly_once(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path, count: int
) -> None:
    settings = replace(settings, feed_max_entries=5)
    at("2026-11-10T10:00:00Z")
    ingest(sessions, export(tmp_path / "a.json", count, "Water"))
    client = create_app(settings).test_client()
    ids = follow_archives(client, "/feeds/water.atom")
    assert len(ids) == len(set(ids)) == count
    current = feedparser.parse(client.get("/feeds/water.atom").data)
    assert min(count, 5) <= len(current.entries) <= max(count, 9) if count >= 5 else len(current.entries) == count
    # The feed of all practices pages the same way.
    assert len(set(follow_archives(client, "/feeds/all.atom"))) == count
    # An archive is immutable: more practices leave every existing archive as it was.
    archives = {n: client.get(f"/feeds/archives/water/{n}.atom").data for n in range(1, (count - 5) // 5 + 1)}
    at("2026-11-11T10:00:00Z")
    ingest(sessions, export(tmp_path / "b.json", 7, "Water", start=1000))
    client = create_app(settings).test_client()
    for number, data in archives.items():
        assert client.get(f"/feeds/archives/water/{number}.atom").data == data
    ids = follow_archives(client, "/feeds/water.atom")
    assert len(ids) == len(set(ids)) == count + 7
    # Files hold the same documents.
    with sessions() as session:
        written = {Path(r.path).relative_to(settings.feeds_dir).as_posix() for r in build_feeds(session, settings)}
    assert {f"archives/water/{n}.atom" for n in range(1, (count + 7 - 5) // 5 + 1)} <= written


def test_an_archive_that_does_not_exist_is_404(web: Web) -> None:
    client = web.client()
    for path in (
        "/feeds/archives/water-and-sanitation/1.atom",
        "/feeds/archives/nothing/1.atom",
        "/feeds/archives/all/0.atom",
        "/feeds/archives/all/-1.atom",
        "/feeds/archives/all/99.atom",
    ):
        assert client.get(path).status_code == 404, path


# Bad paths ------------------------------------------------------------------------------------------------------


def test_bad_feed_paths_are_404_without_a_traceback(web: Web, caplog: pytest.LogCaptureFixture) -> None:
    client = web.client()
    for path in (
        "/feeds/nothing.atom",
        "/feeds/..",
        "/feeds/../digest.db",
        "/feeds/..%2F..%2Fetc%2Fpasswd",
        "/feeds/%2e%2e%2fall.atom",
        "/feeds/water-and-sanitation.xml",
        "/feeds/archives/..%2Fwater-and-sanitation/1.atom",
        "/feeds/me/not-a-token.atom",
        "/feeds/" + "a" * 10_000 + ".atom",
        "/feeds/all.atom%00",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, (path[:80], answer.status_code)
        assert b"Traceback" not in answer.data
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# The personal feed ------------------------------------------------------------------------------------------------


def feed_link(web: Web, manage: str) -> str:
    """The personal feed's path, as the manage page shows it."""
    page = web.client().get(manage).text
    match = re.search(r'id="feed-url"[^>]*value="([^"]+)"', page)
    assert match, "no feed link on the manage page"
    assert match.group(1).startswith(web.settings.base_url + "/feeds/me/")
    return match.group(1).removeprefix(web.settings.base_url)


def manage_post(web: Web, manage: str, **form: str) -> None:
    client = web.client()
    answer = client.post(manage, data={"csrf_token": csrf(client, manage), **form})
    assert answer.status_code == 303, answer.text


def test_the_personal_feed_holds_each_practice_of_ones_themes_once(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER, GOAL6)
    path = feed_link(web, manage)
    client = web.client()
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert "private" in answer.headers["Cache-Control"] and "public" not in answer.headers["Cache-Control"]
    assert "hub" not in answer.headers["Link"]
    root = valid_atom(answer.data, "personal")
    ids = [e.findtext(f"{ATOM}id") for e in root.findall(f"{ATOM}entry")]
    water = {e.id for e in feedparser.parse(client.get(f"/feeds/{WATER}.atom").data).entries}
    goal6 = {e.id for e in feedparser.parse(client.get(f"/feeds/{GOAL6}.atom").data).entries}
    assert len(ids) == len(set(ids)) and set(ids) == water | goal6 and water & goal6  # the kiosk is in both, once
    # Conditional GET works for it as for the public feeds.
    assert client.get(path, headers={"If-None-Match": answer.headers["ETag"]}).status_code == 304
    # Another person's feed holds their themes only.
    other = feed_link(web, confirmed(web, "bob@example.org", GOAL6))
    assert {e.id for e in feedparser.parse(client.get(other).data).entries} == goal6
    # Choosing other themes changes the feed (and its validators).
    manage_post(web, manage, action="themes", theme=GOAL6)
    narrowed = client.get(path, headers={"If-None-Match": answer.headers["ETag"]})
    assert narrowed.status_code == 200 and {e.id for e in feedparser.parse(narrowed.data).entries} == goal6


def test_only_the_feed_link_opens_the_feed_and_a_new_link_or_erasure_revokes_it(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    path = feed_link(web, manage)
    client = web.client()
    assert client.get(path).status_code == 200
    token = path.removeprefix("/feeds/me/").removesuffix(".atom")
    key = web.key("ada@example.org")
    secret = web.settings.secret_key
    for wrong in (
        manage.removeprefix("/manage/"),  # a manage link's token
        make_token(secret, Purpose.UNSUBSCRIBE, key),
        make_token(secret, Purpose.FEED, key),  # the subscriber key signed as a feed: not their feed key
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # tampered
        make_token("another-secret-0123456789abcdef", Purpose.FEED, token),
    ):
        assert client.get(f"/feeds/me/{wrong}.atom").status_code == 404
    # The feed's token opens nothing else.
    assert client.get(f"/manage/{token}").status_code == 404
    assert client.get(f"/unsubscribe/{token}").status_code == 404

    manage_post(web, manage, action="feed-link")
    assert client.get(path).status_code == 404
    renewed = feed_link(web, manage)
    assert renewed != path and client.get(renewed).status_code == 200
    # Leaving closes the feed; so does erasure, for good.
    manage_post(web, manage, action="leave")
    assert client.get(renewed).status_code == 404
    erase = web.client()
    answer = erase.post(manage + "/erase", data={"csrf_token": csrf(erase, manage), "confirm": "yes"})
    assert answer.status_code == 200
    assert client.get(renewed).status_code == 404


def test_feed_only_sends_no_mail_and_mail_again_starts_from_now(web: Web, tmp_path: Path) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    manage_post(web, manage, action="delivery", delivery="feed")
    assert web.client().get(manage).text.count('value="feed" checked') == 1
    at("2026-11-12T10:00:00Z")
    ingest(web.sessions, export(tmp_path / "a.json", 3, "Water and Sanitation"))
    at("2026-11-30T10:00:00Z")
    web.send()
    assert web.mails_to("ada@example.org")[2:] == []  # the confirmation and the welcome only
    clock.set_fixed_now(None)
    path = feed_link(web, manage)
    assert "Practice number 2" in web.client().get(path).text
    # Back to mail: the first digest holds what is new from then on, not what the feed already showed.
    at("2026-11-30T11:00:00Z")
    manage_post(web, manage, action="delivery", delivery="mail")
    at("2026-12-02T10:00:00Z")
    ingest(web.sessions, export(tmp_path / "b.json", 2, "Water and Sanitation", start=50))
    at("2026-12-14T10:00:00Z")
    web.send()
    (digest,) = web.mails_to("ada@example.org")[2:]
    body = digest.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Practice number 50" in text and "Practice number 2" not in text


def test_over_a_month_the_personal_feed_holds_what_the_digests_gave(web: Web, tmp_path: Path) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    path = feed_link(web, manage)
    before = {e.id for e in feedparser.parse(web.client().get(path).data).entries}
    mailed: set[str] = set()
    for week in range(4):
        thursday = datetime(2026, 11, 12, 10, tzinfo=UTC) + timedelta(weeks=week)
        clock.set_fixed_now(thursday)
        ingest(web.sessions, export(tmp_path / f"w{week}.json", 3, "Water and Sanitation", start=100 * week))
        clock.set_fixed_now(thursday + timedelta(days=4, hours=-1))  # Monday 09:00 UTC: the digest is due
        web.send()
    for message in web.mails_to("ada@example.org")[1:]:
        body = message.get_body(("plain",))
        assert body is not None
        mailed |= set(re.findall(r"Practice number \d+", body.get_content()))
    clock.set_fixed_now(None)
    entries = feedparser.parse(web.client().get(path).data).entries
    in_feed = {e.title for e in entries if e.id not in before}
    assert len(mailed) == 12 and in_feed == mailed


def test_the_home_page_is_kept_until_a_theme_changes_and_each_visitor_gets_a_token(web: Web, tmp_path: Path) -> None:
    first, second = web.client(), web.client()
    tokens = {csrf(first, "/"), csrf(second, "/")}
    assert len(tokens) == 2  # kept page, fresh token per visitor
    assert "Practice number 7" not in first.get("/").text
    at("2026-11-20T10:00:00Z")
    ingest(web.sessions, export(tmp_path / "a.json", 8, "Brand New Theme"))
    page = first.get("/").text
    assert "Brand New Theme" in page and "Practice number 7" in page
    # The kept page's form still posts with the visitor's own token.
    assert subscribe(second, "eve@example.org", "brand-new-theme")[0] == 303


def test_the_feeds_migration_keeps_every_row_and_dates_each_theme(tmp_path: Path) -> None:
    """0015 adds columns in place: on SQLite a copy-and-move of themes or subscribers would cascade-delete their
    memberships, subscriptions and digests."""
    from sqlalchemy import text

    from digest.store import db

    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    db.upgrade(engine, "0014")
    statements = [
        "INSERT INTO themes (id, name, slug, created_at) VALUES (1, 'Water', 'water', '2026-11-01 10:00:00')",
        "INSERT INTO practices (id, uid, identity, title, title_derived, summary, first_seen_at, updated_at,"
        " content_hash) VALUES (1, 'u1', 'text:1', 'T', 0, 'S', '2026-11-02 10:00:00', '2026-11-05 10:00:00', 'h')",
        "INSERT INTO memberships (id, practice_id, theme_id, added_at) VALUES (1, 1, 1, '2026-11-02 10:00:00')",
        "INSERT INTO subscribers (id, email, key, status, bounces, created_at) VALUES"
        " (1, 'a@example.org', 'k1', 'confirmed', 0, '2026-11-01 10:00:00')",
        "INSERT INTO subscriptions (id, subscriber_id, theme_id, created_at, cursor) VALUES"
        " (1, 1, 1, '2026-11-01 10:00:00', 0)",
        "INSERT INTO contents (hash, body, created_at) VALUES ('c', '{}', '2026-11-02 10:00:00')",
        "INSERT INTO digests (subscriber_id, period, status, message_id, subject, content_hash, planned_at, attempts)"
        " VALUES (1, 'p', 'sent', '<m@d.test>', 's', 'c', '2026-11-02 10:00:00', 1)",
    ]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    db.upgrade(engine)
    with engine.connect() as conn:
        counts = [conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in ("memberships", "subscriptions", "digests")]
        theme = conn.execute(text("SELECT revision, changed_at FROM themes")).one()
        feed_key = conn.scalar(text("SELECT feed_key FROM subscribers"))
    engine.dispose()
    assert counts == [1, 1, 1]
    assert theme[0] == 1 and str(theme[1]).startswith("2026-11-05 10:00:00")  # the practice's change
    assert feed_key and len(feed_key) >= 20
