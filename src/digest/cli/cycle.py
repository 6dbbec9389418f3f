"""`digest run`: one full cycle (ingest the configured sources, ensure the configured subscribers, send what is due,
rebuild the feeds); `digest worker` runs cycles on a schedule."""

from __future__ import annotations

import sys

import click

from digest import clock
from digest.cli.app import App, cli, emit, json_option, pass_app
from digest.cli.mail import print_feed_errors, print_send
from digest.cli.sources import ingest_reports, print_ingest
from digest.errors import DigestError
from digest.mail.send.runs import plan_and_send
from digest.mail.send.transport import transport_for
from digest.store import db
from digest.subscriptions.subscribers import ensure_subscriber, membership_cursor


def seed_subscribers(app: App, after: int) -> bool:
    """The config's [[subscribers]], each in its own transaction: one whose themes do not exist is named (file, table,
    the theme it nearly is) and left out, never created as a theme. False when any was left out."""
    ok = True
    for seed in app.settings.subscribers:
        try:
            with db.transaction(app.sessions) as session:
                ensure_subscriber(session, seed.email, seed.themes, clock.now(), after)
        except DigestError as e:
            ok = False
            click.secho(f"error: {seed.where}: {seed.email}: {e}", fg="red", err=True)
            if e.hint:
                click.echo(f"hint: {e.hint}", err=True)
    return ok


@cli.command()
@click.option("--once", is_flag=True, default=True, help="One full cycle, then exit (the default; the worker repeats).")
@json_option
@pass_app
def run(app: App, once: bool, as_json: bool) -> None:
    """One full cycle: ingest the configured sources, ensure the configured subscribers, send what is due, rebuild
    the feeds. To run cycles on a schedule, use `digest worker`.

    Example: digest run --once
    """
    settings = app.settings
    now = clock.now()
    with app.sessions() as session:
        before = membership_cursor(session, now, 0)
    reports = ingest_reports(app, [s for s in settings.sources if s.enabled], skip_gone=True)
    # After the ingest, which makes the themes they name; from before it, so its practices are new to them.
    seeded = seed_subscribers(app, before)
    transport = transport_for(settings)
    send_report = plan_and_send(app.sessions, settings, transport)
    with app.sessions() as session:
        from digest.feeds.files import build_feeds

        feed_results = build_feeds(session, settings)
    if as_json:
        emit(
            {
                "ingest": [r.as_dict() for r in reports],
                "send": send_report.as_dict(),
                "feeds": [r.__dict__ for r in feed_results],
            }
        )
    else:
        print_ingest(reports, False)
        print_send(send_report, transport.describe(), False)
        click.echo(
            f"{len(feed_results)} feeds in {settings.feeds_dir}/ ({sum(r.changed for r in feed_results)} changed)"
        )
        print_feed_errors(feed_results)
    if any(not r.ok for r in reports) or not seeded or not send_report.ok or any(r.error for r in feed_results):
        sys.exit(1)
