"""The digest command: help everywhere, JSON for scripts, clear errors, and a full cycle."""

from __future__ import annotations

import json
import os
from contextlib import closing
from pathlib import Path

import click
import pytest

from digest.cli import cli
from tests.conftest import Cli, RecordingHandler, fixture_path


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # lazily loaded commands (worker) included
        command = group.get_command(ctx, name)
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out.extend(all_commands(command, (*prefix, name)))
    return out


@pytest.mark.parametrize("path", all_commands(cli))
def test_every_command_has_help_with_an_example(run_cli: Cli, path: tuple[str, ...]) -> None:
    result = run_cli(*path, "--help")
    assert result.exit_code == 0
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None
        command = found
    assert command.help and command.help.strip()
    if not isinstance(command, click.Group):
        assert "Example:" in result.output


def seed(run_cli: Cli) -> None:
    result = run_cli(
        "ingest", fixture_path("listing-water.txt"), fixture_path("listing-goal6.txt"), now="2026-11-10T10:00:00Z"
    )
    assert result.exit_code == 0, result.output


def test_ingest_reports_and_lists(run_cli: Cli) -> None:
    result = run_cli("ingest", fixture_path("listing-water.txt"), "--json", now="2026-11-10T10:00:00Z")
    assert result.exit_code == 0
    (report,) = json.loads(result.stdout)
    assert (report["new"], report["themes"]) == (5, ["Water and Sanitation"])
    assert {p["reason"].split(";")[0] for p in report["problems"]} >= {"no title", "title slot holds running text"}
    run_cli("ingest", fixture_path("listing-goal6.txt"), now="2026-11-10T10:00:00Z")
    practices = json.loads(run_cli("practices", "--json").stdout)
    assert len(practices) == 7
    kiosk = next(p for p in practices if p["title"].startswith("Community Water Kiosks"))
    assert set(kiosk) >= {"id", "title", "summary", "url", "submitted_by", "themes", "added"}
    assert [t["slug"] for t in kiosk["themes"]] == ["water-and-sanitation", "goal-6-clean-water-and-sanitation"]
    assert kiosk["added"] == "2026-11-10T10:00:00+00:00"
    only = json.loads(run_cli("practices", "--theme", "goal-6-clean-water-and-sanitation", "--json").stdout)
    assert len(only) == 3
    themes = json.loads(run_cli("themes", "--json").stdout)
    assert {(t["slug"], t["practices"]) for t in themes} == {
        ("water-and-sanitation", 5),
        ("goal-6-clean-water-and-sanitation", 3),
    }


def test_ingest_exits_non_zero_when_a_source_failed_but_stores_the_rest(run_cli: Cli) -> None:
    result = run_cli("ingest", fixture_path("undecodable.txt"), fixture_path("listing-water.txt"))
    assert result.exit_code == 1
    assert "undecodable.txt: FAILED" in result.stderr and "hint: convert the file to UTF-8" in result.stderr
    assert "5 new" in result.stdout


def test_subscribe_list_unsubscribe(run_cli: Cli, tmp_path: Path) -> None:
    seed(run_cli)
    assert run_cli("subscribe", "ada@example.org", "--theme", "water-and-sanitation", "--confirmed").exit_code == 0
    bad = run_cli("subscribe", "ada@", "--theme", "water-and-sanitation")
    assert bad.exit_code == 1 and "error: 'ada@' is not a valid email address" in bad.stderr
    csv = tmp_path / "p.csv"
    csv.write_text("email,themes\nbob@example.org,goal-6-clean-water-and-sanitation\nnope,water-and-sanitation\n")
    imported = run_cli("subscribers", "import", str(csv))
    assert "1 created" in imported.stdout and "line 3" in imported.stderr
    rows = json.loads(run_cli("subscribers", "list", "--json").stdout)
    assert [(r["email"], r["status"], r["themes"]) for r in rows] == [
        ("ada@example.org", "confirmed", ["water-and-sanitation"]),
        ("bob@example.org", "pending", ["goal-6-clean-water-and-sanitation"]),
    ]
    assert run_cli("unsubscribe", "ada@example.org").exit_code == 0
    assert json.loads(run_cli("subscribers", "list", "--json").stdout)[0]["status"] == "unsubscribed"
    missing = run_cli("unsubscribe", "zed@example.org")
    assert missing.exit_code == 1 and "no subscriber" in missing.stderr


