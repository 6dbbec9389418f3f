"""A real Prometheus (Debian's) scrapes a real `digest serve` and a real `digest worker` (its metrics_port) with the
metrics token; a `digest send` runs; Prometheus's HTTP API then answers how many digests were sent and how many
wait. The same run's logs (web, worker, send) are searched for every token it issued: none is there."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fixture_path, free_port
from tests.webserver import environment, serving, write_config

TOKEN = "metrics-token-for-prometheus-0123456789"
SECRET = "test-secret-0123456789abcdef"
PEOPLE = [f"reader{n}@example.org" for n in range(5)]


def run(config: Path, *args: str, now: str | None = None) -> subprocess.CompletedProcess[str]:
    env = environment(config) | ({"DIGEST_NOW": now} if now else {})
    done = subprocess.run([sys.executable, "-m", "digest", *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def query(prometheus: str, expression: str) -> float | None:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=10).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def wait_for_value(prometheus: str, expression: str, expected: float, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    seen = None
    while time.monotonic() < deadline:
        seen = query(prometheus, expression)
        if seen == expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"{expression}: {seen}, expected {expected}")


def test_prometheus_scrapes_the_web_app_and_the_worker_and_no_log_holds_a_token(
    tmp_path: Path, smtp_server: Any
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed here (make system-packages installs Debian's prometheus)")
    handler, smtp_url = smtp_server
    web_port, worker_port, prom_port = free_port(), free_port(), free_port()
    config = write_config(
        tmp_path / "digest.toml",
        f"sqlite:///{tmp_path / 'digest.db'}",
        f"http://127.0.0.1:{web_port}",
        smtp_url,
        environment="development",
        metrics_token=TOKEN,
        metrics_port=worker_port,
        poll_minutes=600.0,
        due_minutes=600.0,
        lease_seconds=5.0,
    )
    run(config, "ingest", fixture_path("listing-water.txt"), now="2026-11-09T10:00:00Z")
    for person in PEOPLE:
        run(config, "subscribe", person, "--theme", "Water and Sanitation", "--confirmed", now="2026-11-09T10:00:00Z")
    run(config, "ingest", fixture_path("listing-water-week2.txt"), now="2026-11-10T10:00:00Z")

    (tmp_path / "prometheus.yml").write_text(
        f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: digest-web
    authorization:
      credentials: {TOKEN}
    static_configs:
      - targets: ["127.0.0.1:{web_port}"]
  - job_name: digest-worker
    authorization:
      credentials: {TOKEN}
    static_configs:
      - targets: ["127.0.0.1:{worker_port}"]
""",
        encoding="utf-8",
    )
    prometheus = f"http://127.0.0.1:{prom_port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    with (logs / "prometheus.log").open("wb") as out:
        prom = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    with (logs / "worker.log").open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "digest", "worker"],
            env=environment(config) | {"DIGEST_NOW": "2026-11-16T09:00:00Z"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with serving(config, web_port) as web:
            # Pages under tokens, for the access log.
            key_links = re.findall(
                r"https?://\S+/(?:manage|unsubscribe|digests|confirm)/[^\s>\"]+", _mail_text(handler)
            )
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{prometheus}/-/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            # Both targets up, through the token.
            wait_for_value(prometheus, 'up{job="digest-web"}', 1)
            wait_for_value(prometheus, 'up{job="digest-worker"}', 1)
            sent = run(config, "send", now="2026-11-16T09:00:00Z")
            assert len(handler.received) == len(PEOPLE), sent.stdout
            # Every target reads the same figures from the store.
            for job in ("digest-web", "digest-worker"):
                wait_for_value(prometheus, f'digest_digests_sent_total{{job="{job}"}}', len(PEOPLE))
                wait_for_value(prometheus, f'digest_digests_waiting{{job="{job}"}}', 0)
            assert query(prometheus, 'digest_subscribers{job="digest-web",status="confirmed"}') == len(PEOPLE)
            # The links the run mailed, opened (the access log sees their paths).
            key_links += re.findall(r"https?://\S+/(?:manage|unsubscribe|digests)/[^\s>\"]+", _mail_text(handler))
            assert key_links
            for link in key_links:
                assert link.startswith(web)
                httpx.get(link, timeout=10)
            tokens = {link.rstrip(".").rsplit("/", 1)[1] for link in key_links}
    finally:
        worker.terminate()
        worker.wait(30)
        prom.terminate()
        prom.wait(30)
    ours = [logs / "worker.log", *tmp_path.glob("serve-*.log")]
    written = "\n".join([sent.stdout, sent.stderr, *(p.read_text(errors="replace") for p in ours)])
    assert "web.request" in written and "worker.started" in written
    leaked = [t for t in tokens if t in written]
    assert not leaked, leaked
    assert TOKEN not in written and SECRET not in written


def _mail_text(handler: Any) -> str:
    parts = []
    for received in handler.received:
        body = received.message.get_body(("plain",))
        parts.append(body.get_content() if body is not None else "")
    return "\n".join(parts)
