"""Pages and mails in English, French and Spanish: the catalogs are complete and current (with the code, the
templates and their compiled .mo), every placeholder survives translation, the typography is each language's,
and a page or mail rendered in French or Spanish carries no English sentence of ours. A subscriber's language
comes from the subscribe form (default: the browser's Accept-Language, then default_language), the CLI, the CSV
and the manage page; visitors follow their browser or the switcher."""

from __future__ import annotations

import re
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from flask.testing import FlaskClient

from digest.text import i18n
from tests.webapp import WATER, confirmed, csrf

ROOT = Path(__file__).resolve().parents[1]
TRANSLATED = [code for code in i18n.LANGUAGES if code != i18n.DEFAULT]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdr]")
TAG = re.compile(r"</?\w+[^>]*>")


def extracted() -> dict[Any, Message]:
    """Every message of the code and templates, extracted now as `make i18n` does."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[Any, Message] = {}
    keywords = {**DEFAULT_KEYWORDS, "_": None, "ngettext": (1, 2)}  # as the Makefile's pybabel extract
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        key = message[0] if isinstance(message, tuple) else message
        found[key] = Message(message)
    return found


def catalog(language: str) -> Catalog:
    with (i18n.LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po, locale=language)


def forms(message: Message) -> list[str]:
    return list(message.string) if isinstance(message.string, (list, tuple)) else [message.string]


# The catalogs ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_catalog_holds_every_message_of_the_code_and_templates_translated(language: str) -> None:
    wanted = extracted()
    po = catalog(language)
    have = {m.id if isinstance(m.id, str) else m.id[0]: m for m in po if m.id}
    missing = sorted(set(wanted) - set(have))
    stale = sorted(set(have) - set(wanted))
    untranslated = sorted(k for k, m in have.items() if not all(forms(m)))
    fuzzy = sorted(k for k, m in have.items() if m.fuzzy)
    fix = "run `make i18n`, then translate the new entries in " + str(i18n.LOCALES / language)
    assert not missing, f"{language}: not in the catalog ({fix}): {missing}"
    assert not stale, f"{language}: in the catalog, no longer in the code ({fix}): {stale}"
    assert not untranslated, f"{language}: untranslated ({fix}): {untranslated}"
    assert not fuzzy, f"{language}: marked fuzzy ({fix}): {fuzzy}"
    assert len(po.plural_forms) and po.num_plurals >= 2


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalog_is_the_po_file(language: str) -> None:
    """What the service reads (the .mo, built by make from the .po) says what the .po says: never stale."""
    compiled = i18n.translations(language)
    for message in catalog(language):
        if not message.id:
            continue
        if isinstance(message.id, tuple):
            for n in (0, 1, 2, 5, 1_000_000):
                got = compiled.ngettext(message.id[0], message.id[1], n)
                assert got == message.string[compiled.plural(n)], f"{language}: {message.id[0]!r} stale: run make"
        else:
            assert compiled.gettext(message.id) == message.string, f"{language}: {message.id!r} stale: run make"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_placeholder_and_markup_survives_translation(language: str) -> None:
    for message in catalog(language):
        if not message.id:
            continue
        source = message.id if isinstance(message.id, str) else message.id[1]
        wanted = sorted(PLACEHOLDER.findall(source))
        for form in forms(message):
            assert sorted(PLACEHOLDER.findall(form)) == wanted, f"{language}: placeholders of {source!r} in {form!r}"
            assert len(TAG.findall(form)) == len(TAG.findall(source)), f"{language}: markup of {source!r} in {form!r}"
            # A stray % would break the %-formatting every message goes through.
            assert "%" not in PLACEHOLDER.sub("", form), form


def test_french_typography() -> None:
    """A no-break space before : ; ? ! (fine before ; ? !), none of them after a plain space, the curly apostrophe,
    and guillemets with no-break spaces."""
    for message in catalog("fr"):
        for form in forms(message) if message.id else []:
            text = PLACEHOLDER.sub("X", TAG.sub("", form))
            assert not re.search(r" [:;?!»]|« ", text), f"a plain space where a no-break one goes: {form!r}"
            assert not re.search(r"\w[;?!]", text), f"no space before ; ? !: {form!r}"
            assert not re.search(r"[^\s\d%(\w]:(?!//)|\w:(?! |//|\d)", text.replace("\u00a0:", "")), form
            assert "'" not in text, f"a straight apostrophe (’ in French): {form!r}"


def test_spanish_typography() -> None:
    """Questions and exclamations open with ¿ and ¡; quotes are «»."""
    for message in catalog("es"):
        for form in forms(message) if message.id else []:
            text = TAG.sub("", form)
            for sentence in re.split(r"(?<=[.?!])\s+", text):
                assert ("?" in sentence) <= ("¿" in sentence), f"a question without ¿: {form!r}"
                assert ("!" in sentence) <= ("¡" in sentence), f"an exclamation without ¡: {form!r}"
            assert '"' not in PLACEHOLDER.sub("", re.sub(r'href="[^"]*"', "", form)), f"quotes are «»: {form!r}"


# Every page and mail in each language -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def english_sentences() -> frozenset[str]:
    """Our English sentences (three words or more) whose translations differ: none may show on a French or
    Spanish page."""
    sentences = set()
    for message in catalog("fr"):
        if not message.id:
            continue
        for source in [message.id] if isinstance(message.id, str) else list(message.id):
            plain = PLACEHOLDER.split(TAG.sub("", source))
            sentences.update(p.strip(" .,:;()·") for p in plain if len(p.split()) >= 3)
    return frozenset(s for s in sentences if len(s.split()) >= 3)


def visible_text(html: str) -> str:
    tree = lxml.html.fromstring(html)
    for hidden in tree.xpath("//style|//script|//head"):
        hidden.drop_tree()
    return " ".join(" ".join(tree.itertext()).split())


def assert_in_language(text: str, language: str, where: str) -> None:
    """No English sentence of ours in ``text`` (a page or mail rendered in ``language``)."""
    if language == i18n.DEFAULT:
        return
    english = [s for s in english_sentences() if s in text]
    assert not english, f"{where} in {language} carries English: {english}"


def pages_of_a_journey(web: Any, language: str) -> dict[str, str]:
    """Every page a visitor and a subscriber meet, rendered for a browser that asks for ``language``."""
    header = {"Accept-Language": f"{language};q=0.9, de;q=0.5"}
    client: FlaskClient = web.client()
    email = f"reader-{language}@example.org"
    pages: dict[str, str] = {}

    def get(name: str, path: str, status: int = 200) -> None:
        answer = client.get(path, headers=header)
        assert answer.status_code == status, (name, answer.status_code)
        pages[name] = answer.text

    get("home", "/")
    get("theme", f"/themes/{WATER}")
    practice = re.search(r'href="(/practices/[^"]+)"', pages["theme"])
    assert practice
    get("practice", practice.group(1))
    get("not found", "/no-such-page", 404)
    get("bad link", "/manage/not-a-token", 404)
    answer = client.post("/subscribe", data={"email": "x@example.org", "theme": WATER}, headers=header)
    assert answer.status_code == 400  # no CSRF token: refused before anything else, in the visitor's language
    pages["expired form"] = answer.text
    token = csrf(client, "/")
    answer = client.post("/subscribe", data={"csrf_token": token, "email": "nobody", "theme": []}, headers=header)
    assert answer.status_code == 400
    pages["form errors"] = answer.text
    answer = client.post("/subscribe", data={"csrf_token": token, "email": email, "theme": WATER}, headers=header)
    assert answer.status_code == 303
    get("check inbox", answer.headers["Location"])
    confirm = web.link(email, "/confirm/")
    # Pages reached by the subscriber's links speak their language, whatever the browser asks: no header from here.
    header = {}
    get("confirm", confirm)
    answer = client.post(confirm, data={"csrf_token": csrf(client, confirm)})
    pages["confirmed"] = answer.text
    manage = re.search(r'href="(/manage/[^"]+)"', answer.text)
    assert manage
    # Typed in again once confirmed: the "already subscribed" mail, in their language whatever this browser asks.
    form = {"csrf_token": csrf(client, "/"), "email": email, "theme": WATER, "language": "en"}
    assert client.post("/subscribe", data=form, headers={"Accept-Language": "en"}).status_code == 303
    get("manage", manage.group(1))
    answer = client.post(
        manage.group(1), data={"csrf_token": csrf(client, manage.group(1)), "action": "pause", "until": "2027-01-08"}
    )
    get("manage paused", manage.group(1))
    # Refusals said on the manage page, whatever language the browser asks: a timezone nearly right, an erase
    # not ticked (its notice was once said before their language was chosen).
    english = {"Accept-Language": "en"}
    form = {"csrf_token": csrf(client, manage.group(1)), "action": "schedule", "frequency": "weekly",
            "weekday": "0", "hour": "8", "timezone": "Europe/Pari"}  # fmt: skip
    client.post(manage.group(1), data=form, headers=english)
    get("timezone refused", manage.group(1))
    assert "Europe/Paris" in pages["timezone refused"]  # "did you mean", in their words
    client.post(manage.group(1) + "/erase", data={"csrf_token": csrf(client, manage.group(1))}, headers=english)
    get("erase not ticked", manage.group(1))
    from digest.subscriptions.tokens import Purpose, make_token

    unsubscribe = "/unsubscribe/" + make_token(web.settings.secret_key, Purpose.UNSUBSCRIBE, web.key(email))
    get("unsubscribe", unsubscribe)
    pages["unsubscribed"] = client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).text
    get("manage left", manage.group(1))
    answer = client.post(
        manage.group(1) + "/erase", data={"csrf_token": csrf(client, manage.group(1)), "confirm": "yes"}
    )
    assert answer.status_code == 200
    pages["erased"] = answer.text
    return pages


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_every_page_is_in_the_visitors_language(web: Any, language: str) -> None:
    for name, html in pages_of_a_journey(web, language).items():
        assert f'<html lang="{language}">' in html, name
        assert_in_language(visible_text(html), language, f"the {name} page")
    # And the confirmation and "already subscribed" mails, in both their parts.
    confirmation, welcome, already = web.mails_to(f"reader-{language}@example.org")
    for mail in (confirmation, welcome, already):
        assert mail["Content-Language"] == language
        assert_mail_in_language(mail, language)
    assert "/manage/" in already.get_body(("plain",)).get_content()


def assert_mail_in_language(mail: EmailMessage, language: str) -> None:
    html, text = mail.get_body(("html",)), mail.get_body(("plain",))
    assert html is not None and text is not None
    assert f'<html lang="{language}">' in html.get_content()
    subject = str(mail["Subject"])
    assert_in_language(subject + " " + visible_text(html.get_content()), language, f"mail {subject!r} (HTML)")
    assert_in_language(" ".join(text.get_content().split()), language, f"mail {subject!r} (text)")


def test_the_subscribers_language_wins_over_the_browsers_on_their_pages(web: Any) -> None:
    client = web.client()
    token = csrf(client, "/")
    form = {"csrf_token": token, "email": "ana@example.org", "theme": WATER, "language": "es"}
    assert client.post("/subscribe", data=form, headers={"Accept-Language": "fr"}).status_code == 303
    (mail,) = web.mails_to("ana@example.org")
    assert mail["Subject"] == "Confirme su suscripción al boletín de prácticas"
    confirm = web.link("ana@example.org", "/confirm/")
    page = client.get(confirm, headers={"Accept-Language": "fr"}).text
    assert '<html lang="es">' in page and "Confirmar mi suscripción" in page
    # The switcher still lets them read it in another language, for this page.
    assert '<html lang="en">' in client.get(confirm + "?lang=en").text


def test_the_switcher_is_a_link_kept_in_a_cookie(web: Any) -> None:
    client = web.client()
    page = client.get("/", headers={"Accept-Language": "es"})
    assert '<html lang="es">' in page.text and "Accept-Language" in page.headers["Vary"]
    links = re.findall(
        r'<a href="\?lang=(\w+)" lang="\w+" hreflang="\w+"( aria-current="true")?>([^<]+)</a>', page.text
    )
    assert [(code, name) for code, _, name in links] == [("en", "English"), ("fr", "Français"), ("es", "Español")]
    assert [code for code, current, _ in links if current] == ["es"]
    picked = client.get("/?lang=fr", headers={"Accept-Language": "es"})
    assert '<html lang="fr">' in picked.text and "digest_lang=fr" in picked.headers["Set-Cookie"]
    # The choice outlives the page it was made on.
    assert '<html lang="fr">' in client.get(f"/themes/{WATER}", headers={"Accept-Language": "es"}).text


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", "en"),
        ("*", "en"),
        ("xx-YY-ZZ-!!!", "en"),
        (";;;q=abc", "en"),
        ("de-DE,de;q=0.9", "en"),
        ("\x00\x01", "en"),
        ("a" * 5000, "en"),
        ("fr-CA, en;q=0.5", "fr"),
        ("de, es-419;q=0.8, en;q=0.1", "es"),
    ],
)
def test_a_malformed_or_foreign_accept_language_gets_the_default(web: Any, header: str, expected: str) -> None:
    answer = web.client().get("/", headers={"Accept-Language": header})
    assert answer.status_code == 200
    assert f'<html lang="{expected}">' in answer.text, header


def test_default_language_setting_is_for_those_who_ask_for_none(web: Any) -> None:
    from dataclasses import replace

    from digest.web import create_app

    app = create_app(replace(web.settings, default_language="es"))
    assert '<html lang="es">' in app.test_client().get("/").text
    assert '<html lang="fr">' in app.test_client().get("/", headers={"Accept-Language": "fr"}).text


def test_the_manage_page_changes_the_language_of_pages_and_mails(web: Any) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    client = web.client()
    answer = client.post(manage, data={"csrf_token": csrf(client, manage), "action": "language", "language": "fr"})
    assert answer.status_code == 303
    page = client.get(manage, headers={"Accept-Language": "en"}).text
    assert '<html lang="fr">' in page and "Vos courriels et ces pages seront désormais en français." in page
    assert 'value="fr" lang="fr" selected' in page
    # A code that is not one of ours: refused, naming the field, nothing changed.
    answer = client.post(manage, data={"csrf_token": csrf(client, manage), "action": "language", "language": "de"})
    page = client.get(manage).text
    notices = re.findall(r'<p class="notice error" role="alert">([^<]*)</p>', page)
    assert notices == [
        "langue\u00a0: &#39;de&#39; n’est pas une langue de ce service\u00a0: choisissez parmi en, fr, es"
    ]
    assert '<html lang="fr">' in page


# The digest ------------------------------------------------------------------------------------------------------


def test_a_french_digest_of_a_spanish_and_an_english_practice(web: Any, tmp_path: Path) -> None:
    import json

    from digest import clock
    from digest.config import SourceConfig
    from digest.ingest import ingest_sources
    from tests.conftest import at

    def add(name: str, records: list[dict[str, object]]) -> None:
        path = tmp_path / name
        path.write_text(json.dumps({"practices": records}), encoding="utf-8")
        assert all(r.ok for r in ingest_sources(web.sessions, [SourceConfig(str(path))], clock.now()))

    at("2026-11-09T10:00:00Z")
    add("before.json", [{"id": "old", "title": "Avant", "summary": "", "themes": ["Food"]}])
    at("2026-11-10T10:00:00Z")
    manage = confirmed(web, "fr@example.org", "food")
    client = web.client()
    client.post(manage, data={"csrf_token": csrf(client, manage), "action": "language", "language": "fr"})

    spanish = {"id": "es1", "title": "Huertos escolares", "summary": "Un programa.", "themes": ["Food"],
               "language": "es", "url": "https://practices.example.org/es1"}  # fmt: skip
    english = {"id": "en1", "title": "School meals", "summary": "A programme.", "themes": ["Food"],
               "language": "en", "url": "https://practices.example.org/en1"}  # fmt: skip
    at("2026-11-12T10:00:00Z")
    add("one.json", [spanish])
    at("2026-11-16T09:00:00Z")
    web.send()
    mail = web.mails_to("fr@example.org")[-1]
    assert mail["Subject"] == "1 nouvelle pratique dans Food"
    at("2026-11-17T10:00:00Z")
    add("two.json", [english, dict(spanish, id="es2", title="Comedores", url="https://practices.example.org/es2")])
    at("2026-11-23T09:00:00Z")
    web.send()
    mail = web.mails_to("fr@example.org")[-1]
    assert mail["Subject"] == "2 nouvelles pratiques dans Food"
    assert mail["Content-Language"] == "fr" and "Lettre des pratiques" in mail["List-Id"]
    html = mail.get_body(("html",)).get_content()
    assert '<html lang="fr">' in html
    assert re.search(r'<h3 lang="es"[^>]*><a [^>]*>Comedores</a></h3>', html), html
    assert re.search(r'<h3 lang="en"[^>]*><a [^>]*>School meals</a></h3>', html), html
    assert_mail_in_language(mail, "fr")
    # Restricted to Spanish: only the Spanish one.
    answer = client.post(manage, data={"csrf_token": csrf(client, manage), "action": "languages", "language": "es"})
    assert answer.status_code == 303
    assert "Seules les pratiques dans les langues choisies" in client.get(manage).text
    at("2026-11-24T10:00:00Z")
    add(
        "three.json",
        [
            dict(english, id="en2", title="Canteens", url="https://practices.example.org/en2"),
            dict(spanish, id="es3", title="Mercados", url="https://practices.example.org/es3"),
        ],
    )
    at("2026-11-30T09:00:00Z")
    web.send()
    clock.set_fixed_now(None)
    mail = web.mails_to("fr@example.org")[-1]
    body = mail.get_body(("plain",)).get_content()
    assert mail["Subject"] == "1 nouvelle pratique dans Food", body
    assert "Mercados" in body and "Canteens" not in body


# Bad input -------------------------------------------------------------------------------------------------------


def test_an_unknown_language_is_refused_naming_the_field(web: Any, run_cli: Any, tmp_path: Path) -> None:
    client = web.client()
    form = {"csrf_token": csrf(client, "/"), "email": "x@example.org", "theme": WATER, "language": "klingon"}
    answer = client.post("/subscribe", data=form, headers={"Accept-Language": "fr"})
    assert answer.status_code == 400 and "Langue de vos courriels" in answer.text
    assert not web.mails_to("x@example.org")
    assert run_cli("ingest", "tests/fixtures/listing-water.txt").exit_code == 0
    done = run_cli("subscribe", "bob@example.org", "--theme", "Water and Sanitation", "--language", "de")
    assert done.exit_code == 2 and "--language" in done.output and "'de' is not a language" in done.output
    done = run_cli("subscribe", "bob@example.org", "--theme", "Water and Sanitation", "--confirmed", "--language", "ES")
    assert done.exit_code == 0, done.output
    assert "mails in es" in run_cli("subscribers", "list").output
    done = run_cli("subscribers", "set", "bob@example.org", "--language", "français")
    assert done.exit_code == 2 and "--language" in done.output
    done = run_cli("subscribers", "set", "bob@example.org", "--language", "fr-CA")
    assert done.exit_code == 0 and "mails in fr" in done.output
    people = tmp_path / "people.csv"
    people.write_text(
        "email,themes,language\nana@example.org,Water and Sanitation,es\ncy@example.org,Water and Sanitation,zz\n"
        "di@example.org,Water and Sanitation,\n",
        encoding="utf-8",
    )
    done = run_cli("subscribers", "import", str(people), "--confirmed")
    assert done.exit_code == 1 and "2 created" in done.output  # a row left out: exit 1
    assert "line 3: cy@example.org: language: 'zz' is not a language of this service" in done.output
    listed = run_cli("subscribers", "list").output
    assert re.search(r"ana@example.org .*mails in es", listed) and "cy@example.org" not in listed


def test_a_bad_default_language_is_refused_at_load(tmp_path: Path) -> None:
    from digest.config import load_settings
    from digest.errors import ConfigError

    config = tmp_path / "digest.toml"
    config.write_text('default_language = "de"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"default_language.*'de' is not a language of this service"):
        load_settings(str(config))


# The same practice in several languages -------------------------------------------------------------------------

LINKED_ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Migration</title><id>urn:m</id><updated>2026-11-01T00:00:00Z</updated>
<entry xml:lang="en"><title>Welcome at the port</title><id>urn:en</id><updated>2026-11-01T00:00:00Z</updated>
<summary>A programme.</summary><link rel="alternate" href="https://practices.example.org/en/port"/>
<link rel="alternate" hreflang="es" href="https://practices.example.org/es/puerto"/>
<link rel="alternate" hreflang="fr" href="https://practices.example.org/fr/port"/></entry>
<entry xml:lang="es"><title>Acogida en el puerto</title><id>urn:es</id><updated>2026-11-01T00:00:00Z</updated>
<summary>Un programa.</summary><link href="https://practices.example.org/es/puerto"/></entry>
<entry xml:lang="fr"><title>Accueil au port</title><id>urn:fr</id><updated>2026-11-01T00:00:00Z</updated>
<summary>Un programme.</summary><link href="https://practices.example.org/fr/port"/></entry>
<entry xml:lang="en"><title>Night shelters</title><id>urn:other</id><updated>2026-11-01T00:00:00Z</updated>
<summary>Another programme.</summary><link href="https://practices.example.org/en/shelters"/></entry>
</feed>"""


