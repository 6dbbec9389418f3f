"""kill -9 of a real `digest send` process at any moment, then a rerun: every digest arrives, none is lost.

A message may arrive twice only when the server had accepted it before the process died and its outcome was
not yet recorded (the one in flight, and the rest of its group with `sent_per_commit` above 1), and then with
the same Message-ID.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.store.models import Digest, Subscriber
from tests.conftest import smtp_controller
from tests.smtpfaults import FaultyHandler
from tests.test_delivery import week_with_news

NOW = "2026-11-16T09:00:00Z"
PEOPLE = [f"reader{n:02d}@example.org" for n in range(24)]


@pytest.fixture
def slow_server() -> Iterator[tuple[FaultyHandler, str]]:
    handler = FaultyHandler(pace=0.02, hold=3.0, stall=30.0)
    with smtp_controller(handler) as url:
        yield handler, url


def write_config(settings: Settings, smtp_url: str, path: Path, group: int = 1) -> Path:
    path.write_text(
        f"""
database_url = "{settings.database_url}"
base_url = "{settings.base_url}"
smtp_url = "{smtp_url}"
smtp_timeout = 60
send_backoff = 0.05
id_domain = "{settings.id_domain}"
secret_key = "{settings.secret_key}"
timezone = "{settings.timezone}"
sent_per_commit = {group}
""",
        encoding="utf-8",
    )
    return path


def start(config: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DIGEST_CONFIG=str(config), DIGEST_NOW=NOW)
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "send"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def finish(config: Path) -> None:
    env = dict(os.environ, DIGEST_CONFIG=str(config), DIGEST_NOW=NOW)
    done = subprocess.run([sys.executable, "-m", "digest", "send"], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()


def kill_when(process: subprocess.Popen[bytes], ready: Callable[[], bool], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        assert process.poll() is None, "the sender ended before the moment to kill it"
        assert time.monotonic() < deadline, "the moment to kill never came"
        time.sleep(0.005)
    kill9(process)


def kill9(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


def copies(handler: FaultyHandler) -> dict[str, list[str]]:
    """Message-IDs received per recipient."""
    out: dict[str, list[str]] = {}
    for r in handler.received:
        out.setdefault(r.recipients[0], []).append(str(r.message["Message-ID"]))
    return out


def statuses(sessions: sessionmaker[Session]) -> Counter[str]:
    with sessions() as s:
        return Counter(s.scalars(select(Digest.status)))


def status_of(sessions: sessionmaker[Session], email: str) -> str:
    with sessions() as s:
        return s.scalar(select(Digest.status).join(Subscriber).where(Subscriber.email == email)) or ""


@pytest.mark.parametrize("group", [1, 10])
def test_kill_while_the_server_holds_an_accepted_message(
    sessions: sessionmaker[Session],
    settings: Settings,
    slow_server: tuple[FaultyHandler, str],
    tmp_path: Path,
    group: int,
) -> None:
    handler, url = slow_server
    week_with_news(sessions, *PEOPLE)
    held = PEOPLE[7]
    handler.script = {held: ["hold"]}  # accepted and recorded by the server, 250 not yet answered
    config = write_config(settings, url, tmp_path / "digest.toml", group)
    kill_when(start(config), lambda: len(handler.received) == 8)
    accepted = {r.recipients[0] for r in handler.received}
    # Claimed, the outcome not recorded: the held message, and (in groups) the accepted ones of its group.
    unrecorded = {p for p in accepted if status_of(sessions, p) == "sending"}
    assert held in unrecorded and len(unrecorded) <= group
    if group == 1:
        assert unrecorded == {held}
    finish(config)
    received = copies(handler)
    # Sent again: exactly the accepted messages whose outcome was not recorded, each with its Message-ID.
    assert {p: len(received[p]) for p in PEOPLE} == {p: 2 if p in unrecorded else 1 for p in PEOPLE}
    assert all(len(set(received[p])) == 1 for p in unrecorded)
    assert statuses(sessions) == Counter({"sent": len(PEOPLE)})


def test_kill_before_the_server_accepted(
    sessions: sessionmaker[Session], settings: Settings, slow_server: tuple[FaultyHandler, str], tmp_path: Path
) -> None:
    handler, url = slow_server
    week_with_news(sessions, *PEOPLE)
    stalled = PEOPLE[12]
    handler.script = {stalled: ["stall"]}  # the message is in, the server has not answered: not accepted
    config = write_config(settings, url, tmp_path / "digest.toml")
    kill_when(start(config), lambda: stalled in handler.transactions)
    finish(config)
    assert {p: len(ids) for p, ids in copies(handler).items()} == dict.fromkeys(PEOPLE, 1)
    assert statuses(sessions) == Counter({"sent": len(PEOPLE)})


@pytest.mark.parametrize("group", [1, 10])
def test_kill_at_random_moments_again_and_again(
    sessions: sessionmaker[Session],
    settings: Settings,
    slow_server: tuple[FaultyHandler, str],
    tmp_path: Path,
    group: int,
) -> None:
    handler, url = slow_server
    handler.pace = 0.05
    week_with_news(sessions, *PEOPLE)
    config = write_config(settings, url, tmp_path / "digest.toml", group)
    kills = 0
    for _ in range(4):  # at start-up, while planning, while sending: wherever the moment falls
        process = start(config)
        time.sleep(random.uniform(0.2, 1.2))
        if process.poll() is not None:
            break
        kill9(process)
        kills += 1
    finish(config)
    received = copies(handler)
    assert set(received) == set(PEOPLE)  # nobody lost
    twice = {p: ids for p, ids in received.items() if len(ids) > 1}
    assert all(len(set(ids)) == 1 for ids in twice.values())  # a repeat is the same message
    assert sum(len(ids) - 1 for ids in twice.values()) <= kills * group  # at most a group per kill
    assert statuses(sessions) == Counter({"sent": len(PEOPLE)})
    with sessions() as s:  # planned once: one digest per person for the period, whatever the kills
        assert len(s.scalars(select(Digest.id)).all()) == len(PEOPLE)
