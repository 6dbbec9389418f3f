"""Commands that plan, send and publish: send, feeds (and what `digest run` prints of them). A reader's mail and what
comes back are digest.cli.readers; one full cycle, digest.cli.cycle: `digest send` starts without what they import."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from digest.cli.app import App, cli, emit, json_option, pass_app
from digest.mail.send.delivery import SendReport
from digest.mail.send.runs import plan_and_send
from digest.mail.send.senders import send_in_processes, stop_on_signals, stopping
from digest.mail.send.transport import transport_for

if TYPE_CHECKING:
    from digest.feeds.files import FeedResult


def print_send(report: SendReport, where: str, as_json: bool) -> None:
    if as_json:
        emit(report.as_dict())
        return
    click.echo(
        f"{report.due} due: {report.planned} planned, {report.empty} with nothing new; "
        f"{report.sent} sent to {where}, {report.deferred} deferred, {report.failed} failed, "
        f"{report.bounced} bounced ({report.suppressed} suppressed), {report.cancelled} cancelled"
    )
    if report.reconfirm_asked or report.stopped_receiving:
        click.echo(
            f"  soft bounces again and again: {report.reconfirm_asked} asked 'do you still want these?', "
            f"{report.stopped_receiving} left unanswered (stopped receiving)"
        )
    for error in report.errors:
        click.secho(f"  {error}", fg="yellow", err=True)
    if report.sent and where.startswith("outbox "):
        click.echo(f"  each message is a file in {where.removeprefix('outbox ')}/new/: open one with any mail client")
    if report.rate_limited:
        click.secho("  the hourly rate limit is reached (rate_per_hour): the rest waits for the next run", err=True)
    if report.error:
        click.secho(f"error: {report.error}", fg="red", err=True)
        if report.hint:
            click.echo(f"hint: {report.hint}", err=True)


def print_feed_errors(results: list[FeedResult]) -> None:
    for result in results:
        if result.error:
            click.secho(f"error: {result.error}", fg="red", err=True)


@cli.command()
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Sender processes side by side, each with its own SMTP connection.",
)
@json_option
@pass_app
def send(app: App, processes: int, as_json: bool) -> None:
    """Plan a digest for every subscriber who is due (once per slot) and send every digest that is due.

    Due: planned, deferred and due again, or left half-sent by a process that died. Exits 1 when the SMTP
    server cannot be reached (everything not sent stays pending). Any number of `digest send` may run at
    once, here or on other hosts: they share the work.

    Example: DIGEST_SMTP_URL=smtp://localhost:1025 digest send --processes 4
    """
    transport = transport_for(app.settings, app.sessions, start=0)  # one sender: the first relay is its home
    stop_on_signals()  # SIGTERM: the message in flight finished and recorded, the rest handed back, exit
    if processes > 1:
        if app.engine.dialect.name == "sqlite":
            click.echo(
                f"note: on SQLite the {processes} senders take turns writing (one writer at a time); "
                "PostgreSQL lets them work side by side",
                err=True,
            )
        transport.close()
        report = send_in_processes(app.sessions, app.settings, processes)
    else:
        report = plan_and_send(app.sessions, app.settings, transport, should_stop=stopping.is_set)
    print_send(report, transport.describe(), as_json)
    if not report.ok:
        sys.exit(1)


@cli.command()
@json_option
@pass_app
def feeds(app: App, as_json: bool) -> None:
    """Write the Atom feed of every theme and of all practices into the feeds folder.

    Example: DIGEST_FEEDS_DIR=/srv/www/feeds digest feeds
    """
    with app.sessions() as session:
        from digest.feeds.files import build_feeds

        results = build_feeds(session, app.settings)
    if as_json:
        emit([r.__dict__ for r in results])
    else:
        changed = sum(r.changed for r in results)
        click.echo(f"{len(results)} feeds in {app.settings.feeds_dir} ({changed} changed)")
        print_feed_errors(results)
    if any(r.error for r in results):
        sys.exit(1)