def test_preview_prints_without_sending_or_recording(run_cli: Cli, smtp_server: tuple[RecordingHandler, str]) -> None:
    handler, url = smtp_server
    run_cli("ingest", fixture_path("listing-water-week2.txt"), now="2026-11-09T10:00:00Z")
    run_cli(
        "subscribe", "ada@example.org", "--theme", "water-and-sanitation", "--confirmed", now="2026-11-10T10:00:00Z"
    )
    run_cli("ingest", fixture_path("listing-water.txt"), now="2026-11-11T10:00:00Z")
    text = run_cli("preview", "ada@example.org", now="2026-11-16T09:00:00Z")
    assert "Clean Taps Now" in text.stdout and "Greywater" not in text.stdout
    html = run_cli("preview", "ada@example.org", "--html", now="2026-11-16T09:00:00Z")
    assert html.stdout.startswith("<!DOCTYPE html>")
    eml = run_cli("preview", "ada@example.org", "--eml", now="2026-11-16T09:00:00Z")
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in eml.stdout
    sent = run_cli("send", "--json", now="2026-11-16T09:00:00Z", DIGEST_SMTP_URL=url)
    assert json.loads(sent.stdout)["sent"] == 1  # preview planned nothing, so the real send still had it
    assert len(handler.received) == 1
    after = run_cli("preview", "ada@example.org", now="2026-11-16T10:00:00Z")
    assert "nothing new" in after.stderr


def test_bad_digest_now_names_the_variable(run_cli: Cli) -> None:
    result = run_cli("themes", now="next tuesday")
    assert result.exit_code == 1 and "DIGEST_NOW" in result.stderr


def test_bad_environment_value_names_the_key(run_cli: Cli) -> None:
    result = run_cli("themes", DIGEST_SCHEDULE_HOUR="noon")
    assert result.exit_code == 1 and "DIGEST_SCHEDULE_HOUR" in result.stderr


def test_run_once_full_cycle(run_cli: Cli, tmp_path: Path) -> None:
    config = run_cli.config
    config.write_text(
        config.read_text()
        + f"""
[[sources]]
path = "{fixture_path("listing-water.txt")}"
[[sources]]
path = "{fixture_path("listing-goal6.txt")}"
[[sources]]
path = "{fixture_path("missing.txt")}"
[[subscribers]]
email = "demo@example.org"
themes = ["Water and Sanitation"]
"""
    )
    result = run_cli("run", "--once", now="2026-11-16T09:00:00Z")
    assert result.exit_code == 1  # one configured source is missing ...
    assert "missing.txt: FAILED" in result.stderr
    assert "1 planned" in result.stdout and "1 sent" in result.stdout  # ... and the rest of the run went on
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 1
    assert {p.name for p in (tmp_path / "feeds").iterdir()} == {
        "all.atom",
        "water-and-sanitation.atom",
        "goal-6-clean-water-and-sanitation.atom",
        "all.json",
        "water-and-sanitation.json",
        "goal-6-clean-water-and-sanitation.json",
    }
    again = run_cli("run", "--once", "--json", now="2026-11-16T10:00:00Z")
    report = json.loads(again.stdout)
    assert report["send"]["sent"] == 0 and not any(f["changed"] for f in report["feeds"])


def test_the_group_knows_every_command_by_the_module_that_defines_it() -> None:
    """Commands are imported when invoked (digest.cli.app.COMMANDS): a command left out of the list would not exist
    for the CLI, one listed under the wrong module would not be found."""
    import importlib
    import pkgutil

    import digest.cli
    from digest.cli.app import COMMANDS

    for module in pkgutil.iter_modules(digest.cli.__path__):
        importlib.import_module(f"digest.cli.{module.name}")
    defined = {name: command.callback.__module__ for name, command in cli.commands.items() if command.callback}
    assert defined == COMMANDS | {"db": "digest.cli.app"}


def test_a_command_imports_its_own_module_and_not_the_others() -> None:
    """`digest send` starts without the web app, the worker's scheduler or the other commands' modules."""
    import subprocess
    import sys

    script = (
        "import sys\nfrom digest.cli import main\nsys.argv = ['digest', 'send', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('digest.cli.', 'flask', 'apscheduler')))))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    imported = set(done.stdout.split())
    assert "digest.cli.mail" in imported
    others = {
        "digest.cli.ops",
        "digest.cli.people",
        "digest.cli.web",
        "digest.cli.worker",
        "digest.cli.readers",
        "digest.cli.cycle",
        "digest.cli.sources",
        "flask",
    }
    assert not imported & others and not any(m.startswith("apscheduler.schedulers") for m in imported)


def test_a_copy_of_the_sqlite_file_taken_after_a_command_holds_what_it_wrote(run_cli: Cli, tmp_path: Path) -> None:
    """A command run as a process closes its connections as it ends (SQLite then moves its write-ahead log into the
    file): the file copied alone, as a backup taken between commands would be, holds every practice ingested."""
    import shutil
    import sqlite3
    import subprocess
    import sys

    database = tmp_path / "var" / "digest.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {"DIGEST_CONFIG": str(run_cli.config)}
    command = [sys.executable, "-m", "digest", "ingest", str(fixture_path("listing-water.txt"))]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=120)
    copy = tmp_path / "copy.db"
    shutil.copyfile(database, copy)  # the file alone: not its -wal beside it
    with closing(sqlite3.connect(copy)) as conn:
        copied = conn.execute("SELECT count(*) FROM practices").fetchone()[0]
    with closing(sqlite3.connect(database)) as conn:
        stored = conn.execute("SELECT count(*) FROM practices").fetchone()[0]
    assert stored > 0 and copied == stored
