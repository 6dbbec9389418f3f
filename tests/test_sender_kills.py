"""`digest send --processes N` under kill -9: a dead sender's claims are taken over within the run, and senders
whose parent is killed finish the message in flight, hand the rest back and exit within seconds."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.mail.send.holders import process_alive
from digest.store.models import Digest
from tests.conftest import smtp_controller
from tests.smtpfaults import FaultyHandler
from tests.test_scale import DEADLINE, config, populate, repeats

HOST = socket.gethostname()
pytestmark = pytest.mark.probe


@pytest.fixture
def slow_server() -> Iterator[tuple[FaultyHandler, str]]:
    """A real SMTP server that takes 20 ms a message: a run lasts long enough for a kill to land in it."""
    handler = FaultyHandler(pace=0.02)
    with smtp_controller(handler) as url:
        yield handler, url


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``, oldest first (by start time)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes().rpartition(b")")[2].split()
        except OSError:
            continue
        if int(stat[1]) == pid and stat[0] != b"Z":
            found.append((int(stat[19]), int(entry)))  # field 22: start time
    return [child for _, child in sorted(found)]


def wait_until(condition: Callable[[], bool], what: str, limit: float = DEADLINE) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def holds_claims(sessions: object, pid: int) -> bool:
    with sessions() as s:  # type: ignore[operator]
        holders = set(s.scalars(select(Digest.claimed_by).where(Digest.status == "sending")))
    return f"{HOST}:{pid}" in holders


def test_a_killed_sender_is_reaped_and_its_claims_taken_over_within_the_run(
    pg_url: str, slow_server: tuple[FaultyHandler, str], tmp_path: Path
) -> None:
    handler, url = slow_server
    count, group = 600, 10
    sessions, people = populate(pg_url, count)
    env = config(tmp_path, pg_url, url, sent_per_commit=group)
    command = [sys.executable, "-m", "digest", "send", "--processes", "4"]
    parent = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: len(children(parent.pid)) == 4 or parent.poll() is not None, "four senders")
    third = children(parent.pid)[2]
    wait_until(lambda: holds_claims(sessions, third) or parent.poll() is not None, "the third sender's claims")
    # Late enough that the third sender has sent a good share of the run by the time it dies.
    wait_until(lambda: len(handler.received) >= count // 3 or parent.poll() is not None, "a third of the run")
    wait_until(lambda: holds_claims(sessions, third) or parent.poll() is not None, "the third sender's claims")
    assert parent.poll() is None, "the run ended before the kill"
    os.kill(third, signal.SIGKILL)
    out, err = parent.communicate(timeout=DEADLINE)
    assert parent.returncode == 1 and "sender 3 of 4 failed" in err, err  # named: it did die
    # What the killed sender had sent counts in the run's report (up to its last word, half a second before).
    said = re.search(r"(\d+) sent to", out)
    assert said and count - 40 <= int(said.group(1)) <= count + group, out
    assert not process_alive(third)  # reaped by its parent, not left a zombie
    # Taken over within the run: nothing waits for another run, nothing is lost.
    with sessions() as s:
        assert Counter(s.scalars(select(Digest.status))) == Counter({"sent": count})
    repeated = repeats(handler, people)
    assert len(repeated) <= group and all(len(set(got)) == 1 for got in repeated.values()), repeated


def test_senders_outlive_a_killed_parent_by_seconds_and_hand_their_claims_back(
    tmp_path: Path, slow_server: tuple[FaultyHandler, str]
) -> None:
    handler, url = slow_server
    handler.pace = 0.05  # the rest of the run takes the three senders ten seconds: longer than they may outlive it
    count = 600
    store = f"sqlite:///{tmp_path / 'digest.db'}"
    sessions, people = populate(store, count)
    env = config(tmp_path, store, url)
    command = [sys.executable, "-m", "digest", "send", "--processes", "3"]
    parent = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: len(children(parent.pid)) == 3 or parent.poll() is not None, "three senders")
    senders = children(parent.pid)
    wait_until(lambda: len(handler.received) >= 50 or parent.poll() is not None, "the first messages")
    assert parent.poll() is None, "the run ended before the kill"
    os.kill(parent.pid, signal.SIGKILL)
    parent.communicate(timeout=30)
    killed = time.monotonic()
    wait_until(lambda: not any(process_alive(pid) for pid in senders), "the orphaned senders to exit", limit=60)
    outlived = time.monotonic() - killed
    assert outlived < 5, f"the senders outlived their parent by {outlived:.1f} s"
    with sessions() as s:
        states = Counter(s.scalars(select(Digest.status)))
    assert states["sending"] == 0 and states["sent"] < count, states  # handed back, not held, not all sent
    # The next run sends the rest; each message once (the orphans recorded what the server accepted).
    handler.pace = 0
    done = subprocess.run(
        [sys.executable, "-m", "digest", "send"], env=env, capture_output=True, text=True, timeout=DEADLINE
    )
    assert done.returncode == 0, done.stderr
    with sessions() as s:
        assert Counter(s.scalars(select(Digest.status))) == Counter({"sent": count})
    assert Counter(r.recipients[0] for r in handler.received) == Counter(dict.fromkeys(people, 1))


@pytest.mark.parametrize("processes", [1, 3])
def test_digest_send_stops_cleanly_on_sigterm(
    tmp_path: Path, slow_server: tuple[FaultyHandler, str], processes: int
) -> None:
    """SIGTERM to `digest send` (as systemd or a terminal sends it): the message in flight finished and recorded,
    the rest handed back at once (no claim left to time out), exit within seconds; the next run sends the rest."""
    handler, url = slow_server
    handler.pace = 0.05
    count = 400
    store = f"sqlite:///{tmp_path / 'digest.db'}"
    sessions, people = populate(store, count)
    env = config(tmp_path, store, url)
    command = [sys.executable, "-m", "digest", "send", "--processes", str(processes)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: len(handler.received) >= 40 or process.poll() is not None, "the first messages")
    assert process.poll() is None, "the run ended before the signal"
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    process.communicate(timeout=60)
    assert time.monotonic() - signalled < 30, "digest send took too long to stop"  # seconds, on a busy machine
    with sessions() as s:
        states = Counter(s.scalars(select(Digest.status)))
    assert states["sending"] == 0 and 0 < states["sent"] < count, states
    assert states["sent"] == len(handler.received)  # every accepted message recorded, nothing recorded unsent
    handler.pace = 0
    done = subprocess.run(
        [sys.executable, "-m", "digest", "send"], env=env, capture_output=True, text=True, timeout=DEADLINE
    )
    assert done.returncode == 0, done.stderr
    assert Counter(r.recipients[0] for r in handler.received) == Counter(dict.fromkeys(people, 1))
