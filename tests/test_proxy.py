"""`digest serve` behind a real reverse proxy (Debian's nginx, started by the test as the README recommends it):
with trusted_proxies = 1 each client is itself (its own rate-limit bucket, whatever it claims in X-Forwarded-For),
and the proxy's X-Forwarded-Proto makes the request https."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import RecordingHandler, fixture_path, free_port
from tests.webserver import START_DEADLINE, environment, ingest, serving, write_config

WATER = "water-and-sanitation"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = [
    pytest.mark.probe,
    pytest.mark.skipif(
        not Path(NGINX).exists(), reason="Debian's nginx is not installed here (make system-packages installs it)"
    ),
]


@contextmanager
def nginx(folder: Path, port: int, upstream: str) -> Iterator[str]:
    """nginx on 127.0.0.1:port in front of ``upstream``, configured as a TLS-terminating proxy would be (the
    proxy appends the client's address to X-Forwarded-For and says https)."""
    folder.mkdir()
    conf = folder / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
""",
        encoding="utf-8",
    )
    log = (folder / "stderr.log").open("wb")
    process = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(conf)], stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            assert process.poll() is None, f"nginx exited: {(folder / 'stderr.log').read_text()}"
            try:
                if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def subscribe(client: httpx.Client, email: str, forwarded: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    page = client.get("/", headers=headers)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    return client.post(
        "/subscribe", data={"csrf_token": token.group(1), "email": email, "theme": WATER}, headers=headers
    )


def from_address(url: str, address: str) -> httpx.Client:
    """A client whose connections come from this loopback address (127.0.0.0/8 is all loopback)."""
    return httpx.Client(base_url=url, timeout=30, transport=httpx.HTTPTransport(local_address=address))


def test_behind_a_reverse_proxy_each_client_is_itself(
    tmp_path: Path, smtp_server: tuple[RecordingHandler, str]
) -> None:
    handler, smtp_url = smtp_server
    app_port, proxy_port = free_port(), free_port()
    config = write_config(
        tmp_path / "digest.toml",
        f"sqlite:///{tmp_path / 'digest.db'}",
        f"http://127.0.0.1:{proxy_port}",
        smtp_url,
        trusted_proxies=1,
        subscribe_per_client_per_hour=2,
    )
    ingest(config, fixture_path("listing-water.txt"))
    with serving(config, app_port) as app, nginx(tmp_path / "nginx", proxy_port, app) as proxy:
        # 25 people, each from an address of their own: every one is answered and mailed (with one bucket for
        # the whole site, the third would already be refused).
        answers = []
        for n in range(25):
            with from_address(proxy, f"127.0.0.{n + 2}") as client:
                answers.append(subscribe(client, f"reader{n}@example.org").status_code)
        assert answers == [303] * 25
        assert sorted(r.recipients[0] for r in handler.received) == sorted(f"reader{n}@example.org" for n in range(25))

        # The proxy said https: the app answers as a site served over https.
        with from_address(proxy, "127.0.0.99") as client:
            assert client.get("/").headers.get("Strict-Transport-Security") == "max-age=31536000"
            # A client cannot leave its bucket by making up X-Forwarded-For: the proxy's own hop is the one believed.
            made_up = [
                subscribe(client, f"liar{n}@example.org", forwarded=f"203.0.113.{n}").status_code for n in range(3)
            ]
        assert made_up == [303, 303, 429]


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    config = write_config(tmp_path / "digest.toml", f"sqlite:///{tmp_path / 'digest.db'}", "https://x.test", "")
    with serving(config, free_port()) as url:
        port = url.rsplit(":", 1)[1]
        taken = subprocess.run(
            [sys.executable, "-m", "digest", "serve", "--port", port],
            env=environment(config),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert taken.returncode == 1
    assert taken.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use",
        "hint: stop what listens there, or give another --port",
    ]
