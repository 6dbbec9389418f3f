"""Operators: /metrics behind its token, the store's figures exact across forked senders, the operator page (its
password, its rate limit, its numbers), the worker as systemd runs it (READY, WATCHDOG), its units' hardening, the
alert rules under promtool, `digest status` when no worker runs, refused links logged once a minute, and the test
send."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text

from digest import clock
from digest.config import Settings, SourceConfig
from digest.ingest import ingest_sources
from digest.mail.send.runs import plan_and_send
from digest.mail.send.senders import send_in_processes
from digest.mail.send.transport import transport_for
from digest.store import db
from digest.store.models import Digest, Subscriber
from digest.subscriptions.subscribers import ensure_subscriber
from digest.web import create_app
from tests.conftest import at, fixture_path
from tests.webapp import WATER, Web, confirmed

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "metrics-token-0123456789abcdef"
PASSWORD = "correct horse battery staple"
HASH = PasswordHasher().hash(PASSWORD)


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and labels (parsed by prometheus_client's own parser)."""
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(body: str, name: str, **labels: str) -> float:
    return samples(body)[(name, tuple(sorted(labels.items())))]


# /metrics ---------------------------------------------------------------------------------------------------------


def test_metrics_answer_only_their_token_and_name_routes_not_paths(web: Web) -> None:
    client = web.client()
    assert client.get("/metrics").status_code == 404  # no metrics_token: nothing, to anyone
    app = create_app(replace(web.settings, metrics_token=TOKEN)).test_client()
    for header in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        assert app.get("/metrics", headers=header).status_code == 404
    manage = confirmed(web, "ada@example.org", WATER)
    assert app.get(manage).status_code == 200
    assert app.get("/feeds/nothing.atom").status_code == 404
    answer = app.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
    body = answer.text
    assert value(body, "digest_web_requests_total", route="/manage/<token>", status="200") >= 1
    assert value(body, "digest_web_requests_total", route="/feeds/<filename>", status="404") >= 1
    assert value(body, "digest_subscription_requests_total", via="web") >= 1
    assert value(body, "digest_confirmations_total") >= 1
    assert value(body, "digest_subscribers", status="confirmed") == 1
    assert value(body, "digest_store_up") == 1
    assert manage.removeprefix("/manage/") not in body and TOKEN not in body
    # Prometheus's own linter finds nothing to say (names, units, types, help).
    promtool = shutil.which("promtool")
    if promtool is not None:
        lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr
    # Every name follows Prometheus's rules: the digest_ prefix, counters ending _total, seconds as the unit.
    for family in text_string_to_metric_families(body):
        if family.name.startswith(("process_", "python_")):
            continue
        assert family.name.startswith("digest_"), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name


