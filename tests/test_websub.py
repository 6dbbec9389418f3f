"""WebSub: a real `digest serve`, real `digest ingest` processes and three local hubs (one that works and fetches the
feed it is told of, one that answers 500, one that hangs): one publish per changed feed per ingest, none for an
unchanged feed, and a failing hub delays nobody past the deadline nor fails the command."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from tests.conftest import fixture_path, free_port
from tests.webserver import environment, serving, write_config

DEADLINE = 4.0


@dataclass
class Hub:
    """A hub on loopback: records each publish (and, when it works, fetches the feed as a hub does)."""

    behaviour: str  # "ok" (fetches the feed), "record" (only takes the news), "fail", "hang" or "trickle"
    publishes: list[tuple[float, str]] = field(default_factory=list)
    fetched: list[tuple[str, int, str]] = field(default_factory=list)
    url: str = ""
    feeds_dir: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                form = parse_qs(body)
                assert form["hub.mode"] == ["publish"], form
                assert self.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
                (topic,) = form["hub.url"]
                assert form["hub.topic"] == [topic], form  # what flask-websub's and WebSub.rocks' hubs read
                hub.publishes.append((time.monotonic(), topic))
                if hub.behaviour == "hang":
                    time.sleep(DEADLINE * 4)
                    return
                if hub.behaviour == "static":  # fetches the feed as a static server would serve it: the file
                    name = topic.rsplit("/", 1)[1]
                    path = Path(hub.feeds_dir, name)
                    hub.fetched.append(
                        (topic, 200 if path.is_file() else 404, path.read_text() if path.is_file() else "")
                    )
                    self.send_response(204)
                    self.end_headers()
                    return
                if hub.behaviour == "trickle":  # a 200 whose body comes a byte a second for two minutes
                    self.send_response(200)
                    self.send_header("Content-Length", "120")
                    self.end_headers()
                    for _ in range(120):
                        try:
                            self.wfile.write(b".")
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(1)
                    return
                if hub.behaviour in ("fail", "record"):
                    self.send_response(500 if hub.behaviour == "fail" else 202)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = httpx.get(topic, timeout=30)
                hub.fetched.append((topic, answer.status_code, answer.headers.get("Link", "")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def hubs() -> Iterator[dict[str, Hub]]:
    made = {name: Hub(name) for name in ("ok", "fail", "hang", "trickle", "static")}
    servers = []
    for hub in made.values():
        server = ThreadingHTTPServer(("127.0.0.1", 0), hub.handler())
        server.daemon_threads = True
        hub.url = f"http://127.0.0.1:{server.server_address[1]}/hub"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield made
    for server in servers:
        server.shutdown()
        server.server_close()


def ingest(config: Path, source: str) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "digest", "ingest", source],
        env=environment(config),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return started, time.monotonic(), done


def test_each_changed_feed_is_published_once_to_each_hub_and_a_bad_hub_stops_nothing(
    tmp_path: Path, hubs: dict[str, Hub]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(
        tmp_path / "digest.toml",
        f"sqlite:///{tmp_path / 'digest.db'}",
        base,
        "",
        environment="development",
        websub_hubs=" ".join(hub.url for hub in (hubs["hang"], hubs["fail"], hubs["ok"])),
        websub_deadline=DEADLINE,
    )
    water = f"{base}/feeds/water-and-sanitation.atom"
    goal6 = f"{base}/feeds/goal-6-clean-water-and-sanitation.atom"
    everything = f"{base}/feeds/all.atom"
    with serving(config, port):
        # Every feed names the hubs and itself, in the document and in Link headers.
        started, ended, done = ingest(config, fixture_path("listing-water.txt"))
        assert done.returncode == 0, done.stderr
        assert sorted(topic for _, topic in hubs["ok"].publishes) == sorted([water, everything])
        # The working hub heard within the deadline, however long the hanging one took.
        assert all(at - started < DEADLINE for at, _ in hubs["ok"].publishes)
        assert {(topic, status) for topic, status, _ in hubs["ok"].fetched} == {(water, 200), (everything, 200)}
        assert all(f'<{hubs["ok"].url}>; rel="hub"' in link for _, _, link in hubs["ok"].fetched)
        assert all(f'<{topic}>; rel="self"' in link for topic, _, link in hubs["ok"].fetched)
        # The failing hub was tried again within the deadline; the hanging one was asked once and abandoned.
        assert len(hubs["fail"].publishes) >= 2
        assert len(hubs["hang"].publishes) == 1
        failures = [line for line in done.stderr.splitlines() if line.startswith("warning: WebSub hub")]
        assert len(failures) == 2, done.stderr
        assert any(hubs["fail"].url in f and "HTTP 500" in f for f in failures), failures
        assert any(hubs["hang"].url in f and "websub_deadline" in f for f in failures), failures
        document = httpx.get(water).text
        assert f'<link href="{hubs["ok"].url}" rel="hub"/>' in document
        assert f'<link href="{water}" rel="self" type="application/atom+xml"/>' in document

        # The same listing again changes no feed: no hub hears anything.
        for hub in hubs.values():
            hub.publishes.clear()
        _, _, done = ingest(config, fixture_path("listing-water.txt"))
        assert done.returncode == 0, done.stderr
        assert [hub.publishes for hub in hubs.values()] == [[], [], [], [], []]

        # Another theme: its feed and all.atom, not the water feed (the kiosk it shares is not new there).
        _, _, done = ingest(config, fixture_path("listing-goal6.txt"))
        assert done.returncode == 0, done.stderr
        assert sorted(topic for _, topic in hubs["ok"].publishes) == sorted([goal6, everything])

        # Bad paths over real HTTP: 404, never a traceback or a 5xx.
        for path in (
            "/feeds/nothing.atom",
            "/feeds/..%2F..%2Fdigest.db",
            "/feeds/%2e%2e/%2e%2e/etc/passwd",
            "/feeds/archives/all/0.atom",
            "/feeds/me/%2e%2e.atom",
            "/feeds/" + "x" * 10_000 + ".atom",
        ):
            answer = httpx.get(base + path, timeout=30)
            assert answer.status_code in (404, 414), (path[:60], answer.status_code)
            assert "Traceback" not in answer.text


def test_the_workers_poll_publishes_what_it_changed_and_a_dead_hub_fails_nothing(
    tmp_path: Path, hubs: dict[str, Hub], sessions: Any, settings: Any
) -> None:
    """The poll job, as the worker runs it: the changed feeds published to every hub; a hub that hangs costs the
    deadline, not the job."""
    import threading
    from dataclasses import dataclass, replace

    from digest.config import SourceConfig
    from digest.worker.jobs import poll_job

    hubs["ok"].behaviour = "record"  # no fetch back: no web app runs here
    configured = replace(
        settings,
        sources=(SourceConfig(fixture_path("listing-water.txt")),),
        websub_hubs=f"{hubs['hang'].url} {hubs['ok'].url}",
        websub_deadline=2.0,
    )

    @dataclass
    class Context:
        settings: Any
        factory: Any
        stop: threading.Event

    context = Context(configured, sessions, threading.Event())
    started = time.monotonic()
    counts, error = poll_job(context)
    took = time.monotonic() - started
    assert error is None and counts["new"] == 5 and counts["feeds_published"] == 2 and counts["hubs_failed"] == 1
    base = configured.base_url
    assert sorted(t for _, t in hubs["ok"].publishes) == [
        f"{base}/feeds/all.atom",
        f"{base}/feeds/water-and-sanitation.atom",
    ]
    assert took < 2.0 + 15  # the deadline, and the ingest itself on a busy machine
    # The feed files hold the change before any hub heard of it (a hub may fetch them from a static server).
    assert counts["feeds_written"] >= 2
    assert Path(configured.feeds_dir, "water-and-sanitation.atom").is_file()
    # Nothing new: nothing published.
    hubs["ok"].publishes.clear()
    counts, error = poll_job(context)
    assert error is None and "feeds_published" not in counts and hubs["ok"].publishes == []


@pytest.mark.probe
def test_a_hub_that_trickles_its_answer_keeps_no_command_past_the_deadline(
    tmp_path: Path, hubs: dict[str, Hub]
) -> None:
    """A hub answering 200 with a body that comes a byte a second: the command is told, reads no body, and exits
    within the deadline (the abandoned thread is not joined at exit)."""
    config = write_config(
        tmp_path / "digest.toml",
        f"sqlite:///{tmp_path / 'digest.db'}",
        "http://127.0.0.1:9",
        "",
        environment="development",
        websub_hubs=f"{hubs['trickle'].url} {hubs['hang'].url}",
        websub_deadline=DEADLINE,
    )
    started, ended, done = ingest(config, fixture_path("listing-water.txt"))
    assert ended - started < DEADLINE + 40, (ended - started, done.stderr)  # 120 s of trickle, ingest on a busy machine
    assert len(hubs["trickle"].publishes) == 2  # both feeds told: the 200 counted, its body left unread
    failures = [line for line in done.stderr.splitlines() if line.startswith("warning: WebSub hub")]
    assert len(failures) == 1 and hubs["hang"].url in failures[0], done.stderr


def test_the_feed_files_hold_a_change_before_any_hub_hears_of_it(tmp_path: Path, hubs: dict[str, Hub]) -> None:
    """feeds_dir is served byte for byte (by the web app, or a static server): `digest ingest` writes it before it
    tells the hubs, so a hub that fetches the feed it was told of finds the change."""
    config = write_config(
        tmp_path / "digest.toml",
        f"sqlite:///{tmp_path / 'digest.db'}",
        "http://127.0.0.1:9",
        "",
        environment="development",
        websub_hubs=hubs["static"].url,
        websub_deadline=DEADLINE,
    )
    hubs["static"].feeds_dir = str(tmp_path / "feeds")
    _, _, done = ingest(config, fixture_path("listing-water.txt"))
    assert done.returncode == 0, done.stderr
    seen = {topic.rsplit("/", 1)[1]: (status, body) for topic, status, body in hubs["static"].fetched}
    assert set(seen) == {"water-and-sanitation.atom", "all.atom"}
    assert all(status == 200 and "Community Water Kiosks" in body for status, body in seen.values()), seen


def test_a_hub_nobody_here_wrote_pushes_a_changed_feed_to_a_real_subscriber(tmp_path: Path) -> None:
    """flask-websub's hub (its publish ping reads hub.topic) and its subscriber: the subscriber discovers the hub
    from a theme's feed on a real `digest serve`, subscribes (the hub verifies its intent), and after a `digest
    ingest` adds a practice to the theme, the hub fetches the feed and pushes it to the subscriber."""
    pytest.importorskip("flask_websub")
    from celery import Celery
    from flask import Flask
    from flask_websub.hub import Hub as WebSubHub
    from flask_websub.hub import SQLite3HubStorage
    from flask_websub.subscriber import (
        SQLite3SubscriberStorage,
        SQLite3TempSubscriberStorage,
        Subscriber,
        discover,
    )
    from werkzeug.serving import make_server

    hub_port, subscriber_port, port = free_port(), free_port(), free_port()
    # The hub, with celery running its tasks in the request (no broker: they are short and local here).
    celery = Celery("hub", broker="memory://")
    celery.conf.task_always_eager = True
    hub_app = Flask("hub")
    hub_app.config["PUBLISH_SUPPORTED"] = True
    hub = WebSubHub(SQLite3HubStorage(str(tmp_path / "hub.db")), celery, REQUEST_TIMEOUT=30)
    hub_app.register_blueprint(hub.build_blueprint(url_prefix="/hub"))
    # The subscriber, keeping what it is sent.
    received: list[tuple[str, bytes]] = []
    subscriber_app = Flask("subscriber")
    subscriber_app.config["SERVER_NAME"] = f"127.0.0.1:{subscriber_port}"
    subscriber = Subscriber(
        SQLite3SubscriberStorage(str(tmp_path / "sub.db")),
        SQLite3TempSubscriberStorage(str(tmp_path / "sub.db")),
        REQUEST_TIMEOUT=30,
    )
    subscriber_app.register_blueprint(subscriber.build_blueprint(url_prefix="/callbacks"))
    subscriber.add_listener(lambda topic, callback_id, body: received.append((topic, body)))
    servers = [
        make_server("127.0.0.1", hub_port, hub_app, threaded=True),
        make_server("127.0.0.1", subscriber_port, subscriber_app, threaded=True),
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    config = write_config(
        tmp_path / "digest.toml",
        f"sqlite:///{tmp_path / 'digest.db'}",
        base,
        "",
        environment="development",
        websub_hubs=f"http://127.0.0.1:{hub_port}/hub",
        websub_deadline=30.0,
    )
    try:
        with serving(config, port):
            _, _, done = ingest(config, fixture_path("listing-water.txt"))
            assert done.returncode == 0, done.stderr  # the hub took the publish ping: no warning about it
            assert "WebSub" not in done.stderr, done.stderr
            topic = f"{base}/feeds/water-and-sanitation.atom"
            with subscriber_app.app_context():
                found = discover(topic)
                assert found == {"hub_url": f"http://127.0.0.1:{hub_port}/hub", "topic_url": topic}
                subscriber.subscribe(**found)
            deadline = time.monotonic() + 60
            while not list(subscriber.storage.close_to_expiration(10**9)) and time.monotonic() < deadline:
                time.sleep(0.1)  # until the hub has verified the subscription
            _, _, done = ingest(config, fixture_path("listing-water-week2.txt"))
            assert done.returncode == 0 and "WebSub" not in done.stderr, done.stderr
            while not received and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        for server in servers:
            server.shutdown()
    assert received, "the hub pushed nothing"
    pushed_topic, body = received[-1]
    assert pushed_topic == topic
    assert b"Greywater" in body and body.startswith(b"<?xml")  # the changed feed itself
