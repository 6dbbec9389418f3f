"""Feeds over HTTP against the same server's /healthz, measured in one run with ApacheBench (Debian's apache2-utils).

One `digest serve` (waitress, its default 8 threads) on a SQLite store holding a theme of 2,000 practices; `ab -c 8`
asks for /healthz (one `SELECT 1`: the floor of a request that reads the store), then the theme's feed with a
matching If-None-Match (304), the feed itself (200, from the process's cache after the first), the feed gzipped,
an archive (RFC 5005) and the home page. Prints requests per second and each one's ratio to /healthz; asserts
nothing (targets: 304 >= 0.8x, feed 200 >= 0.6x, home >= 0.5x).

    .venv/bin/python benchmarks/bench_feed_http.py [PRACTICES] [REQUESTS]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ab(url: str, requests: int, *headers: str) -> float:
    """Requests per second ab measured (-c 8, keep-alive), after a warm-up; every answer must be the expected one."""

    def command(count: int) -> list[str]:
        return ["ab", "-q", "-k", "-c", "8", "-n", str(count), *(f for h in headers for f in ("-H", h)), url]

    subprocess.run(command(min(requests, 200)), capture_output=True, check=True)  # warm-up
    done = subprocess.run(command(requests), capture_output=True, text=True, check=True)
    failed = re.search(r"Failed requests:\s+(\d+)", done.stdout)
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", done.stdout)
    assert failed and failed.group(1) == "0", done.stdout
    if non_2xx and "If-None-Match" not in " ".join(headers):
        raise AssertionError(done.stdout)
    found = re.search(r"Requests per second:\s+([\d.]+)", done.stdout)
    assert found, done.stdout
    return float(found.group(1))


@contextmanager
def serving(env: dict[str, str], port: int) -> Iterator[str]:
    """`digest serve` on ``port`` with ``env``'s config, once it answers /healthz; its base URL. Stopped after."""
    server = subprocess.Popen(
        [sys.executable, "-m", "digest", "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def report(figures: list[tuple[str, float]]) -> None:
    """Each request's rate and its ratio to the first (the /healthz reference)."""
    reference = figures[0][1]
    print(f"{'request':28} {'req/s':>9} {'x /healthz':>11}")
    for name, rate in figures:
        print(f"{name:28} {rate:9.0f} {rate / reference:11.2f}")


def main() -> None:
    practices = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    if shutil.which("ab") is None:
        sys.exit("ab is not installed: make bench-packages (apt-get install apache2-utils)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        items = [
            {
                "id": f"p-{n}",
                "title": f"Welcome programme number {n}",
                "summary": f"Practice {n} helps newcomers find work, housing and schools in their first month.",
                "url": f"https://practices.example.org/practice/welcome-{n}",
                "themes": ["Connectivity and Migration"],
            }
            for n in range(practices)
        ]
        export = folder / "export.json"
        export.write_text(json.dumps({"practices": items}), encoding="utf-8")
        port = free_port()
        config = folder / "digest.toml"
        config.write_text(
            f'database_url = "sqlite:///{folder / "digest.db"}"\nbase_url = "http://127.0.0.1:{port}"\n'
            f'environment = "development"\nfeeds_dir = "{folder / "feeds"}"\noutbox_dir = "{folder / "outbox"}"\n',
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {"DIGEST_CONFIG": str(config)}
        digest = [sys.executable, "-m", "digest"]
        subprocess.run([*digest, "ingest", str(export)], env=env, check=True, capture_output=True)
        with serving(env, port) as base:
            feed = base + "/feeds/connectivity-and-migration.atom"
            first = httpx.get(feed)
            etag = first.headers["ETag"]
            archive = re.search(r'href="([^"]+)" rel="prev-archive"', first.text)
            assert archive, "no prev-archive link"
            entries = first.text.count("<entry>")
            print(f"theme of {practices} practices; feed {len(first.content):,} bytes, {entries} entries")
            cases = [
                ("/healthz (SELECT 1)", base + "/healthz", ()),
                ("feed 304 (If-None-Match)", feed, (f"If-None-Match: {etag}",)),
                ("feed 200", feed, ()),
                ("feed 200 gzip", feed, ("Accept-Encoding: gzip",)),
                ("archive 200", archive.group(1), ()),
                ("home page 200", base + "/", ()),
            ]
            figures = [(name, ab(url, requests, *headers)) for name, url, headers in cases]
    report(figures)


if __name__ == "__main__":
    main()