def digest_for(web: Any, language: str, path: str, practice_languages: str = "") -> EmailMessage:
    """The first digest to a subscriber of Migration writing in ``language`` after the feed at ``path`` is read."""
    from digest import clock
    from digest.config import SourceConfig
    from digest.ingest import ingest_sources
    from tests.conftest import at

    at("2026-11-09T10:00:00Z")
    assert all(r.ok for r in ingest_sources(web.sessions, [SourceConfig(path, theme="Migration")], clock.now()))
    address = f"{language}-{practice_languages or 'all'}@example.org"
    client = web.client()
    form = {"csrf_token": csrf(client, "/"), "email": address, "theme": "migration", "language": language}
    assert client.post("/subscribe", data=form).status_code == 303
    confirm = web.link(address, "/confirm/")
    answer = client.post(confirm, data={"csrf_token": csrf(client, confirm)})
    manage = re.search(r'href="(/manage/[^"]+)"', answer.text)
    assert manage
    if practice_languages:
        data = {"csrf_token": csrf(client, manage.group(1)), "action": "languages", "language": practice_languages}
        assert client.post(manage.group(1), data=data).status_code == 303
    with web.sessions.begin() as session:  # everything read so far counts as new for this digest
        from sqlalchemy import update

        from digest.store.models import Subscription

        session.execute(update(Subscription).values(cursor=0))
    at("2026-11-16T09:00:00Z")
    web.send()
    clock.set_fixed_now(None)
    return web.mails_to(address)[-1]


