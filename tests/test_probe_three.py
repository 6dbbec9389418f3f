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

import pytest
from argon2 import PasswordHasher
from flask.testing import FlaskClient
from sqlalchemy import select

from digest.store.models import Subscriber
from digest.store.states import SubscriberStatus
from digest.subscriptions.tokens import Purpose, make_token
from digest.web import create_app
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
