"""A language per practice, as its source says: an entry's xml:lang or dc:language, the feed's <language>, the
HTTP Content-Language, a JSON or CSV `language` field, the source's config entry; never guessed. Pages, mails and
feeds mark each practice with it (lang, xml:lang), so screen readers pronounce it right."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings, SourceConfig, load_settings
from digest.errors import ConfigError
from digest.feeds.files import build_feeds
from digest.ingest import ingest_sources
from digest.store.models import Practice
from digest.text.languages import first_tag, language_tag
from digest.web import create_app
from tests.conftest import at
from tests.feedserver import FeedServer

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
<title>Igualdad de género</title><link>https://practices.example.org/t/5</link><description></description>
{language}
<item><title>Compromiso por la igualdad</title><link>https://practices.example.org/p/1</link>
<description>Una red de municipios.</description><guid>p1</guid></item>
<item><title>Engagement pour l'égalité</title><link>https://practices.example.org/p/2</link>
<description>Un réseau de communes.</description><guid>p2</guid><dc:language>fr</dc:language></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="es"><title>Migración</title><id>urn:x</id>
<updated>2026-11-01T00:00:00Z</updated>
<entry><title>Acogida en el puerto</title><id>urn:a</id><updated>2026-11-01T00:00:00Z</updated>
<summary>Un programa.</summary><link href="https://practices.example.org/a"/></entry>
<entry xml:lang="en-gb"><title>Welcome at the port</title><id>urn:b</id><updated>2026-11-01T00:00:00Z</updated>
<summary>A programme.</summary><link href="https://practices.example.org/b"/></entry>
</feed>"""


def languages(sessions: sessionmaker[Session]) -> dict[str, str | None]:
    with sessions() as session:
        return {title: language for title, language in session.execute(select(Practice.title, Practice.language))}


def ingest(sessions: sessionmaker[Session], *sources: SourceConfig) -> list[object]:
    reports = ingest_sources(sessions, list(sources), clock.now())
    assert all(r.error is None for r in reports), [r.error for r in reports]
    return reports


@pytest.mark.parametrize(
    ("value", "tag"),
    [("es", "es"), (" ES-es ", "es-ES"), ("pt_br", "pt-BR"), ("sr-latn-rs", "sr-Latn-RS"), ("es-419", "es-419")],
)
def test_a_language_tag_is_read_in_its_usual_form(value: str, tag: str) -> None:
    assert language_tag(value) == tag


@pytest.mark.parametrize("value", ["", "English", "e", "es es", "fr;q=0.8", "123", None, 7])
def test_what_is_not_a_language_tag_is_none(value: object) -> None:
    assert language_tag(value) is None


def test_content_language_names_one_language_or_none() -> None:
    assert first_tag("de-DE") == "de-DE" and first_tag("de, en") is None and first_tag(None) is None


