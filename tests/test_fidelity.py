"""Ingest that is right in every script and every encoding: identity, decoding, names, links, and a corpus of
feeds in the shapes real sites produce (each written here, small, and asserted on what is stored).

Runs on SQLite, and the store-level cases on PostgreSQL too."""

from __future__ import annotations

import codecs
import hashlib
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import SourceConfig
from digest.ingest import ingest_sources, parse_bytes
from digest.ingest.encoding import decode
from digest.store import db
from digest.store.models import Membership, Practice, PracticeKey, Theme
from tests.conftest import Cli, at, fixture_path
from tests.feedserver import FeedServer

LISTINGS = {
    "ru": (
        "Миграция и связь",
        {
            "Программа поддержки мигрантов в Казани",
            "Мобильные консультации в сельских районах",
            "Горячая линия для трудовых мигрантов работает круглосуточно на пяти языках",
        },
    ),
    "ar": (
        "الهدف 5: المساواة بين الجنسين",
        {
            "برنامج دعم رائدات الأعمال في الدار البيضاء وتطوير مهاراتهن في التسويق الرقمي والإدارة المالية",
            "مراكز الاستماع للنساء في الأرياف",
        },
    ),
    "zh": ("目標5：性別平等", {"台北婦女創業輔導計畫", "社區托育中心", "鄉村女性數位技能課程"}),
    "es": (
        "Migración y conectividad",
        {"Programa de acogida para familias migrantes en Lima", "Red de bibliotecas rurales en Cusco y Apurímac"},
    ),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'digest.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = db.make_engine(url)
    db.upgrade(engine)
    yield db.session_factory(engine)
    engine.dispose()


def stored(sessions: sessionmaker[Session]) -> dict[str, Practice]:
    with sessions() as s:
        return {p.title: p for p in s.scalars(select(Practice))}


def themes_of(sessions: sessionmaker[Session]) -> dict[str, list[str]]:
    with sessions() as s:
        rows = s.execute(
            select(Practice.title, Theme.name)
            .join(Membership, Membership.practice_id == Practice.id)
            .join(Theme, Theme.id == Membership.theme_id)
            .order_by(Membership.id)
        )
        out: dict[str, list[str]] = {}
        for title, theme in rows:
            out.setdefault(title, []).append(theme)
        return out


def ingest(sessions: sessionmaker[Session], *sources: SourceConfig) -> list[object]:
    reports = ingest_sources(sessions, list(sources), clock.now())
    assert all(r.ok for r in reports), [(r.error, r.rejected) for r in reports]
    return list(reports)


# -- identity ---------------------------------------------------------------------------------------------------


def test_listings_in_four_scripts_keep_every_practice_apart(store: sessionmaker[Session]) -> None:
    at("2026-11-10T10:00:00Z")
    ingest(store, *(SourceConfig(fixture_path(f"listing-{lang}.txt")) for lang in LISTINGS))
    practices = stored(store)
    assert set(practices) == set().union(*(titles for _, titles in LISTINGS.values()))
    by_theme = themes_of(store)
    for theme, titles in LISTINGS.values():
        assert all(by_theme[t] == [theme] for t in titles)
    with store() as s:
        assert len(set(s.scalars(select(Theme.slug)))) == 4  # distinct slugs for names in any script
    # Read again: nothing is new, nothing moves.
    again = ingest_sources(store, [SourceConfig(fixture_path(f"listing-{lang}.txt")) for lang in LISTINGS], clock.now())
    assert sum(r.new + r.updated + r.joined for r in again) == 0


def test_reports_quote_other_scripts_readably(run_cli: Cli) -> None:
    result = run_cli("ingest", fixture_path("listing-zh.txt"), fixture_path("listing-ru.txt"))
    assert result.exit_code == 0
    assert "目標5：性別平等: 3 new" in result.stdout
    assert "'鄉村女性數位技能課程'" in result.stdout and "\\u" not in result.stdout
    assert "'Горячая линия для трудовых мигрантов работает круглосуточно на пяти языках'" in result.stdout


def test_a_fingerprint_match_with_a_different_title_is_another_practice(
    store: sessionmaker[Session], tmp_path: Path
) -> None:
    at("2026-11-10T10:00:00Z")
    listing = tmp_path / "code.txt"
    body = "Children learn programming after school in public libraries."
    listing.write_text(
        f"C++ in schools\n\nSubmitted by A on\n\n{body}\n\nC in schools\n\nSubmitted by B on\n\n{body}\n\n"
        "Subscribe to Education\n",
        encoding="utf-8",
    )
    ingest(store, SourceConfig(str(listing)))
    assert set(stored(store)) == {"C++ in schools", "C in schools"}


def _old_fingerprint(*parts: str) -> str:
    """The fingerprint of schema 0005 and before: ASCII letters and digits only."""
    import re

    words: list[str] = []
    for part in parts:
        folded = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode("ascii").lower()
        words.extend(re.findall(r"[a-z0-9]+", folded))
    return hashlib.sha256(" ".join(words).encode()).hexdigest()[:32]


def test_practices_stored_before_the_new_fingerprint_keep_their_identity(tmp_path: Path) -> None:
    """Schema 0005 rows, keyed by the old fingerprint: after migration 0006 the same listing finds them."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    db.upgrade(engine, "0005")
    old = parse_bytes(Path(fixture_path("listing-goal6.txt")).read_bytes(), "goal6")
    with engine.begin() as conn:
        for n, item in enumerate(old.items, 1):
            identity = "text:" + _old_fingerprint(
                "" if item.title_derived else item.title, item.summary.split("\n\n", 1)[0]
            )
            key = hashlib.sha256(identity.encode()).hexdigest()[:40]
            conn.exec_driver_sql(
                "INSERT INTO practices (id, uid, identity, title, title_derived, summary, first_seen_at, updated_at,"
                " content_hash) VALUES (?, ?, ?, ?, ?, ?, '2026-11-01 10:00:00', '2026-11-01 10:00:00', 'h')",
                (n, key, identity, item.title, item.title_derived, item.summary),
            )
            conn.exec_driver_sql("INSERT INTO practice_keys (key, practice_id) VALUES (?, ?)", (key, n))
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    with sessions() as s:
        assert s.scalar(select(PracticeKey).where(PracticeKey.practice_id == 1).limit(1)) is not None
    at("2026-11-10T10:00:00Z")
    (report,) = ingest_sources(sessions, [SourceConfig(fixture_path("listing-goal6.txt"))], clock.now())
    assert report.new == 0 and report.updated == len(old.items)  # found (hash 'h' differs), never duplicated
    assert len(stored(sessions)) == len(old.items)
    engine.dispose()


# -- names and links ----------------------------------------------------------------------------------------------


def test_theme_names_from_feed_titles_are_cleaned(store: sessionmaker[Session], tmp_path: Path) -> None:
    at("2026-11-10T10:00:00Z")
    feed = tmp_path / "feed.rss"
    feed.write_text(
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        "<title>\n\t  Connectivity\n\tand   Migration \u0007 </title>"
        "<item><title>Seed Banks</title><guid>s1</guid><description>x</description></item>"
        "</channel></rss>",
        encoding="utf-8",
    )
    ingest(store, SourceConfig(str(feed)))
    with store() as s:
        assert list(s.scalars(select(Theme.name))) == ["Connectivity and Migration"]


def test_an_empty_theme_name_is_an_error_for_that_item(store: sessionmaker[Session], tmp_path: Path) -> None:
    import json

    at("2026-11-10T10:00:00Z")
    path = tmp_path / "e.json"
    path.write_text(json.dumps([{"title": "A", "themes": ["Food", " \n\t"]}, {"title": "B", "themes": ["Food"]}]))
    (report,) = ingest_sources(store, [SourceConfig(str(path))], clock.now())
    assert [p.where for p in report.rejected] == ["object 1"] and "none empty" in report.rejected[0].reason
    assert set(stored(store)) == {"B"}


def test_relative_links_in_summaries_become_absolute(store: sessionmaker[Session], feed_server: FeedServer) -> None:
    at("2026-11-10T10:00:00Z")
    body = b"""<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Water</title>
<link>https://site.example/theme/water</link><description>x</description>
<item><title>Kiosks</title><link>/node/12</link><guid isPermaLink="false">12 at https://site.example</guid>
<description>&lt;p&gt;See &lt;a href="/node/12#more"&gt;the report&lt;/a&gt; and
&lt;a href="#comment-4"&gt;4 comments&lt;/a&gt; and &lt;a href="files/plan.pdf"&gt;the plan&lt;/a&gt;.&lt;/p&gt;</description>
</item></channel></rss>"""
    url = feed_server.serve("/taxonomy/term/7/feed", body=body)
    ingest(store, SourceConfig(url))
    practice = stored(store)["Kiosks"]
    assert practice.url == "https://site.example/node/12"  # against the feed's link
    html = practice.summary_html or ""
    assert 'href="https://site.example/node/12#more"' in html
    assert 'href="https://site.example/node/files/plan.pdf"' in html  # against the entry's link
    assert "4 comments" in html and "#comment-4" not in html  # fragment-only: the link goes, the text stays
    assert 'href="/' not in html and 'href="#' not in html and 'href="files' not in html


# -- encodings ----------------------------------------------------------------------------------------------------

RU_TITLE, RU_TEXT = "Программа поддержки мигрантов в Казани", "Городской центр помогает семьям мигрантов найти жильё."
ZH_TITLE, ZH_TEXT = "台北婦女創業輔導計畫", "計畫提供女性創業者小額貸款、培訓與諮詢服務，協助她們建立可持續的事業。"
ES_TITLE, ES_TEXT = "Programa de acogida en Lima", "También ofrece clases de español para niños; así aprenden más."


def rss(title: str, text: str, declaration: str | None = "utf-8", feed_title: str = "Feed") -> str:
    head = f'<?xml version="1.0" encoding="{declaration}"?>' if declaration else '<?xml version="1.0"?>'
    items = "".join(
        f"<item><title>{title} {n}</title><guid>g{n}</guid><description>{text} {text} {text}</description></item>"
        for n in (1, 2, 3)
    )
    return (
        f'{head}\n<rss version="2.0"><channel><title>{feed_title}</title><link>https://site.example/</link>'
        f"<description>{text}</description>{items}</channel></rss>\n"
    )


ENCODED: dict[str, tuple[bytes, str | None, str, str]] = {
    # name: (bytes, HTTP Content-Type or None for a file, expected title, expected text)
    "utf-16-le-bom": (
        codecs.BOM_UTF16_LE + rss(RU_TITLE, RU_TEXT, "utf-16").encode("utf-16-le"),
        None,
        RU_TITLE,
        RU_TEXT,
    ),
    "utf-16-be-no-bom": (rss(RU_TITLE, RU_TEXT, "UTF-16").encode("utf-16-be"), None, RU_TITLE, RU_TEXT),
    "utf-16-le-no-bom-no-declaration": (rss(ZH_TITLE, ZH_TEXT, None).encode("utf-16-le"), None, ZH_TITLE, ZH_TEXT),
    "utf-32-be-bom": (
        codecs.BOM_UTF32_BE + rss(ZH_TITLE, ZH_TEXT, "utf-32").encode("utf-32-be"),
        None,
        ZH_TITLE,
        ZH_TEXT,
    ),
    "utf-32-le-no-bom": (rss(RU_TITLE, RU_TEXT, "UTF-32").encode("utf-32-le"), None, RU_TITLE, RU_TEXT),
    "utf-8-bom": (codecs.BOM_UTF8 + rss(ES_TITLE, ES_TEXT).encode("utf-8"), None, ES_TITLE, ES_TEXT),
    "big5-declared": (rss(ZH_TITLE, ZH_TEXT, "big5").encode("big5"), None, ZH_TITLE, ZH_TEXT),
    "koi8-r-declared": (rss(RU_TITLE, RU_TEXT, "koi8-r").encode("koi8-r"), None, RU_TITLE, RU_TEXT),
    "koi8-r-undeclared": (rss(RU_TITLE, RU_TEXT, None).encode("koi8-r"), None, RU_TITLE, RU_TEXT),
    "koi8-r-http-charset-only": (
        rss(RU_TITLE, RU_TEXT, None).encode("koi8-r"),
        "application/rss+xml; charset=KOI8-R",
        RU_TITLE,
        RU_TEXT,
    ),
    "iso-8859-1-declared": (rss(ES_TITLE, ES_TEXT, "ISO-8859-1").encode("latin-1"), None, ES_TITLE, ES_TEXT),
    "iso-8859-1-undeclared": (rss(ES_TITLE, ES_TEXT, None).encode("latin-1"), None, ES_TITLE, ES_TEXT),
    "iso-8859-1-http-over-wrong-declaration": (
        rss(ES_TITLE, ES_TEXT, "utf-8").encode("latin-1"),
        "text/xml; charset=iso-8859-1",
        ES_TITLE,
        ES_TEXT,
    ),
    "bom-beats-a-wrong-http-charset": (
        codecs.BOM_UTF8 + rss(RU_TITLE, RU_TEXT).encode("utf-8"),
        "application/xml; charset=iso-8859-1",
        RU_TITLE,
        RU_TEXT,
    ),
}


@pytest.mark.parametrize("case", list(ENCODED))
def test_feeds_in_every_encoding(
    case: str, tmp_path: Path, feed_server: FeedServer, store: sessionmaker[Session]
) -> None:
    sessions = store
    data, content_type, title, text = ENCODED[case]
    at("2026-11-10T10:00:00Z")
    if content_type is None:
        path = tmp_path / "feed.xml"
        path.write_bytes(data)
        source = SourceConfig(str(path))
    else:
        source = SourceConfig(feed_server.serve("/feed", body=data, content_type=content_type))
    (report,) = ingest_sources(sessions, [source], clock.now())
    assert report.ok, report.error
    practices = stored(sessions)
    assert set(practices) == {f"{title} {n}" for n in (1, 2, 3)}
    for practice in practices.values():
        assert practice.summary == f"{text} {text} {text}"
        assert "\ufffd" not in practice.summary


def test_an_undeclared_legacy_file_is_never_repaired_as_mac_roman() -> None:
    """Spanish in ISO-8859-1 has genuine í, ñ and ó in the places the Mac Roman rules look at."""
    text = (
        "Programa de acogida\n\nSubmitted by Ana on\n\nLos niños aprenden; así (ñ) se ríe todo el país.\n\n"
        "Subscribe to Migración\n"
    )
    parsed = parse_bytes(text.encode("latin-1"), "es.txt")
    assert parsed.items[0].summary == "Los niños aprenden; así (ñ) se ríe todo el país."
    assert parsed.problems[0].reason == "read as cp1252 (detected)"


def test_text_with_the_mac_roman_signature_is_still_repaired() -> None:
    text = "Rainwater Harvesting\n\nSubmitted by A on\n\nChennaiís code ñ since 2001.\n\nSubscribe to Water\n"
    assert parse_bytes(text.encode("utf-8"), "w.txt").items[0].summary == "Chennai’s code – since 2001."


def test_an_encoding_that_cannot_be_told_is_a_clear_error() -> None:
    from digest.errors import SourceError

    with pytest.raises(SourceError) as caught:
        decode("Проект помогает".encode("koi8-r"), "short.txt")
    assert str(caught.value).startswith("short.txt: not UTF-8 (byte 0), and its encoding cannot be told")
    assert "UTF-8" in caught.value.hint


# -- shapes -------------------------------------------------------------------------------------------------------

SHAPES: dict[str, tuple[str, dict[str, str]]] = {
    "rss-0.91": (
        """<?xml version="1.0"?><rss version="0.91"><channel><title>Old</title><link>https://site.example/</link>
<description>d</description><item><title>Seed Banks</title><link>https://site.example/seed</link>
<description>Farmers keep seeds.</description></item></channel></rss>""",
        {"Seed Banks": "Farmers keep seeds."},
    ),
    "rss-0.92-no-title": (
        """<?xml version="1.0"?><rss version="0.92"><channel><title>Old</title>
<link>https://site.example/</link><description>d</description>
<item><description>Mobile clinics reach remote villages. They run every week.</description></item></channel></rss>""",
        {"Mobile clinics reach remote villages": "Mobile clinics reach remote villages. They run every week."},
    ),
    "rss-1.0": (
        """<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
xmlns="http://purl.org/rss/1.0/"><channel rdf:about="https://site.example/"><title>R</title>
<link>https://site.example/</link><description>d</description></channel>
<item rdf:about="https://site.example/a"><title>Solar Kiosks</title><link>https://site.example/a</link>
<description>Kiosks sell clean water.</description></item></rdf:RDF>""",
        {"Solar Kiosks": "Kiosks sell clean water."},
    ),
    "rss-2.0-cdata": (
        """<?xml version="1.0"?><rss version="2.0"><channel><title>C</title>
<item><title><![CDATA[Women & Water]]></title><guid>w1</guid>
<description><![CDATA[<p>Committees <b>manage</b> taps &amp; toilets.</p><ul><li>Dhaka</li><li>Lima</li></ul>]]></description>
</item></channel></rss>""",
        {"Women & Water": "Committees manage taps & toilets.\n\n- Dhaka\n- Lima"},
    ),
    "rss-2.0-escaped-html": (
        """<?xml version="1.0"?><rss version="2.0"><channel><title>E</title>
<item><title>Escaped</title><guid>e1</guid><description>&lt;p&gt;First.&lt;/p&gt;&lt;p&gt;Second.&lt;/p&gt;</description>
</item></channel></rss>""",
        {"Escaped": "First.\n\nSecond."},
    ),
    "rss-2.0-naked-html": (
        """<?xml version="1.0"?><rss version="2.0"><channel><title>N</title>
<item><title>Naked</title><guid>n1</guid><description><p>Hello <b>world</b></p><ul><li>one</li></ul></description>
</item></channel></rss>""",
        {"Naked": "Hello world\n\n- one"},
    ),
    "rss-2.0-double-encoded": (
        """<?xml version="1.0"?><rss version="2.0"><channel><title>D</title>
<item><title>Tom &amp;amp; Jerry&amp;#8217;s Garden</title><guid>d1</guid>
<description>&amp;lt;p&amp;gt;Beds &amp;amp;amp; paths.&amp;lt;/p&amp;gt;</description></item></channel></rss>""",
        {"Tom & Jerry’s Garden": "Beds & paths."},
    ),
    "rss-2.0-missing-guid-and-title": (
        """<?xml version="1.0"?><rss version="2.0"><channel><title>M</title>
<item><description>Rooftop gardens feed forty families.</description></item>
<item><description>Street lights run on solar power.</description></item></channel></rss>""",
        {
            "Rooftop gardens feed forty families": "Rooftop gardens feed forty families.",
            "Street lights run on solar power": "Street lights run on solar power.",
        },
    ),
    "rss-2.0-html-entity-nbsp": (
        """<?xml version="1.0"?><rss version="2.0"><channel><title>H</title>
<item><title>Bike&nbsp;Lanes</title><guid>b1</guid><description>Safer&nbsp;streets.</description></item></channel></rss>""",
        {"Bike Lanes": "Safer streets."},
    ),
    "atom-0.3": (
        """<?xml version="1.0"?><feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>A3</title>
<link rel="alternate" href="https://site.example/"/><entry><title>Legacy Atom</title>
<link rel="alternate" href="https://site.example/e1"/><id>tag:site.example,2004:1</id>
<content type="text/html" mode="escaped">&lt;p&gt;Still read.&lt;/p&gt;</content></entry></feed>""",
        {"Legacy Atom": "Still read."},
    ),
    "atom-1.0-xml-base-xhtml": (
        """<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"
xml:base="https://other.example/blog/"><title>A1</title><id>urn:a1</id><updated>2026-11-01T00:00:00Z</updated>
<entry xml:base="posts/"><title type="html">&lt;b&gt;Bold&lt;/b&gt; Plans</title><id>urn:a1:1</id>
<updated>2026-11-01T00:00:00Z</updated><content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">
<p>See <a href="p1.html">the plan</a>.</p></div></content></entry></feed>""",
        {"Bold Plans": "See the plan."},
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_feed_shapes(shape: str, tmp_path: Path, store: sessionmaker[Session]) -> None:
    sessions = store
    body, expected = SHAPES[shape]
    at("2026-11-10T10:00:00Z")
    path = tmp_path / "feed.xml"
    path.write_text(body, encoding="utf-8")
    (report,) = ingest_sources(sessions, [SourceConfig(str(path), theme="T")], clock.now())
    assert report.error is None and not report.rejected, (report.error, report.rejected)
    practices = stored(sessions)
    assert {t: p.summary for t, p in practices.items()} == expected
    if shape == "atom-1.0-xml-base-xhtml":
        assert 'href="https://other.example/blog/posts/p1.html"' in (practices["Bold Plans"].summary_html or "")
    if shape == "rss-2.0-html-entity-nbsp":
        assert any("read leniently" in p.reason for p in report.problems)


def test_a_truncated_feed_still_fails_as_a_whole(tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    at("2026-11-10T10:00:00Z")
    path = tmp_path / "cut.xml"
    path.write_text(SHAPES["rss-2.0-cdata"][0][:-40], encoding="utf-8")
    (report,) = ingest_sources(sessions, [SourceConfig(str(path), theme="T")], clock.now())
    assert report.error is not None and "may be truncated" in report.error
    assert stored(sessions) == {}