@pytest.mark.parametrize(
    ("language", "listed", "named"),
    [
        ("es", "Acogida en el puerto", ["English", "Français"]),
        ("fr", "Accueil au port", ["English", "Español"]),
        ("en", "Welcome at the port", ["Español", "Français"]),
    ],
)
def test_linked_versions_give_the_readers_one_and_name_the_others(
    web: Any, feed_server: Any, language: str, listed: str, named: list[str]
) -> None:
    path = feed_server.serve("/m.atom", body=LINKED_ATOM.encode(), content_type="application/atom+xml")
    mail = digest_for(web, language, path)
    text = mail.get_body(("plain",)).get_content()
    titles = {"Welcome at the port", "Acogida en el puerto", "Accueil au port"}
    assert [t for t in titles if f"* {t}" in text] == [listed], text
    assert "* Night shelters" in text  # not linked to anything: as always
    html = mail.get_body(("html",)).get_content()
    also = re.findall(r'<a href="([^"]+)" hreflang="([\w-]+)" lang="[\w-]+"[^>]*>([^<]+)</a>', html)
    assert [name for _, _, name in also] == named, html
    pages = {"en": "https://practices.example.org/en/port", "es": "https://practices.example.org/es/puerto"}
    pages["fr"] = "https://practices.example.org/fr/port"
    # Each version links to its own page (feedparser's entry link is the last alternate: a translation's).
    assert all(url == pages[code] for url, code, _ in also), also
    assert ngettext_subject(language, 2) == str(mail["Subject"])