def test_rss_language_and_an_items_dc_language(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    at("2026-11-10T10:00:00Z")
    url = feed_server.serve("/es.rss", body=RSS.format(language="<language>es-es</language>").encode())
    ingest(sessions, SourceConfig(url))
    assert languages(sessions) == {"Compromiso por la igualdad": "es-ES", "Engagement pour l'égalité": "fr"}


def test_atom_xml_lang_of_the_feed_and_of_an_entry(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    at("2026-11-10T10:00:00Z")
    url = feed_server.serve("/m.atom", body=ATOM.encode(), content_type="application/atom+xml")
    ingest(sessions, SourceConfig(url, theme="Migration"))
    assert languages(sessions) == {"Acogida en el puerto": "es", "Welcome at the port": "en-GB"}


def test_http_content_language_then_the_config_entry_then_unknown(
    sessions: sessionmaker[Session], feed_server: FeedServer
) -> None:
    at("2026-11-10T10:00:00Z")
    body = RSS.format(language="").encode()
    header = feed_server.serve("/h.rss", body=body, headers={"Content-Language": "es"})
    ingest(sessions, SourceConfig(header))
    assert languages(sessions) == {"Compromiso por la igualdad": "es", "Engagement pour l'égalité": "fr"}
    # The feed saying nothing, the server nothing: the config entry's language; without it, unknown.
    configured = feed_server.serve("/c.rss", body=body.replace(b"p1", b"q1").replace(b"/p/1", b"/q/1"))
    ingest(sessions, SourceConfig(configured, theme="Other", language="pt-br"))
    with sessions() as session:
        found = session.scalars(select(Practice.language).where(Practice.url == "https://practices.example.org/q/1"))
        assert list(found) == ["pt-BR"]


def test_json_and_csv_language_fields_and_a_bad_one(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    at("2026-11-10T10:00:00Z")
    records = [
        {"id": "1", "title": "Huertos escolares", "themes": ["Food"], "language": "es"},
        {"id": "2", "title": "School gardens", "themes": ["Food"], "language": "English"},
        {"id": "3", "title": "Jardins scolaires", "themes": ["Food"]},
    ]
    export = tmp_path / "p.json"
    export.write_text(json.dumps({"practices": records}), encoding="utf-8")
    (report,) = ingest(sessions, SourceConfig(str(export)))
    assert languages(sessions) == {"Huertos escolares": "es", "School gardens": None, "Jardins scolaires": None}
    problems = [str(p) for p in report.problems]  # type: ignore[attr-defined]
    assert any("object 2" in p and "'English' is not a language tag" in p for p in problems), problems
    assert not any("unknown field" in p for p in problems), problems
    csv = tmp_path / "p.csv"
    csv.write_text("id,title,themes,language\n9,Comedores,Food,es-MX\n", encoding="utf-8")
    ingest(sessions, SourceConfig(str(csv)))
    assert languages(sessions)["Comedores"] == "es-MX"


def test_a_bad_language_in_a_source_entry_is_refused_at_load(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('[[sources]]\npath = "x.txt"\nlanguage = "Spanish"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="language 'Spanish' is not a language tag"):
        load_settings(str(config))


def test_pages_mails_and_feeds_mark_each_practice_with_its_language(
    sessions: sessionmaker[Session], settings: Settings, feed_server: FeedServer
) -> None:
    at("2026-11-10T10:00:00Z")
    url = feed_server.serve("/es.rss", body=RSS.format(language="<language>es</language>").encode())
    ingest(sessions, SourceConfig(url))
    client = create_app(settings).test_client()
    theme = client.get("/themes/igualdad-de-genero").text
    assert '<h2 lang="es" dir="ltr"><a' in theme and '<h2 lang="fr" dir="ltr"><a' in theme
    assert '<html lang="en">' in theme  # the page's own words stay English
    with sessions() as session:
        uid = session.scalar(select(Practice.uid).where(Practice.language == "fr"))
        build_feeds(session, settings)
    assert '<h1 lang="fr" dir="ltr">' in client.get(f"/practices/{uid}").text
    root = etree.fromstring((Path(settings.feeds_dir) / "igualdad-de-genero.atom").read_bytes())
    langs = [
        e.get("{http://www.w3.org/XML/1998/namespace}lang") for e in root.iter("{http://www.w3.org/2005/Atom}entry")
    ]
    assert sorted(langs) == ["es", "fr"]
    from tests.test_feed_readers import valid_atom

    valid_atom(etree.tostring(root), "languages")


def test_a_digest_marks_each_practice_with_its_language(
    sessions: sessionmaker[Session], settings: Settings, feed_server: FeedServer
) -> None:
    from digest.mail.build.recipient import links_for, render_for
    from digest.mail.plan.compose import DigestContent, PracticeEntry, ThemeSection

    entry = PracticeEntry(1, "u1", "Compromiso", "Una red.", None, None, "2026-11-10T10:00:00+00:00", language="es")
    plain = PracticeEntry(2, "u2", "Pledge", "A network.", None, None, "2026-11-10T10:00:00+00:00")
    content = DigestContent("2026-11-16", (ThemeSection("Equality", "equality", (entry, plain), 0),))
    html = render_for(settings, content, links_for(settings, "key")).html
    assert '<h3 lang="es" dir="ltr"' in html and '<span lang="es" dir="ltr">Una red.</span>' in html
    assert DigestContent.from_json(content.to_json()).sections[0].practices[0].language == "es"


# Subscribers who want practices in some languages only ---------------------------------------------------------------

MIXED = [
    {"id": "es1", "title": "Huertos escolares", "themes": ["Food"], "language": "es-MX", "summary": "Huertos."},
    {"id": "en1", "title": "School gardens", "themes": ["Food"], "language": "en", "summary": "Gardens."},
    {"id": "xx1", "title": "Jardins scolaires", "themes": ["Food"], "summary": "Jardins."},
]


def test_a_digest_and_the_personal_feed_hold_only_the_chosen_languages(web: Any, tmp_path: Path) -> None:
    import feedparser

    from tests.test_feed_readers import feed_link, manage_post
    from tests.webapp import confirmed

    at("2026-11-09T10:00:00Z")
    ingest(web.sessions, SourceConfig(_export(tmp_path / "old.json", [dict(MIXED[0], id="old", title="Antes")])))
    clock.set_fixed_now(None)
    manage = confirmed(web, "ada@example.org", "food")
    page = web.client().get(manage).text
    assert 'lang="es">Español</label>' in page  # the languages practices here are written in, by their own names
    manage_post(web, manage, action="languages", language="es")
    at("2026-11-12T10:00:00Z")
    ingest(web.sessions, SourceConfig(_export(tmp_path / "new.json", MIXED)))
    at("2026-12-07T09:00:00Z")
    web.send()
    body = web.mails_to("ada@example.org")[-1].get_body(("plain",)).get_content()
    assert "Huertos escolares" in body and "Jardins scolaires" in body  # Spanish (es-MX), and unknown
    assert "School gardens" not in body
    clock.set_fixed_now(None)
    titles = {e.title for e in feedparser.parse(web.client().get(feed_link(web, manage)).data).entries}
    assert titles == {"Antes", "Huertos escolares", "Jardins scolaires"}
    # Every language again: the feed shows them all (its validators moved with the choice).
    manage_post(web, manage, action="languages")
    titles = {e.title for e in feedparser.parse(web.client().get(feed_link(web, manage)).data).entries}
    assert "School gardens" in titles


def test_a_bad_language_is_refused_naming_the_field(web: Any, run_cli: Any) -> None:
    from tests.webapp import WATER, confirmed, csrf

    manage = confirmed(web, "ada@example.org", WATER)
    client = web.client()
    token = csrf(client, manage)
    answer = client.post(manage, data={"csrf_token": token, "action": "languages", "language": "Spanish; DROP"})
    assert answer.status_code == 303
    assert "languages: &#39;Spanish; DROP&#39; is not a language tag" in client.get(manage).text
    assert run_cli("ingest", "tests/fixtures/listing-water.txt").exit_code == 0
    assert run_cli("subscribe", "bob@example.org", "--theme", "Water and Sanitation", "--confirmed").exit_code == 0
    done = run_cli("subscribers", "set", "bob@example.org", "--practice-languages", "es klingon!")
    assert done.exit_code == 1 and "languages: 'klingon!' is not a language tag" in done.output
    done = run_cli("subscribers", "set", "bob@example.org", "--practice-languages", "ES fr")
    assert done.exit_code == 0 and "practices in es fr only" in done.output


def _export(path: Path, records: list[dict[str, object]]) -> str:
    path.write_text(json.dumps({"practices": records}), encoding="utf-8")
    return str(path)
