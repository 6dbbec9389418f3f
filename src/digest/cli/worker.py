"""`digest worker`: the worker's command. The CLI group loads this module by name when the command is invoked
(as it does every command's), so no other command imports the scheduler (or pays for APScheduler's import); the
import contracts hold the rest of the CLI to that."""

from __future__ import annotations

import sys

import click

from digest import logs
from digest.cli.app import App, cli, pass_app
from digest.worker.scheduler import Worker


@cli.command()
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "text"]),
    default="auto",
    help="Log lines as JSON (default when stderr is not a terminal) or text.",
)
@pass_app
def worker(app: App, log_format: str) -> None:
    """Run the background worker: one leader schedules ingest, digests, retries and feeds; others stand by.

    Stops cleanly on SIGTERM or SIGINT: the message in flight is finished and recorded, the lease released.

    Example: digest worker
    """
    logs.configure(None if log_format == "auto" else log_format == "json")
    sys.exit(Worker(app.settings, app.sessions, app.engine).serve())