def ngettext_subject(language: str, n: int) -> str:
    with i18n.using(language):
        return i18n.ngettext(
            "%(num)d new practice in %(theme)s", "%(num)d new practices in %(theme)s", n, theme="Migration"
        )


def test_restricted_to_a_language_the_reader_gets_that_version(web: Any, feed_server: Any) -> None:
    path = feed_server.serve("/m.atom", body=LINKED_ATOM.encode(), content_type="application/atom+xml")
    text = digest_for(web, "en", path, practice_languages="fr").get_body(("plain",)).get_content()
    assert "* Accueil au port" in text and "* Welcome at the port" not in text and "* Acogida" not in text


def test_translation_of_in_an_export_links_either_way_whichever_comes_first(web: Any, tmp_path: Path) -> None:
    import json

    from sqlalchemy import select

    from digest import clock
    from digest.config import SourceConfig
    from digest.ingest import ingest_sources
    from digest.mail.plan.compose import PracticeEntry
    from digest.mail.plan.reads import with_versions
    from digest.store.models import Practice

    def read(name: str, records: list[dict[str, object]]) -> Any:
        path = tmp_path / name
        path.write_text(json.dumps({"practices": records}), encoding="utf-8")
        (report,) = ingest_sources(web.sessions, [SourceConfig(str(path))], clock.now())
        return report

    # The Spanish version first, naming the English one by its id, which is not read yet; then a bad field.
    read("es.json", [{"id": "p7-es", "title": "Huertos", "themes": ["Food"], "language": "es", "translation_of": "p7"}])
    report = read(
        "en.json",
        [
            {"id": "p7", "title": "Gardens", "themes": ["Food"], "language": "en"},
            {"id": "p8", "title": "Bad", "themes": ["Food"], "translation_of": {"id": "p7"}},
        ],
    )
    assert [str(p) for p in report.rejected] == [
        "object 2 ('Bad'): translation_of must be an id or URL (or a list of them), found an object; left out"
    ]
    with web.sessions() as session:
        rows = session.execute(select(Practice.id, Practice.uid, Practice.title, Practice.language)).all()
        entries = {r.id: PracticeEntry(r.id, r.uid, r.title, "", None, None, "", language=r.language) for r in rows}
        linked = with_versions(session, entries)
    by_title = {e.title: e for e in linked.values()}
    assert [v.title for v in by_title["Gardens"].versions] == ["Huertos"]
    assert [v.title for v in by_title["Huertos"].versions] == ["Gardens"]
    assert by_title["Gardens"].group == by_title["Huertos"].group is not None


