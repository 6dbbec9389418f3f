"""`digest serve` as real processes: limits that hold across two of them, and the default secret refused."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import RecordingHandler, fixture_path, free_port
from tests.webserver import environment, ingest, serving, write_config

WATER = "water-and-sanitation"


def subscribe(client: httpx.Client, email: str) -> httpx.Response:
    page = client.get("/")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    return client.post("/subscribe", data={"csrf_token": token.group(1), "email": email, "theme": WATER})


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_rate_limits_hold_across_two_server_processes(
    store: str, tmp_path: Path, smtp_server: tuple[RecordingHandler, str], request: pytest.FixtureRequest
) -> None:
    handler, smtp_url = smtp_server
    database = f"sqlite:///{tmp_path / 'digest.db'}" if store == "sqlite" else request.getfixturevalue("pg_url")
    ports = free_port(), free_port()
    config = write_config(
        tmp_path / "digest.toml",
        database,
        f"http://127.0.0.1:{ports[0]}",
        smtp_url,
        subscribe_per_address_per_hour=3,
        subscribe_per_client_per_hour=5,
    )
    ingest(config, fixture_path("listing-water.txt"))
    with serving(config, ports[0]) as one, serving(config, ports[1]) as two:
        clients = [httpx.Client(base_url=url, timeout=30) for url in (one, two)]
        # The same address, alternately through each server: three mails, then the same answer and no mail.
        answers = [subscribe(clients[n % 2], "ada@example.org") for n in range(4)]
        assert [a.status_code for a in answers] == [303] * 4
        assert len(handler.to("ada@example.org")) == 3
        # The same client (127.0.0.1) has sent 4; one more is allowed across both servers, then 429.
        assert subscribe(clients[1], "bob@example.org").status_code == 303
        refused = subscribe(clients[0], "carol@example.org")
        assert refused.status_code == 429
        assert handler.to("carol@example.org") == []
        for client in clients:
            client.close()


def test_serve_and_send_refuse_the_default_secret(tmp_path: Path, smtp_server: tuple[RecordingHandler, str]) -> None:
    config = write_config(tmp_path / "digest.toml", f"sqlite:///{tmp_path / 'digest.db'}", "https://x.test", "")
    text = config.read_text().replace('secret_key = "test-secret-0123456789abcdef"\n', "")
    config.write_text(text)
    env = environment(config)
    serve = subprocess.run(
        [sys.executable, "-m", "digest", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert serve.returncode == 1
    assert "starting the web app refused: secret_key is the development default" in serve.stderr
    assert "DIGEST_SECRET_KEY" in serve.stderr

    send = subprocess.run(
        [sys.executable, "-m", "digest", "send"],
        env=env | {"DIGEST_SMTP_URL": smtp_server[1]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert send.returncode == 1 and "sending over SMTP" in send.stderr and "refused" in send.stderr
    # The Maildir default (make run) sends with it.
    outbox = subprocess.run(
        [sys.executable, "-m", "digest", "send"],
        env=env | {"DIGEST_OUTBOX_DIR": str(tmp_path / "outbox")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert outbox.returncode == 0, outbox.stderr