def test_the_figures_count_every_forked_sender_exactly(pg_url: str, tmp_path: Path, smtp_server: Any) -> None:
    """`digest send --processes 4` on PostgreSQL: what any scrape says was sent is exactly what the server got."""
    handler, url = smtp_server
    settings = Settings(
        database_url=pg_url,
        smtp_url=url,
        base_url="https://digest.test",
        id_domain="digest.test",
        secret_key="test-secret-0123456789abcdef",
        feeds_dir=str(tmp_path / "feeds"),
        metrics_token=TOKEN,
        batch_size=7,
    )
    engine = db.make_engine(pg_url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    at("2026-11-09T10:00:00Z")
    assert all(r.ok for r in ingest_sources(sessions, [SourceConfig(fixture_path("listing-water.txt"))], clock.now()))
    people = [f"p{n}@example.org" for n in range(60)]
    with sessions.begin() as session:
        for person in people:
            ensure_subscriber(session, person, ["Water and Sanitation"], clock.now())
    at("2026-11-10T10:00:00Z")
    ingest_sources(sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    at("2026-11-16T09:00:00Z")
    report = send_in_processes(sessions, settings, 4)
    assert report.error is None and report.sent == len(people) == len(handler.received)
    app = create_app(settings)
    body = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    app.extensions["digest"].engine.dispose()
    assert value(body, "digest_digests_sent_total") == len(people)
    assert value(body, "digest_digests", state="sent") == len(people)
    assert value(body, "digest_digests_waiting") == 0
    engine.dispose()


# The operator page ------------------------------------------------------------------------------------------------


def basic(password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"operator:{password}".encode()).decode()}


def test_the_operator_page_asks_its_password_and_counts_wrong_ones(web: Web) -> None:
    assert web.client().get("/operator/").status_code == 404  # not configured: not there
    client = create_app(replace(web.settings, operator_password_hash=HASH, operator_tries_per_hour=3)).test_client()
    answer = client.get("/operator/")
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/operator/", headers=basic(PASSWORD)).status_code == 200
    for _ in range(3):
        assert client.get("/operator/", headers=basic("wrong")).status_code == 401
    # Spent: even the right password waits for the next hour.
    assert client.get("/operator/", headers=basic(PASSWORD)).status_code == 429
    assert (
        client.get("/operator/", headers=basic(PASSWORD), environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    )


def _table(page: str, ident: str) -> dict[str, list[int]]:
    """A table of the page: each row's header and its numbers."""
    body = re.search(rf'<table id="{ident}">(.*?)</table>', page, re.S)
    assert body, ident
    rows = {}
    for head, cells in re.findall(r'<tr><th scope="row">(.*?)</th>(.*?)</tr>', body.group(1), re.S):
        rows[head] = [int(c) for c in re.findall(r"<td>(\d+)</td>", cells)]
    return rows


def a_week_sent(web: Web) -> None:
    """New practices on the 20th, and the digests of the 23rd sent to whoever is confirmed."""
    at("2026-11-20T10:00:00Z")
    ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    at("2026-11-23T09:00:00Z")
    plan_and_send(web.sessions, web.settings, transport_for(web.settings))
    clock.set_fixed_now(None)


def test_the_operator_pages_numbers_are_the_stores(web: Web) -> None:
    for person in ("ada@example.org", "bob@example.org", "cy@example.org"):
        confirmed(web, person, WATER)
    a_week_sent(web)
    client = create_app(replace(web.settings, operator_password_hash=HASH)).test_client()
    page = client.get("/operator/", headers=basic(PASSWORD)).text
    with web.sessions() as session:
        by_state = dict(session.execute(select(Digest.status, func.count()).group_by(Digest.status)).all())
        by_status = dict(session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all())
        hours = dict(
            session.execute(
                text(
                    "SELECT strftime('%Y-%m-%d %H', sent_at), count(*) FROM digests"
                    " WHERE sent_at IS NOT NULL GROUP BY 1"
                )
            ).all()
        )
        joins = dict(
            session.execute(
                text("SELECT strftime('%Y-%m-%d', confirmed_at), count(*) FROM subscribers GROUP BY 1")
            ).all()
        )
    digests = _table(page, "digests")
    assert by_state["sent"] == 3 and all(digests[str(k)] == [n] for k, n in by_state.items())
    assert all(_table(page, "subscribers")[str(k)] == [n] for k, n in by_status.items())
    # The charts end at the page's now (the real clock): an hour or day older than their range is not in them.
    people = _table(page, "people-table")
    assert joins and all(people[day][0] == count for day, count in joins.items())  # confirmed today
    # The sent chart covers the 7 days before the page's now: seen from the day of the send, every hour is there.
    at("2026-11-23T12:00:00Z")
    sent = _table(client.get("/operator/", headers=basic(PASSWORD)).text, "sent-table")
    assert hours and all(sent[hour] == [count] for hour, count in hours.items())
    assert sum(v[0] for v in sent.values()) == by_state["sent"]
    themes = _table(page, "themes")
    assert themes["Water and Sanitation"][1] == 3  # subscribers
    assert page.count("<svg") == 3 and "<script" not in page.lower()


# The worker under systemd -----------------------------------------------------------------------------------------


def test_the_worker_tells_systemd_it_is_ready_and_feeds_the_watchdog(tmp_path: Path, settings: Settings) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(tmp_path / "notify")
    listener.bind(address)
    listener.settimeout(60)
    config = tmp_path / "worker.toml"
    config.write_text(
        f'database_url = "{settings.database_url}"\nsecret_key = "{settings.secret_key}"\n'
        f'feeds_dir = "{tmp_path / "feeds"}"\noutbox_dir = "{tmp_path / "outbox"}"\nlease_seconds = 2\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "NOTIFY_", "WATCHDOG_"))}
    env |= {"DIGEST_CONFIG": str(config), "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "digest", "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        env["WATCHDOG_PID"] = str(worker.pid)
        received: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in received) < 2:
            received.append(listener.recv(4096).decode())
        assert received and "READY=1" in received[0], received
        assert sum("WATCHDOG=1" in m for m in received) >= 2, received
        worker.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in received[-1]:
            received.append(listener.recv(4096).decode())
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        listener.close()


def _exposure(unit: Path) -> float:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=120
    )
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


@pytest.mark.parametrize("name", ["digest-web.service", "digest-worker.service"])
def test_the_units_are_hardened_and_verify(name: str, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not on this machine (Debian's systemd package has it)")
    unit = ROOT / "deploy" / name
    assert _exposure(unit) <= 2.0
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)], capture_output=True, timeout=120
    )
    assert done.returncode == 0
    # verify checks the executable exists: the copy runs this checkout's digest.
    text_ = unit.read_text(encoding="utf-8").replace(
        "/srv/digest/.venv/bin/digest", str(Path(sys.executable).parent / "digest")
    )
    copy = tmp_path / name
    copy.write_text(text_, encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=120)
    problems = [line for line in done.stderr.splitlines() if name in line and "User=" not in line]
    assert done.returncode == 0 or not problems, done.stderr
    if name == "digest-worker.service":
        assert "Type=notify" in text_ and "WatchdogSec=" in text_


# Alert rules ------------------------------------------------------------------------------------------------------


def test_the_alert_rules_check_and_their_tests_pass(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed here (make system-packages installs Debian's prometheus)")
    folder = ROOT / "deploy" / "prometheus"
    for args in (["check", "rules", "rules.yml"], ["test", "rules", "rules_test.yml"]):
        done = subprocess.run([promtool, *args], cwd=folder, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    # The scrape config, with the token file it names made here (it is the operator's, not in the repository).
    token = tmp_path / "token"
    token.write_text(TOKEN, encoding="utf-8")
    config = (folder / "prometheus.yml").read_text(encoding="utf-8")
    (tmp_path / "prometheus.yml").write_text(config.replace("/etc/prometheus/digest-metrics-token", str(token)))
    shutil.copy(folder / "rules.yml", tmp_path / "rules.yml")
    done = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# Logs ---------------------------------------------------------------------------------------------------------------


def test_many_refused_links_from_one_client_are_one_line_with_a_count(
    web: Web, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = web.client()
    caplog.set_level("WARNING", logger="digest.web")
    tokens = [f"not-a-token-{n}" for n in range(40)]
    for token in tokens:
        assert client.get(f"/manage/{token}").status_code == 404
    # The minute is over (however long the 40 requests took on a busy machine): the throttle writes its count.
    refusals = web.app.extensions["digest.refusals"]
    refusals.flush(time.monotonic() + refusals.WINDOW)
    lines = [r for r in caplog.records if r.getMessage() == "web.link_refused"]
    assert len(lines) == 2, [getattr(r, "fields", None) for r in lines]
    first, rest = (r.fields for r in lines)
    assert first["route"] == "/manage/<token>" and "bad signature" in first["reason"]
    assert rest["count"] == 39
    logged = json.dumps([getattr(r, "fields", {}) for r in caplog.records])
    assert not any(token in logged for token in tokens)


# The test send ------------------------------------------------------------------------------------------------------


def test_a_test_send_goes_to_the_tester_marked_and_recorded_nowhere(run_cli: Any, smtp_server: Any) -> None:
    handler, url = smtp_server
    env = {"DIGEST_SMTP_URL": url, "DIGEST_ENVIRONMENT": "development"}
    assert run_cli("ingest", fixture_path("listing-water.txt"), now="2026-11-09T10:00:00Z").exit_code == 0
    assert (
        run_cli(
            "subscribe", "ada@example.org", "--theme", "Water and Sanitation", "--confirmed",
            now="2026-11-09T10:00:00Z", **env,
        ).exit_code == 0
    )  # fmt: skip
    assert run_cli("ingest", fixture_path("listing-water-week2.txt"), now="2026-11-10T10:00:00Z").exit_code == 0
    before = len(handler.received)
    done = run_cli("preview", "ada@example.org", "--send-to", "tester@example.net", now="2026-11-16T09:00:00Z", **env)
    assert done.exit_code == 0, done.output
    (test,) = handler.received[before:]
    assert test.recipients == ["tester@example.net"]
    assert str(test.message["Subject"]).startswith("[Test] ")
    with db.session_factory(db.make_engine(_url(run_cli)))() as session:
        assert session.scalar(select(func.count()).select_from(Digest)) == 0  # recorded nowhere
    # Nothing new once it is sent: the command says so and offers --last.
    assert run_cli("send", now="2026-11-16T09:00:00Z", **env).exit_code == 0
    done = run_cli("preview", "ada@example.org", now="2026-11-16T09:05:00Z", **env)
    assert "nothing new" in done.output and "--last" in done.output
    done = run_cli("preview", "ada@example.org", "--last", "--send-to", "tester@example.net", **env)
    assert done.exit_code == 0, done.output
    assert str(handler.received[-1].message["Subject"]).startswith("[Test] ")


def _url(run_cli: Any) -> str:
    found = re.search(r'database_url = "([^"]+)"', run_cli.config.read_text())
    assert found
    return found.group(1)


def test_the_operator_password_command_prints_a_hash_that_verifies(run_cli: Any) -> None:
    done = run_cli.runner.invoke(
        __import__("digest.cli", fromlist=["cli"]).cli, ["operator", "password"], input=PASSWORD + "\n", env=run_cli.env
    )
    assert done.exit_code == 0, done.output
    printed = done.output.strip().splitlines()[-1]
    assert printed.startswith("$argon2") and PASSWORD not in done.output
    assert PasswordHasher().verify(printed, PASSWORD)
    short = run_cli.runner.invoke(
        __import__("digest.cli", fromlist=["cli"]).cli, ["operator", "password"], input="short\n", env=run_cli.env
    )
    assert short.exit_code != 0 and "12 characters" in short.output


def test_the_sent_count_never_falls_when_a_subscriber_is_erased(web: Web) -> None:
    """digest_digests_sent_total is a counter: an erasure removes digests from the store, never from the count."""
    manage = confirmed(web, "ada@example.org", WATER)
    confirmed(web, "bob@example.org", WATER)
    a_week_sent(web)
    app = create_app(replace(web.settings, metrics_token=TOKEN)).test_client()

    def scrape() -> str:
        return app.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text

    body = scrape()
    assert value(body, "digest_digests_sent_total") == 2 == value(body, "digest_digests", state="sent")
    client = web.client()
    from tests.webapp import csrf

    assert (
        client.post(manage + "/erase", data={"csrf_token": csrf(client, manage), "confirm": "yes"}).status_code == 200
    )
    body = scrape()
    assert value(body, "digest_digests_sent_total") == 2 and value(body, "digest_digests", state="sent") == 1
    with web.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Digest).where(Digest.status == "sent")) == 1


def test_each_jobs_failures_in_a_row_count_from_its_last_success(sessions: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from digest.store.figures import job_figures
    from digest.store.models import JobRun, ScheduledJob

    start = datetime(2026, 11, 30, 9, tzinfo=UTC)
    history = {"poll-sources": ["ok", "failed", "ok", "failed", "failed"], "plan-send": ["failed", "ok"], "x": []}
    with sessions.begin() as session:
        for job, outcomes in history.items():
            session.add(ScheduledJob(id=job, trigger="interval", next_run_at=None))
            for n, outcome in enumerate(outcomes):
                when = start + timedelta(minutes=n)
                session.add(
                    JobRun(
                        job_id=job, run_id=f"{job}{n}", holder="h", started_at=when, finished_at=when, outcome=outcome
                    )
                )
        session.add(ScheduledJob(id="plan-send-start", trigger="date", next_run_at=None))
    with sessions() as session:
        found = {f.job: f for f in job_figures(session.connection())}
    assert set(found) == {"poll-sources", "plan-send", "x"}
    assert found["poll-sources"].failures_in_a_row == 2 and found["poll-sources"].last_success == start + timedelta(
        minutes=2
    )
    assert found["plan-send"].failures_in_a_row == 0 and found["plan-send"].last_success == start + timedelta(minutes=1)
    assert found["x"].failures_in_a_row == 0 and found["x"].last_success is None


def test_refusals_from_very_many_clients_are_bounded_in_threads_and_lines(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood from rotating addresses: one flushing thread, a bounded table, one line for the clients past it."""
    import threading

    from digest.web.limits import Refusals

    monkeypatch.setattr(Refusals, "MAX_CLIENTS", 5)
    refusals = Refusals()
    caplog.set_level("WARNING", logger="digest.web")
    before = threading.active_count()
    for n in range(20):
        refusals.refused(f"client{n}", "/manage/<token>", "bad signature")
        refusals.refused(f"client{n}", "/manage/<token>", "bad signature")
    assert threading.active_count() <= before + 1
    refusals.flush(time.monotonic() + Refusals.WINDOW)
    fields = [r.fields for r in caplog.records if r.getMessage() == "web.link_refused"]
    firsts = [f for f in fields if "count" not in f]
    repeats = [f for f in fields if "count" in f and f.get("clients") != "many"]
    many = [f for f in fields if f.get("clients") == "many"]
    assert len(firsts) == 5 and len(repeats) == 5 and all(f["count"] == 1 for f in repeats)
    assert many == [{"clients": "many", "count": 30}]


def test_the_operator_finds_a_subscriber_and_acts_after_confirming_each_step_audited(web: Web) -> None:
    from digest.store.models import AuditEntry

    confirmed(web, "ada@example.org", WATER)
    client = create_app(replace(web.settings, operator_password_hash=HASH)).test_client()
    auth = basic(PASSWORD)
    found = client.get("/operator/subscribers?q=ad", headers=auth).text
    assert "/operator/subscribers/ada@example.org" in found
    assert client.get("/operator/subscribers?q=ada", headers=basic("wrong")).status_code == 401
    page = client.get("/operator/subscribers/ada@example.org", headers=auth).text
    assert 'id="status">confirmed' in page and "Water and Sanitation" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    url = "/operator/subscribers/ada@example.org/suppress"
    # No CSRF token: refused. The first POST only asks to confirm; nothing changes.
    assert client.post(url, data={}, headers=auth).status_code == 400
    asked = client.post(url, data={"csrf_token": token.group(1)}, headers=auth)
    assert asked.status_code == 200 and "This will stop all mail to ada@example.org" in asked.text
    assert web.status("ada@example.org") == "confirmed"
    done = client.post(
        url, data={"csrf_token": token.group(1), "confirmed": "yes", "reason": "asked by phone"}, headers=auth
    )
    assert done.status_code == 303 and web.status("ada@example.org") == "suppressed"
    again = client.post(
        "/operator/subscribers/ada@example.org/suppress",
        data={"csrf_token": token.group(1), "confirmed": "yes"},
        headers=auth,
    )
    assert again.status_code == 303  # a state that does not fit: said on the page, nothing done
    client.post(
        "/operator/subscribers/ada@example.org/unsuppress",
        data={"csrf_token": token.group(1), "confirmed": "yes", "reason": "misread bounce"},
        headers=auth,
    )
    assert web.status("ada@example.org") == "confirmed"
    with web.sessions() as session:
        lines = [tuple(r) for r in session.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.detail))]
    assert lines == [
        ("operator", "subscriber.suppress", "asked by phone"),
        ("operator", "subscriber.unsuppress", "misread bounce"),
    ]
    trail = client.get("/operator/", headers=auth).text
    assert "asked by phone" in trail and "subscriber.unsuppress" in trail
    client.post(
        "/operator/subscribers/ada@example.org/erase",
        data={"csrf_token": token.group(1), "confirmed": "yes"},
        headers=auth,
    )
    assert web.status("ada@example.org") is None
    with web.sessions() as session:
        subjects = set(session.scalars(select(AuditEntry.subject)))
    assert subjects == {"(erased)"}  # the log keeps what was done, not to whom