def test_a_catalog_not_built_or_stale_is_read_from_its_po(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout where make has not built the .mo (or an older one lies there) still speaks the .po's words."""
    import os
    import shutil

    folder = tmp_path / "fr" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    shutil.copy(i18n.LOCALES / "fr" / "LC_MESSAGES" / "messages.po", folder / "messages.po")
    monkeypatch.setattr(i18n, "LOCALES", tmp_path)
    i18n.translations.cache_clear()
    try:
        assert i18n.translations("fr").gettext("Subscribe") == "S’abonner"
        (folder / "messages.mo").write_bytes(b"")
        os.utime(folder / "messages.mo", (0, 0))  # older than the .po (and empty: it would not even load)
        i18n.translations.cache_clear()
        assert i18n.translations("fr").gettext("Subscribe") == "S’abonner"
    finally:
        i18n.translations.cache_clear()


@pytest.mark.parametrize(
    ("language", "hour", "written"),
    [
        ("fr", 8, "lundi 7 décembre 2026 à 08:00"),
        ("es", 8, "lunes, 7 de diciembre de 2026 a las 8:00"),
        ("es", 1, "lunes, 7 de diciembre de 2026 a la 1:00"),
        ("en", 8, "Monday, December 7, 2026 at 8:00\u202fAM"),
    ],
)
def test_dates_and_times_as_each_language_writes_them(language: str, hour: int, written: str) -> None:
    from datetime import datetime

    assert i18n.when(datetime(2026, 12, 7, hour), language) == written


def test_a_schedule_in_words_in_each_language() -> None:
    from digest.schedules.slots import Choice, Defaults, schedule_of

    defaults = Defaults(weekday=0, hour=8, timezone="Europe/Madrid")
    expected = {
        "en": ("weekly on Monday at 08:00 Europe/Madrid", "daily at 01:00 Europe/Madrid"),
        "fr": ("chaque semaine, le lundi à 08:00 Europe/Madrid", "chaque jour à 01:00 Europe/Madrid"),
        "es": ("cada semana, el lunes a las 08:00 Europe/Madrid", "cada día a la 01:00 Europe/Madrid"),
    }
    for language, (weekly, daily) in expected.items():
        with i18n.using(language):
            assert schedule_of(Choice(), defaults).describe() == weekly
            assert schedule_of(Choice("daily", None, 1, None), defaults).describe() == daily


def test_the_check_for_english_finds_an_english_sentence_of_ours() -> None:
    """The page checks above can fail: a French page with one of our English sentences left in is caught."""
    assert_in_language("Vos réglages · Lettre des pratiques", "fr", "a page")
    with pytest.raises(AssertionError, match="Send nothing until"):
        assert_in_language("Vos réglages Send nothing until 2027", "fr", "a page")


def test_one_version_per_group_and_one_of_unknown_language_is_never_left_out() -> None:
    from digest.mail.plan.compose import NewMembership, NewMemberships, PracticeEntry, ThemeInfo, Version, compose

    def entry(n: int, title: str, language: str | None) -> PracticeEntry:
        versions = (Version("u1", None, "Gardens", "en"), Version("u2", None, "Huertos", "es"))
        return PracticeEntry(n, f"u{n}", title, "", None, None, "", language=language, group="u1", versions=versions)

    practices = {1: entry(1, "Gardens", "en"), 2: entry(2, "Huertos", "es"), 3: entry(3, "Jardins", None)}
    new = NewMemberships({7: [NewMembership(10 + n, n, 7) for n in (1, 2, 3)]}, {7: [11, 12, 13]})
    for language, listed in (("es", ["Huertos", "Jardins"]), ("fr", ["Gardens", "Jardins"])):
        result = compose("k", [(7, 0)], new, set(), practices, {7: ThemeInfo("Food", "food")}, language=language)
        assert result is not None
        assert [p.title for p in result[0].sections[0].practices] == listed


def test_an_entry_whose_alternates_all_name_a_language_keeps_its_own_link() -> None:
    """Every alternate with an hreflang, its own among them: the one in the entry's language is its page (feedparser
    would give the last), the others are its versions."""
    import feedparser

    from digest.ingest.feed import _links

    feed = feedparser.parse(
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>M</title><entry xml:lang="es"><title>Puerto</title>'
        '<id>urn:es</id><link rel="alternate" hreflang="en" href="https://p.example/en"/>'
        '<link rel="alternate" hreflang="es" href="https://p.example/es"/>'
        '<link rel="alternate" hreflang="fr" href="https://p.example/fr"/></entry></feed>'
    )
    (entry,) = feed.entries
    assert entry.link == "https://p.example/fr"  # feedparser's: the last alternate
    assert _links(entry) == ("https://p.example/es", ["https://p.example/en", "https://p.example/fr"])


def test_a_request_leaves_the_threads_language_as_it_found_it(web: Any) -> None:
    """The language of the moment is the thread's (a context variable): after a French page, what runs next on
    that thread (here the test itself, as a command would) writes English again."""
    assert '<html lang="fr">' in web.client().get("/", headers={"Accept-Language": "fr"}).text
    assert i18n.current() == "en"
    assert str(i18n.UnknownLanguage("de")).startswith("'de' is not a language of this service")
