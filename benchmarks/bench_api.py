"""The REST API over HTTP against the same server's /healthz, in one run with ApacheBench (Debian's apache2-utils).

One `digest serve` (waitress, 8 threads) on a SQLite store of 100,000 subscribers; `ab -k -c 8` asks for /healthz
(one `SELECT 1`), then `GET /api/v1/subscribers` (a page of 100, with a token: the token checked and its rate
counted in the store, the page read by keyset on the address index), the same page again with its ETag (304), and
the page deep in the list its cursor leads to. Prints requests per second and each one's ratio to /healthz; asserts
nothing.

    .venv/bin/python benchmarks/bench_api.py [SUBSCRIBERS] [REQUESTS]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_feed_http import ab, free_port, report, serving  # noqa: E402

from digest.access import tokens  # noqa: E402
from digest.store import db
from digest.store.models import Subscriber


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    if shutil.which("ab") is None:
        sys.exit("ab is not installed: make bench-packages (apt-get install apache2-utils)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder / 'digest.db'}"
        engine = db.make_engine(url)
        db.upgrade(engine)
        now = datetime(2026, 11, 10, tzinfo=UTC)
        sessions = db.session_factory(engine)
        with sessions() as s, s.begin():
            for start in range(0, count, 10_000):
                rows = [
                    {"email": f"reader{n:06}@example.org", "status": "confirmed", "created_at": now}
                    for n in range(start, min(count, start + 10_000))
                ]
                s.execute(insert(Subscriber), rows)
            token = tokens.create(s, "bench", False, now)
        engine.dispose()
        port = free_port()
        config = folder / "digest.toml"
        config.write_text(
            f'database_url = "{url}"\nbase_url = "http://127.0.0.1:{port}"\nenvironment = "development"\n'
            f'feeds_dir = "{folder / "feeds"}"\noutbox_dir = "{folder / "outbox"}"\napi_per_minute = 1000000\n',
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {"DIGEST_CONFIG": str(config)}
        with serving(env, port) as base:
            bearer = {"Authorization": f"Bearer {token}"}
            page = base + "/api/v1/subscribers?limit=100"
            first = httpx.get(page, headers=bearer)
            assert first.status_code == 200 and len(first.json()["items"]) == 100, first.text[:300]
            cursor = first.json()["next_cursor"]
            deep = min(200, count // 100 - 2)
            for _ in range(deep):  # a page deep in the list
                cursor = httpx.get(page + f"&cursor={cursor}", headers=bearer).json()["next_cursor"]
            print(f"{count:,} subscribers; a page of 100 is {len(first.content):,} bytes")
            auth = f"Authorization: Bearer {token}"
            cases = [
                ("/healthz (SELECT 1)", base + "/healthz", ()),
                ("subscribers, page 1", page, (auth,)),
                ("subscribers, page 1, 304", page, (auth, f"If-None-Match: {first.headers['ETag']}")),
                (f"subscribers, page {deep + 2}", page + f"&cursor={cursor}", (auth,)),
            ]
            figures = [(name, ab(address, requests, *headers)) for name, address, headers in cases]
    report(figures)


if __name__ == "__main__":
    main()
