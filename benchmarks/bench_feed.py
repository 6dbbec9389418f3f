"""Ingest a 5,000-item Drupal-style RSS feed over HTTP on loopback, against references measured in the same run.

References: parsing the same bytes with ElementTree (the floor for reading XML at all) and with feedparser
alone (the library's own cost). Then three ingests through digest: the first (all new), the second (all
unchanged, the server sends no validators), and the third (the server answers 304).

Prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_feed.py [ITEMS]
"""

from __future__ import annotations

import io
import sys
import tempfile
import threading
import time
import tracemalloc
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import feedparser

from digest import clock
from digest.config import SourceConfig
from digest.ingest import HttpPolicy, ingest_sources
from digest.store import db


def make_feed(items: int) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<channel><title>Connectivity and Migration</title><link>https://practices.example.org/t/7</link>"
        "<description></description>"
    ]
    for n in range(items):
        description = (
            f"<p>Practice {n} helps newcomers find work, housing and schools in their first month; "
            f"it runs with the city and {n % 40} partner organisations.</p>"
            "<ul><li>a welcome desk;</li><li>language classes;</li><li>mentors&nbsp;from the diaspora.</li></ul>"
        )
        parts.append(
            f"<item><title>Welcome programme number {n}</title>"
            f"<link>https://practices.example.org/practice/welcome-{n}</link>"
            f"<description>{escape(description)}</description>"
            f"<pubDate>Tue, 03 Nov 2026 09:15:00 +0000</pubDate><dc:creator>Submitter {n % 97}</dc:creator>"
            f'<guid isPermaLink="false">{10000 + n} at https://practices.example.org</guid></item>'
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def serve(body: bytes, etag: str | None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if etag and self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            if etag:
                self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def timed(label: str, action: object, reference: float | None = None) -> float:
    assert callable(action)
    t0 = time.perf_counter()
    action()
    elapsed = time.perf_counter() - t0
    ratio = f"  ({elapsed / reference:.1f}x ElementTree)" if reference else ""
    print(f"{label:<44} {elapsed:7.3f} s{ratio}")
    return elapsed


def main() -> None:
    items = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    clock.set_fixed_now(datetime(2026, 11, 16, 9, tzinfo=UTC))
    body = make_feed(items)
    print(f"feed: {items} items, {len(body) / 1e6:.1f} MB")
    reference = timed("reference: ElementTree parse", lambda: ET.fromstring(body))
    timed("reference: feedparser alone", lambda: feedparser.parse(io.BytesIO(body), sanitize_html=False), reference)
    policy = HttpPolicy(timeout=30, retries=1, max_bytes=100_000_000)
    with tempfile.TemporaryDirectory() as d:
        engine = db.make_engine(f"sqlite:///{d}/bench.db")
        db.upgrade(engine)
        sessions = db.session_factory(engine)
        plain, cached = serve(body, None), serve(body, '"v1"')
        try:
            plain_url = f"http://127.0.0.1:{plain.server_address[1]}/feed"
            cached_url = f"http://127.0.0.1:{cached.server_address[1]}/feed"
            reports: list[object] = []

            def run(url: str) -> None:
                reports[:] = ingest_sources(sessions, [SourceConfig(url)], clock.now(), policy)

            first = timed("digest ingest, first time (all new)", lambda: run(plain_url), reference)
            print(f"  {reports[0].new} new, {items / first:,.0f} items/s")  # type: ignore[attr-defined]
            timed("digest ingest, again (all unchanged)", lambda: run(plain_url), reference)
            timed("digest ingest, with ETag (first fetch)", lambda: run(cached_url), reference)
            timed("digest ingest, with ETag (304)", lambda: run(cached_url), reference)
            tracemalloc.start()
            run(plain_url)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(
                f"peak Python memory of an unchanged ingest: {peak / 2**20:.1f} MiB ({peak / len(body):.1f}x the feed)"
            )
        finally:
            plain.shutdown()
            cached.shutdown()
        engine.dispose()


if __name__ == "__main__":
    main()
