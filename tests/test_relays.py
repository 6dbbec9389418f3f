"""Several SMTP relays: a relay down from the start, dying mid-run (its process killed), or answering 421 at the
greeting is skipped and every digest goes through the other, once; with `--processes 4` the senders share both
relays, none twice; a relay's `?rate=5` holds across two sender processes. Real servers on loopback: aiosmtpd, in
this process or in one of their own."""

from __future__ import annotations

import email
import json
import mailbox
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.store.models import RelayHealth
from tests.conftest import RecordingHandler, free_port, smtp_controller
from tests.test_scale import DEADLINE, config, populate

SENDER_TIMEOUT = 20.0  # smtp_timeout: generous on a busy machine (a wait, never the behaviour asserted)


@pytest.fixture
def good() -> Iterator[tuple[RecordingHandler, str]]:
    handler = RecordingHandler()
    with smtp_controller(handler) as url:
        yield handler, url


def _listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, "the test's SMTP server exited at start"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the test's SMTP server did not listen"
            time.sleep(0.05)


def _server(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("dying_smtp.py")), str(port), *args])
    _listening(port, process)
    return process, port


def _send(env: dict[str, str], *extra: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "digest", "send", "--json", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def _ids(messages: list[email.message.Message]) -> Counter[str]:
    return Counter(str(m["Message-ID"]) for m in messages)


def _health(sessions: object) -> dict[str, bool]:
    with sessions() as s:  # type: ignore[operator]
        return {r: u for r, u in s.execute(select(RelayHealth.relay, RelayHealth.up))}


@pytest.mark.parametrize("trouble", ["down", "dies", "421"])
def test_a_relay_in_trouble_is_skipped_and_every_digest_goes_once_through_the_other(
    trouble: str, good: tuple[RecordingHandler, str], tmp_path: Path
) -> None:
    handler, good_url = good
    count = 30
    sessions, _ = populate(f"sqlite:///{tmp_path / 'digest.db'}", count)
    process = None
    kept = tmp_path / "first"
    if trouble == "down":
        first = f"smtp://127.0.0.1:{free_port()}"  # nothing listens there
    elif trouble == "dies":
        process, port = _server(str(kept), "11")  # takes 10 digests, dies as the 11th arrives
        first = f"smtp://127.0.0.1:{port}"
    else:
        process, port = _server("--421")
        first = f"smtp://127.0.0.1:{port}"
    try:
        # One sender (`digest send`): its home is the first relay of the list.
        env = config(tmp_path, f"sqlite:///{tmp_path / 'digest.db'}", f"{first} {good_url}")
        env["DIGEST_SMTP_TIMEOUT"] = str(SENDER_TIMEOUT)
        report = _send(env)
    finally:
        if process is not None:
            process.kill()
            process.wait()
    accepted_first = [email.message_from_bytes(m.as_bytes()) for m in mailbox.Maildir(kept)] if kept.exists() else []
    both = _ids([r.message for r in handler.received]) + _ids(accepted_first)
    assert report["sent"] == count and report["ok"] is True, report
    assert len(both) == count and max(both.values()) == 1, "a digest went twice, or not at all"
    if trouble == "dies":
        assert len(accepted_first) == 10 and len(handler.received) == count - 10
    else:
        assert len(handler.received) == count
    health = _health(sessions)
    assert health[good_url] is True and health[first] is False, health
    # `digest status` says which relay is down and why (it exits 1 here: no worker leads).
    status = subprocess.run(
        [sys.executable, "-m", "digest", "status", "--json"], env=env, capture_output=True, text=True, timeout=DEADLINE
    )
    relays = {r["relay"]: r for r in json.loads(status.stdout)["relays"]}
    assert relays[good_url]["up"] is True and relays[first]["up"] is False and relays[first]["last_error"]
    # Any scrape says it too, by the relay's name (no credentials).
    from prometheus_client import generate_latest

    from digest.metrics import registry_for

    scraped = generate_latest(registry_for(sessions.kw["bind"])).decode()
    assert (
        f'digest_relay_up{{relay="{first}"}} 0.0' in scraped and f'digest_relay_up{{relay="{good_url}"}} 1.0' in scraped
    )


def test_with_four_senders_both_relays_carry_mail_and_none_goes_twice(tmp_path: Path) -> None:
    from tests.smtpfaults import FaultyHandler

    # Servers that take 30 ms a message and claims of 10 digests: no one sender can take the whole run alone (six
    # seconds by itself), even when the others are slow to start on a busy machine.
    one, two = FaultyHandler(pace=0.03), FaultyHandler(pace=0.03)
    count = 200
    populate(f"sqlite:///{tmp_path / 'digest.db'}", count)
    with smtp_controller(one) as a, smtp_controller(two) as b:
        env = config(tmp_path, f"sqlite:///{tmp_path / 'digest.db'}", f"{a} {b}", batch_size=10)
        report = _send(env, "--processes", "4")
    got = _ids([r.message for r in one.received]) + _ids([r.message for r in two.received])
    assert report["sent"] == count and len(got) == count and max(got.values()) == 1
    assert len(one.received) > 0 and len(two.received) > 0, (len(one.received), len(two.received))


def test_a_relays_rate_holds_across_two_sender_processes(good: tuple[RecordingHandler, str], tmp_path: Path) -> None:
    handler, url = good
    count = 200
    populate(f"sqlite:///{tmp_path / 'digest.db'}", count)
    env = config(tmp_path, f"sqlite:///{tmp_path / 'digest.db'}", f"{url}?rate=5")
    run = subprocess.Popen(
        [sys.executable, "-m", "digest", "send", "--processes", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while not handler.received:  # measured from the first message (start-up is not the rate)
            assert time.monotonic() < deadline and run.poll() is None, "nothing sent"
            time.sleep(0.01)
        started = time.monotonic()
        time.sleep(10)
        within = len(handler.received)
        elapsed = time.monotonic() - started
    finally:
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=DEADLINE)
    # At 5 a second, counted in whole seconds of the store's clock: at most 5 in each second begun.
    assert within <= 5 * (int(elapsed) + 2), (within, elapsed)
    assert within >= 5 * 10 / 2, f"far below the rate: {within} in {elapsed:.1f} s"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("smtp://a.example:25 smtp://b.example:25?rate=fast", "rate must be a number"),
        ("smtp://a.example:25?weight=0", "weight 1 to 100"),
        ("smtp://a.example:25 ftp://b.example", "is not smtp://host"),
    ],
)
def test_a_bad_relay_in_smtp_url_is_named_with_the_fix(url: str, said: str) -> None:
    from digest.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as refused:
        load_settings(environ={"DIGEST_SMTP_URL": url})
    assert said in str(refused.value) and "DIGEST_SMTP_URL" in str(refused.value), str(refused.value)
    assert "pass" not in str(refused.value)
