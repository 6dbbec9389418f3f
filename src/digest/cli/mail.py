"""Commands that plan, send, preview and publish: send, preview, feeds, run."""

from __future__ import annotations

import sys

import click

from digest import clock, db
from digest.cli.app import App, cli, emit, handle_errors, json_option, pass_app
from digest.cli.sources import ingest_reports, print_ingest
from digest.feeds import build_feeds
from digest.plan import preview_content
from digest.schedule import current_period
from digest.send import Addressed, SendReport, digest_message, plan_and_send
from digest.subscribers import ensure_subscriber, get_subscriber
from digest.transport import transport_for


def print_send(report: SendReport, where: str, as_json: bool) -> None:
    if as_json:
        emit(report.as_dict())
        return
    click.echo(
        f"period {report.period}: {report.planned} planned, {report.empty} with nothing new, "
        f"{report.sent} sent to {where}, {report.failed} failed, {report.cancelled} cancelled"
    )
    for error in report.errors:
        click.secho(f"  {error}", fg="yellow", err=True)


@cli.command()
@json_option
@pass_app
@handle_errors
def send(app: App, as_json: bool) -> None:
    """Plan this period's digests (once) and send everything pending.

    Example: DIGEST_SMTP_URL=smtp://localhost:1025 digest send
    """
    transport = transport_for(app.settings)
    report = plan_and_send(app.sessions, app.settings, transport)
    print_send(report, transport.describe(), as_json)


@cli.command()
@click.argument("email")
@click.option("--html", "part", flag_value="html", help="Print the HTML body.")
@click.option("--text", "part", flag_value="text", default=True, help="Print the text body (default).")
@click.option("--eml", "part", flag_value="eml", help="Print the whole message.")
@pass_app
@handle_errors
def preview(app: App, email: str, part: str) -> None:
    """Print a subscriber's next digest without sending or recording anything.

    Example: digest preview ada@example.org --html > next.html
    """
    now = clock.now()
    with app.sessions() as session:
        subscriber = get_subscriber(session, email)
        content = preview_content(session, subscriber, current_period(app.settings, now).key)
    if content is None:
        click.echo(f"{subscriber.email}: nothing new since their last digest", err=True)
        return
    to = Addressed(subscriber.id, subscriber.email, "<preview@digest.invalid>")
    rendered, message = digest_message(app.settings, content, to, now)
    if part == "eml":
        sys.stdout.buffer.write(message)
    else:
        click.echo(rendered.html if part == "html" else rendered.text, nl=False)


@cli.command()
@json_option
@pass_app
@handle_errors
def feeds(app: App, as_json: bool) -> None:
    """Write the Atom feed of every theme and of all practices into the feeds folder.

    Example: DIGEST_FEEDS_DIR=/srv/www/feeds digest feeds
    """
    with app.sessions() as session:
        results = build_feeds(session, app.settings)
    if as_json:
        emit([r.__dict__ for r in results])
    else:
        changed = sum(r.changed for r in results)
        click.echo(f"{len(results)} feeds in {app.settings.feeds_dir} ({changed} changed)")


@cli.command()
@click.option("--once", is_flag=True, required=True, help="Run one full cycle and exit.")
@json_option
@pass_app
@handle_errors
def run(app: App, once: bool, as_json: bool) -> None:
    """One full cycle: ingest the configured sources, send what is due, rebuild the feeds.

    Example: digest run --once
    """
    settings = app.settings
    now = clock.now()
    with db.transaction(app.sessions) as session:
        for seed in settings.subscribers:
            ensure_subscriber(session, seed.email, seed.themes, now)
    reports = ingest_reports(app, [s for s in settings.sources if s.enabled], skip_gone=True)
    transport = transport_for(settings)
    send_report = plan_and_send(app.sessions, settings, transport)
    with app.sessions() as session:
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
    if any(not r.ok for r in reports):
        sys.exit(1)
