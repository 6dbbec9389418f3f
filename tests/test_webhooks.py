"""Webhooks as a receiver meets them: every change becomes an event written with it, delivered signed per the
Standard Webhooks specification and verified here with the `standardwebhooks` library as a receiver would (a
tampered body fails); a receiver answering 500 gets the retries under the same webhook-id, an endpoint failing for
three days is disabled; a sender killed with -9 mid-delivery loses nothing and repeats the same webhook-id; an erased
subscriber's address is not kept once delivered. A real HTTP receiver on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from digest import clock
from digest.access import webhooks
from digest.config import SourceConfig
from digest.ingest import ingest_sources
from digest.store import db
from digest.store.models import WebhookDelivery, WebhookEndpoint, WebhookMessage
from tests.conftest import at, fixture_path
from tests.webapp import WATER, Web, confirmed, csrf


@dataclass
class Receiver:
    """What the receiver was sent, and what it answers next (a status per request; 200 when none is left)."""

    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    # Set: the next request is held (not answered) until it is cleared.
    hold: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)

    def events(self) -> list[dict[str, object]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: dict[str, Receiver] = {}
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            me = box["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            me.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            me.arrived.set()
            if me.hold.is_set():
                release.wait(60)  # held: the sender is killed meanwhile
                return
            status = me.answers.pop(0) if me.answers else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["r"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box["r"]
    release.set()
    server.shutdown()
    server.server_close()


def _endpoint(web: Web, url: str, *types: str) -> str:
    with db.transaction(web.sessions) as session:
        _, secret = webhooks.add(session, url, list(types), clock.now())
    return secret


def _deliver(web: Web) -> webhooks.Delivered:
    return webhooks.deliver_due(web.sessions, timeout=10)


def test_every_change_is_an_event_delivered_signed_and_verified_as_a_receiver_would(
    web: Web, receiver: Receiver, tmp_path: Path
) -> None:
    secret = _endpoint(web, receiver.url)
    manage = confirmed(web, "ada@example.org", WATER)  # subscriber.created, subscriber.confirmed
    at("2026-11-20T10:00:00Z")
    ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())  # practice.added
    at("2026-11-23T09:00:00Z")
    web.send()  # digest.sent
    client = web.client()
    client.post(manage, data={"csrf_token": csrf(client, manage), "action": "leave"})  # subscriber.unsubscribed
    clock.set_fixed_now(None)
    done = _deliver(web)
    assert done.failed == 0 and done.delivered == len(receiver.received) > 0
    kinds = [e["type"] for e in receiver.events()]
    assert set(kinds) >= {
        "subscriber.created",
        "subscriber.confirmed",
        "practice.added",
        "digest.sent",
        "subscriber.unsubscribed",
    }, kinds
    verifier = Webhook(secret)
    for headers, body in receiver.received:
        said = verifier.verify(body, headers)  # raises unless signed with our secret, fresh, untouched
        assert said["type"] and headers["webhook-id"].startswith("msg_")
    headers, body = receiver.received[0]
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body.replace(b"ada", b"eve"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(_endpoint(web, "https://other.example/in")).verify(body, headers)  # another endpoint's secret
    sent = next(e for e in receiver.events() if e["type"] == "digest.sent")
    assert sent["data"]["email"] == "ada@example.org" and sent["data"]["message_id"]  # type: ignore[index]
    assert _deliver(web).delivered == 0  # nothing twice


def test_a_receiver_answering_500_gets_the_retries_under_the_same_webhook_id_and_three_days_disable_it(
    web: Web, receiver: Receiver
) -> None:
    _endpoint(web, receiver.url, "subscriber.created")
    start = at("2026-11-09T12:00:00Z")
    confirmed(web, "ada@example.org", WATER)
    receiver.answers = [500, 503]
    assert _deliver(web).failed == 1
    at((start + timedelta(seconds=6)).isoformat())
    assert _deliver(web).failed == 1
    at((start + timedelta(minutes=6)).isoformat())
    assert _deliver(web).delivered == 1
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert len(receiver.received) == 3 and len(ids) == 1
    with web.sessions() as session:
        tries = session.execute(select(WebhookDelivery.state, WebhookDelivery.attempts)).one()
    assert tuple(tries) == ("delivered", 3)

    # Failing from now on: about a day of retries, then given up; failing for three days, the endpoint is disabled.
    receiver.answers = [500] * 100
    at("2026-11-10T12:00:00Z")
    confirmed(web, "bo@example.org", WATER)
    when = clock.now()
    for wait in [timedelta(0), *webhooks.outbox.RETRIES]:
        when += wait + timedelta(seconds=1)
        at(when.isoformat())
        assert _deliver(web).failed == 1
    with web.sessions() as session:
        states = sorted(str(s) for s in session.scalars(select(WebhookDelivery.state)))
        endpoint = session.scalars(select(WebhookEndpoint)).one()
    assert states == ["delivered", "failed"] and endpoint.disabled_at is None  # 28 hours: not yet three days
    at("2026-11-13T13:00:00Z")
    confirmed(web, "cy@example.org", WATER)
    done = _deliver(web)
    assert done.failed == 1 and done.disabled == [endpoint.id]
    at("2026-11-13T14:00:00Z")
    confirmed(web, "dee@example.org", WATER)
    before = len(receiver.received)
    assert _deliver(web).delivered == 0 and len(receiver.received) == before  # disabled: nothing goes
    with web.sessions() as session:
        (listed,) = webhooks.listed(session)
    assert listed.disabled_at is not None
    from prometheus_client import generate_latest

    from digest.metrics import registry_for

    assert "digest_webhook_endpoints_disabled 1.0" in generate_latest(registry_for(web.sessions.kw["bind"])).decode()
    clock.set_fixed_now(None)


def test_a_sender_killed_mid_delivery_loses_nothing_and_repeats_the_same_webhook_id(
    web: Web, receiver: Receiver, tmp_path: Path
) -> None:
    _endpoint(web, receiver.url, "subscriber.created")
    at("2026-11-09T12:00:00Z")
    confirmed(web, "ada@example.org", WATER)
    clock.set_fixed_now(None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {
        "DIGEST_DATABASE_URL": str(web.sessions.kw["bind"].url),
        "DIGEST_ENVIRONMENT": "development",
        "DIGEST_NOW": "2026-11-09T12:00:10Z",
    }
    receiver.hold.set()
    sender = subprocess.Popen([sys.executable, "-m", "digest", "webhooks", "deliver"], env=env)
    try:
        assert receiver.arrived.wait(120), "the delivery never arrived"
        sender.send_signal(signal.SIGKILL)  # in the middle: the receiver has the request, no answer went back
        sender.wait(timeout=60)
    finally:
        if sender.poll() is None:
            sender.kill()
    receiver.hold.clear()
    with web.sessions() as session:
        assert session.scalars(select(WebhookDelivery.state)).one() == "pending"
    # Later (past the try's hold), the next sender delivers it: the same webhook-id, at least once.
    again = subprocess.run(
        [sys.executable, "-m", "digest", "webhooks", "deliver", "--json"],
        env=env | {"DIGEST_NOW": "2026-11-09T12:05:00Z"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["delivered"] == 1
    ids = [headers["webhook-id"] for headers, _ in receiver.received]
    assert len(ids) == 2 and ids[0] == ids[1]


def test_an_erased_subscribers_address_is_not_kept_once_delivered(web: Web, receiver: Receiver) -> None:
    _endpoint(web, receiver.url)
    manage = confirmed(web, "ann@example.org", WATER)
    client = web.client()
    erase = manage + "/erase"
    answer = client.post(erase, data={"csrf_token": csrf(client, manage), "confirm": "yes"})
    assert answer.status_code in (200, 303), answer.status_code
    with web.sessions() as session:
        waiting = [p for p in session.scalars(select(WebhookMessage.payload))]
    assert any("ann@example.org" in p for p in waiting)  # needed until delivered
    _deliver(web)
    assert "subscriber.erased" in [e["type"] for e in receiver.events()]
    with web.sessions() as session:
        kept = [p for p in session.scalars(select(WebhookMessage.payload))]
    assert kept and not any("ann@example.org" in p for p in kept)


def test_the_webhooks_commands(web: Web, receiver: Receiver) -> None:
    from digest.cli import cli

    env = {"DIGEST_DATABASE_URL": str(web.sessions.kw["bind"].url), "DIGEST_ENVIRONMENT": "development"}
    run = CliRunner()
    added = run.invoke(cli, ["webhooks", "add", receiver.url, "--event", "subscriber.created"], env=env)
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    refused = run.invoke(cli, ["webhooks", "add", receiver.url, "--event", "subscriber.born"], env=env)
    assert refused.exit_code == 1 and "unknown event type" in refused.output
    listed = run.invoke(cli, ["webhooks", "list"], env=env)
    assert receiver.url in listed.output and "subscriber.created" in listed.output and secret not in listed.output
    tested = run.invoke(cli, ["webhooks", "test", "1"], env=env)
    assert tested.exit_code == 0 and "delivered (200)" in tested.output, tested.output
    headers, body = receiver.received[-1]
    assert Webhook(secret).verify(body, headers)["type"] == "webhook.test"
    log = run.invoke(cli, ["webhooks", "log", "1"], env=env)
    assert "webhook.test\tdelivered\t1 tries\t200" in log.output
    assert run.invoke(cli, ["webhooks", "remove", "1"], env=env).exit_code == 0
    assert run.invoke(cli, ["webhooks", "list"], env=env).output.strip() == ""


def test_an_endpoint_removed_during_a_run_breaks_no_sender_and_gets_nothing(web: Web, receiver: Receiver) -> None:
    """A sender reads which endpoints want digest.sent every few seconds, not per group: one removed meanwhile gets
    no delivery, and the group is recorded all the same."""
    from digest.store.digests import Claimed, SentRecorder

    _endpoint(web, receiver.url, "digest.sent")
    engine = web.sessions.kw["bind"]
    recorder = SentRecorder(engine, "test-holder", group=1)
    try:
        now = clock.now()
        recorder.sent(Claimed(1, 1, "ada@example.org", "k", "<m1@d>", "s", "2026-11-16", "h", 1), now)
        with db.transaction(web.sessions) as session:
            webhooks.remove(session, 1)
        recorder.sent(Claimed(2, 1, "ada@example.org", "k", "<m2@d>", "s", "2026-11-23", "h", 1), now)
    finally:
        recorder.close()
    with web.sessions() as session:
        kinds = list(session.scalars(select(WebhookMessage.type)))
        deliveries = list(session.scalars(select(WebhookDelivery.id)))
    assert kinds == ["digest.sent", "digest.sent"] and deliveries == []  # the first's went with its endpoint
