"""What the third probe found under attack, kept so the next probe starts where this one ended (`make probe` runs
these): a password limit that gave way under concurrency, page numbers that reached the database, a race of
one address subscribing twice, a refused form that cost more than an accepted one, links that came back, text
without its direction."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask.testing import FlaskClient
from sqlalchemy import select

from digest.store.models import Subscriber
from digest.store.states import SubscriberStatus
from digest.subscriptions.tokens import Purpose, make_token
from digest.web import create_app
from tests.conftest import Cli, fixture_path
from tests.test_operators import basic
from tests.webapp import WATER, Web, confirmed, csrf

pytestmark = pytest.mark.probe

PASSWORD = "operator password 123"
HASH = PasswordHasher().hash(PASSWORD)


def test_the_operator_password_limit_holds_under_parallel_wrong_tries(web: Web) -> None:
    """100 wrong passwords from 50 parallel clients (one address): no more than the limit are even checked."""
    app = create_app(replace(web.settings, operator_password_hash=HASH, operator_tries_per_hour=10))

    def attempt(_: int) -> int:
        return app.test_client().get("/operator/", headers=basic("wrong")).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(attempt, range(100)))
    assert statuses.count(401) == 10 and statuses.count(429) == 90, statuses
    # A right password from elsewhere is not held back, and gives its try back (it never locks its own address).
    other = {"REMOTE_ADDR": "10.9.9.9"}
    for _ in range(15):
        assert app.test_client().get("/operator/", headers=basic(PASSWORD), environ_base=other).status_code == 200


def test_the_metrics_token_is_accepted_whatever_the_schemes_case(web: Web) -> None:
    app = create_app(replace(web.settings, metrics_token="m" * 32))
    client = app.test_client()
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert client.get("/metrics", headers={"Authorization": f"{scheme} {'m' * 32}"}).status_code == 200
    for header in ("Basic " + "m" * 32, "Bearer " + "m" * 31, "bearer", "Bearer  ", "m" * 32):
        assert client.get("/metrics", headers={"Authorization": header}).status_code == 404, header


@pytest.mark.parametrize("page", ["²", "①", "١", "1000000000000000000", "0", "01", "-1", "1.0", " 1", "", "x"])
def test_a_bad_or_huge_page_number_is_404(web: Web, page: str) -> None:
    client = web.client()
    for path in (f"/themes/{WATER}", "/"):
        answer = client.get(path, query_string={"page": page})
        assert answer.status_code == 404, (path, page, answer.status_code)
    assert client.get(f"/themes/{WATER}", query_string={"page": "1"}).status_code == 200


def test_a_new_address_subscribing_three_times_at_once_gets_303_each_time(web: Web) -> None:
    """The unit reads, then inserts: two of three requests lose the race for the unique address. They run again
    and answer as for a known address: 303, the same answer as always, never 503."""
    for trial in range(6):
        address = f"race{trial}@example.org"
        clients = [web.client() for _ in range(3)]
        forms = [{"csrf_token": csrf(c, "/"), "email": address, "theme": [WATER]} for c in clients]
        with ThreadPoolExecutor(max_workers=3) as pool:
            assert list(pool.map(_at_once(clients, forms), range(3))) == [303, 303, 303], trial
        assert web.status(address) == "pending"


def _at_once(clients: list[FlaskClient], forms: list[dict[str, object]]) -> Callable[[int], int]:
    """A POST of form n by client n, all released together."""
    barrier = threading.Barrier(len(clients))

    def post(n: int) -> int:
        barrier.wait()
        return clients[n].post("/subscribe", data=forms[n]).status_code

    return post


def test_a_refused_form_costs_no_more_than_a_page_of_themes_and_is_limited_first(web: Web) -> None:
    from digest.web import pages

    app = create_app(replace(web.settings, subscribe_per_client_per_hour=3))
    client = app.test_client()
    token = csrf(client, "/")  # counts nothing: only a POST does
    # A form naming a thousand themes that do not exist, with a bad address: the error page lists no more than
    # the themes that exist (here: none chosen exist, so the first page of themes).
    form = {"csrf_token": token, "email": "not an address", "theme": [f"t{n}" for n in range(1000)]}
    first = client.post("/subscribe", data=form)
    assert first.status_code == 400 and first.text.count('name="theme"') <= pages.HOME_THEMES
    # Past the client's limit, even a refused form gets 429 before any of it is read.
    assert [client.post("/subscribe", data=form).status_code for _ in range(3)] == [400, 400, 429]


def test_many_themes_are_paged_on_the_home_page(web: Web) -> None:
    from digest.store.models import Theme
    from digest.web import pages

    with web.sessions() as session, session.begin():
        from digest import clock

        for n in range(250):
            session.add(
                Theme(name=f"Theme {n:03}", slug=f"theme-{n:03}", created_at=clock.now(), changed_at=clock.now())
            )
    client = web.client()
    first = client.get("/")
    assert first.status_code == 200 and first.text.count('name="theme"') == pages.HOME_THEMES
    assert 'rel="next" href="/?page=2"' in first.text
    last = client.get("/?page=3")
    assert last.status_code == 200 and 0 < last.text.count('name="theme"') <= pages.HOME_THEMES
    assert 'rel="prev" href="/?page=2"' in last.text and 'rel="next"' not in last.text
    assert client.get("/?page=4").status_code == 404
    # Every theme is offered on exactly one page.
    offered = re.findall(r'name="theme" value="([^"]+)"', "".join(client.get(f"/?page={n}").text for n in (1, 2, 3)))
    assert len(offered) == len(set(offered)) == 252


def test_links_revoked_by_leaving_stay_dead_when_the_address_comes_back(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    client = web.client()
    key = web.key("ada@example.org")
    feed = "/feeds/me/" + make_token(web.settings.secret_key, Purpose.FEED, _feed_key(web, "ada@example.org")) + ".atom"
    assert client.get(feed).status_code == 200
    unsubscribe = "/unsubscribe/" + make_token(web.settings.secret_key, Purpose.UNSUBSCRIBE, key)
    assert client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert client.get(feed).status_code == 404
    # The same address subscribes again and confirms: new links work, the old ones stay dead.
    new_manage = confirmed(web, "ada@example.org", WATER)
    assert new_manage != manage and web.key("ada@example.org") != key
    assert client.get(feed).status_code == 404
    assert client.get(manage).status_code in (404, 410)
    assert client.get(new_manage).status_code == 200


def test_a_suppressed_address_coming_back_gets_new_links(web: Web) -> None:
    manage = confirmed(web, "bo@example.org", WATER)
    with web.sessions() as session, session.begin():
        person = session.scalars(select(Subscriber).where(Subscriber.email == "bo@example.org")).one()
        person.status = SubscriberStatus.SUPPRESSED
    assert confirmed(web, "bo@example.org", WATER) != manage
    assert web.client().get(manage).status_code in (404, 410)


def _feed_key(web: Web, address: str) -> str:
    with web.sessions() as session:
        return session.scalars(select(Subscriber.feed_key).where(Subscriber.email == address)).one() or ""


def test_right_to_left_practices_carry_their_direction_in_pages_and_mails(web: Web) -> None:
    from digest import clock
    from digest.config import SourceConfig
    from digest.ingest import ingest_sources
    from tests.conftest import fixture_path

    ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-ar.txt"), language="ar")], clock.now())
    with web.sessions() as session:
        from digest.store.models import Practice, Theme

        slug = session.scalars(select(Theme.slug).where(Theme.name.not_like("%ater%"))).first()
        uid = session.scalars(select(Practice.uid).where(Practice.language == "ar")).first()
    assert slug and uid
    client = web.client()
    practice = client.get(f"/practices/{uid}").text
    assert re.search(r'<h1 lang="ar" dir="rtl">', practice), practice[:2000]
    # A practice whose language nobody gave takes its direction from its own text.
    water = client.get(f"/themes/{WATER}").text
    assert '<h2 dir="auto">' in water
    assert 'lang="ar" dir="rtl"' in client.get(f"/themes/{slug}").text


def test_an_archive_has_one_url(web: Web) -> None:
    from digest import clock
    from digest.config import SourceConfig
    from digest.ingest import ingest_sources
    from tests.conftest import fixture_path

    ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    app = create_app(replace(web.settings, feed_max_entries=2))
    client = app.test_client()
    assert client.get(f"/feeds/archives/{WATER}/1.atom").status_code == 200
    for number in ("01", "١", "¹", "0", "1000000000000000000000"):
        assert client.get(f"/feeds/archives/{WATER}/{number}.atom").status_code == 404, number


def test_an_address_longer_than_smtp_allows_is_refused(web: Web) -> None:
    from digest.errors import SubscriberError
    from digest.subscriptions.subscribers import normalize_email

    assert normalize_email("a" * 64 + "@example.org") == "a" * 64 + "@example.org"
    with pytest.raises(SubscriberError):
        normalize_email("a" * 65 + "@example.org")
    client = web.client()
    form = {"csrf_token": csrf(client, "/"), "email": "a" * 65 + "@example.org", "theme": [WATER]}
    assert client.post("/subscribe", data=form).status_code == 400
    assert web.status("a" * 65 + "@example.org") is None


@pytest.mark.parametrize(("asked", "kept"), [("FR", "fr"), ("fr-CA", "fr"), ("es_MX", "es"), ("es", "es")])
def test_a_language_shown_from_the_link_is_the_language_kept(web: Web, asked: str, kept: str) -> None:
    client = web.client()
    answer = client.get("/", query_string={"lang": asked})
    assert f'<html lang="{kept}"' in answer.text
    assert f"digest_lang={kept};" in answer.headers["Set-Cookie"]
    assert f'<html lang="{kept}"' in client.get("/").text  # the next page, with no ?lang=
    assert "Set-Cookie" not in client.get("/", query_string={"lang": "klingon"}).headers


def test_the_store_still_unavailable_line_comes_when_the_readme_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker retrying a dead store with growing pauses (its tries themselves slow: a connect timing out) logs
    "still unavailable" first at 30 s, not at the end of whatever pause it was in."""
    from digest.worker import outage

    now = [0.0]
    monkeypatch.setattr(outage.time, "monotonic", lambda: now[0])
    logged: list[tuple[str, float]] = []
    monkeypatch.setattr(outage.logs, "event", lambda name, *a, **k: logged.append((name, now[0])))
    store = outage.StoreOutage()
    while now[0] < 700:
        now[0] += store.failed("poll", RuntimeError("down")) + 2.5  # each try takes 2.5 s to fail
    reminders = [at for name, at in logged if name == "store.still_unavailable"]
    assert reminders[0] <= outage.FIRST_REMINDER + 2.5 + 0.2, reminders
    gaps = [b - a for a, b in zip(reminders, reminders[1:], strict=False)]
    assert all(g <= expected + 2.5 + 0.2 for g, expected in zip(gaps, (60, 120, 240, 480), strict=False)), gaps


def test_an_import_with_refused_rows_says_so_and_exits_1(run_cli: Cli, tmp_path: Path) -> None:
    run_cli("ingest", fixture_path("listing-water.txt"), now="2026-11-10T10:00:00Z")
    people = tmp_path / "people.csv"
    people.write_text(f"email,themes\nada@example.org,{WATER}\nnot an address,{WATER}\n", encoding="utf-8")
    done = run_cli("subscribers", "import", str(people), "--confirmed")
    assert done.exit_code == 1 and "1 created" in done.output and "line 3" in done.output, done.output
    clean = tmp_path / "clean.csv"
    clean.write_text(f"email,themes\nbo@example.org,{WATER}\n", encoding="utf-8")
    assert run_cli("subscribers", "import", str(clean), "--confirmed").exit_code == 0
