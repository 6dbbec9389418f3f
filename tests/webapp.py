"""The web app in-process for the tests: Flask's test client on a real store with two themes, a real SMTP server on
loopback, and the steps of a person's journey (subscribe, confirm) through the pages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings
from digest.mail.send.runs import plan_and_send
from digest.mail.send.transport import transport_for
from digest.store.models import Subscriber
from digest.subscriptions.tokens import Purpose, make_token
from tests.conftest import RecordingHandler

BASE = "http://digest.localhost"
WATER = "water-and-sanitation"
GOAL6 = "goal-6-clean-water-and-sanitation"


@dataclass
class Web:
    app: Flask
    settings: Settings
    sessions: sessionmaker[Session]
    mail: RecordingHandler

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.mail.to(address)]

    def link(self, address: str, path: str) -> str:
        """The path of the last link under BASE + path in the newest mail to ``address``."""
        (*_, newest) = self.mails_to(address)
        part = newest.get_body(("plain",))
        assert part is not None
        found = re.findall(re.escape(BASE + path) + r"[^\s>]+", part.get_content())
        assert found, part.get_content()
        return str(found[-1]).removeprefix(BASE)

    def status(self, address: str) -> str | None:
        with self.sessions() as session:
            return session.scalar(select(Subscriber.status).where(Subscriber.email == address))

    def key(self, address: str) -> str:
        with self.sessions() as session:
            return session.scalars(select(Subscriber.key).where(Subscriber.email == address)).one()

    def themes(self, address: str) -> set[str]:
        from digest.store import queries

        with self.sessions() as session:
            return set(queries.subscribers(session, email=address)[0].themes)

    def send(self) -> None:
        plan_and_send(self.sessions, self.settings, transport_for(self.settings))


def csrf(client: FlaskClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "no CSRF token on " + path
    return match.group(1)


def subscribe(client: FlaskClient, email: str, *themes: str) -> tuple[int, str]:
    token = csrf(client, "/")
    answer = client.post("/subscribe", data={"csrf_token": token, "email": email, "theme": list(themes)})
    return answer.status_code, answer.headers.get("Location", "")


def confirmed(web: Web, email: str, *themes: str) -> str:
    """Subscribe and confirm through the pages; the path of their manage page. Unless the test set the clock,
    they confirm on Monday 9 November 2026 at noon (UTC), after the fixture's ingest: their first slot is a
    week on (a first digest comes at the first slot after confirming), and a test may send as of any later day."""
    if clock.fixed_now() is None:
        clock.set_fixed_now(clock.parse_instant("2026-11-09T12:00:00Z"))
        try:
            return confirmed(web, email, *themes)
        finally:
            clock.set_fixed_now(None)
    client = web.client()
    assert subscribe(client, email, *themes)[0] == 303
    confirm = web.link(email, "/confirm/")
    assert client.post(confirm, data={"csrf_token": csrf(client, confirm)}).status_code == 200
    assert web.status(email) == "confirmed"
    return "/manage/" + make_token(web.settings.secret_key, Purpose.MANAGE, web.key(email))
