"""`digest ingest` with URLs and configured sources, `digest sources`, and the progress bar on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.conftest import Cli, fixture_bytes, fixture_path
from tests.feedserver import FeedServer

FAST = {"DIGEST_HTTP_RETRIES": "2", "DIGEST_HTTP_BACKOFF": "0.01", "DIGEST_HTTP_TIMEOUT": "2"}


def configure(run_cli: Cli, text: str) -> None:
    run_cli.config.write_text(run_cli.config.read_text() + text, encoding="utf-8")


def test_ingest_urls_and_files_exits_1_when_one_fails(run_cli: Cli, feed_server: FeedServer) -> None:
    good = feed_server.serve("/feed", body=fixture_bytes("feed-drupal-water.rss"))
    dead = feed_server.url("/nothing-here")
    result = run_cli("ingest", good, dead, fixture_path("export-practices.csv"), "--json", **FAST)
    assert result.exit_code == 1
    reports = json.loads(result.stdout)
    assert [(r["source"], r["ok"], r["new"]) for r in reports] == [
        (good, True, 3),
        (dead, False, 0),
        (fixture_path("export-practices.csv"), False, 3),  # one row was left out
    ]
    assert reports[1]["error"] == f"{dead}: HTTP 404 Not Found"
    assert reports[2]["rejected"][0]["where"] == "line 6"


def test_configured_sources_theme_and_status(run_cli: Cli, feed_server: FeedServer) -> None:
    water = feed_server.serve("/water", body=fixture_bytes("feed-drupal-water.rss"), etag='"w1"')
    gone = feed_server.serve("/gone", status=410)
    configure(
        run_cli,
        f"""
[[sources]]
url = "{water}"
theme = "Goal 6: Clean water and sanitation"
[[sources]]
url = "{gone}"
[[sources]]
path = "{fixture_path("feed-rdf.rdf")}"
enabled = false
""",
    )
    first = run_cli("ingest", now="2026-11-16T09:00:00Z", **FAST)
    assert first.exit_code == 1 and f"{gone}: FAILED" in first.stderr
    assert "Goal 6: Clean water and sanitation: 3 new" in first.stdout  # the configured theme, not the feed's
    second = run_cli("ingest", now="2026-11-16T10:00:00Z", **FAST)
    assert f"{water}: not modified since the last fetch" in second.stdout
    assert len(feed_server.hits("/gone")) == 1  # gone: not fetched again
    rows = {r["location"]: r for r in json.loads(run_cli("sources", "--json").stdout)}
    assert rows[water]["status"] == "not-modified" and rows[water]["etag"] == '"w1"'
    assert rows[water]["last_fetch_at"] == "2026-11-16T10:00:00+00:00"
    assert rows[water]["theme"] == "Goal 6: Clean water and sanitation" and rows[water]["items"] == 3
    assert rows[gone]["status"] == "gone" and "410" in rows[gone]["last_error"]
    assert rows[fixture_path("feed-rdf.rdf")]["status"] == "never fetched"
    assert rows[fixture_path("feed-rdf.rdf")]["enabled"] is False
    text = run_cli("sources").stdout
    assert f"{gone}: gone at 2026-11-16T10:00:00+00:00" not in text and f"{gone}: gone at" in text


def test_bad_source_format_in_config_names_the_entry(run_cli: Cli) -> None:
    configure(run_cli, '\n[[sources]]\npath = "x.xml"\nformat = "rdf"\n')
    result = run_cli("sources")
    assert result.exit_code == 1 and "sources #1" in result.stderr and "'rdf'" in result.stderr


def big_csv(path: Path, rows: int) -> None:
    lines = ["title,summary,themes"] + [f"Practice {n},Summary {n},Bulk" for n in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run digest with stderr on a pseudo-terminal; return the exit status and what the terminal showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=follower, env=env)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return process.wait(30), shown.decode(errors="replace")


def test_progress_bar_on_a_terminal_only(run_cli: Cli, tmp_path: Path) -> None:
    big_csv(tmp_path / "big.csv", 600)
    env = dict(os.environ, DIGEST_CONFIG=str(run_cli.config))
    command = [sys.executable, "-m", "digest", "ingest", str(tmp_path / "big.csv")]
    status, shown = run_on_terminal(command, env)
    assert status == 0 and f"storing 600 items from {tmp_path / 'big.csv'}" in shown and "100%" in shown
    quiet = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert quiet.returncode == 0 and quiet.stderr == ""  # logs and CI get no bar
    assert "0 new, 0 updated, 600 unchanged" in quiet.stdout
