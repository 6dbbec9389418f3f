"""Commands that plan, send, resend, show the ledger, preview and publish: send, resend, ledger, preview, feeds, run."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from email.utils import make_msgid
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from digest import clock
from digest.cli.app import App, cli, emit, json_option, pass_app
from digest.cli.sources import ingest_reports, print_ingest
from digest.errors import DigestError
from digest.mail.build.mime import sender_address
from digest.mail.build.recipient import Addressed, digest_message
from digest.mail.build.render import check_templates
from digest.mail.plan.compose import DigestContent
from digest.mail.plan.planner import PlanPolicy, preview_content
from digest.mail.replies.bounces import read_bounces
from digest.mail.replies.mailboxes import messages_of
from digest.mail.replies.reader import read_bytes
from digest.mail.send.delivery import SendReport
from digest.mail.send.resend import resend
from digest.mail.send.runs import plan_and_send
from digest.mail.send.senders import send_in_processes, stop_on_signals, stopping
from digest.mail.send.transport import transport_for
from digest.schedules.defaults import defaults_from
from digest.schedules.slots import choice_of, schedule_of
from digest.store import db, digests
from digest.store.queries import ledger
from digest.store.states import DigestStatus
from digest.subscriptions.subscribers import ensure_subscriber, get_subscriber, membership_cursor, normalize_email

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


class _ReadByDefault(click.Group):
    """`digest bounces PATH` reads (as it always did); `digest bounces explain PATH...` only explains."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["read", *args]
        return super().parse_args(ctx, args)


@cli.group("bounces", cls=_ReadByDefault)
def bounces_group() -> None:
    """Read what comes back to the bounce address (`digest bounces PATH`), or explain it without changing anything
    (`digest bounces explain PATH...`)."""


@bounces_group.command("explain")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@json_option
def bounces_explain(paths: tuple[str, ...], as_json: bool) -> None:
    """Explain each message of files, Maildirs or mboxes: its kind (hard, soft, complaint, auto-reply, delivered,
    not-a-report), recipient, status, reason and diagnostic, one line per message and recipient (with --json, one
    object a line). Changes nothing and needs no store.

    Example: digest bounces explain /var/mail/digest-bounces --json
    """
    for path in paths:
        for key, data in messages_of(path, keep=True):
            for reading in read_bytes(data):
                if as_json:
                    click.echo(json.dumps({"message": key, **reading.as_dict()}, ensure_ascii=False))
                else:
                    click.echo(
                        f"{key}\t{reading.kind}\t{reading.recipient or '-'}\t{reading.status or '-'}\t"
                        f"{reading.reason or '-'}\t{reading.diagnostic[:120]}"
                    )


@bounces_group.command("read", hidden=True)
@click.argument("path", type=click.Path())
@json_option
@pass_app
def bounces_command(app: App, path: str, as_json: bool) -> None:
    """Read delivery status notifications (RFC 3464) from a Maildir or mbox: a permanent failure counts a hard
    bounce for the subscriber whose digest it was (suppressed at suppress_after_bounces) when the address is gone
    (an unknown user or host, a moved address), and a soft one otherwise (a full mailbox, a refusal of the message
    or the sender), recorded. Other mail is skipped and listed. Reading the same mailbox again counts nothing twice.

    Example: digest bounces /var/mail/digest-bounces
    """
    report = read_bounces(app.sessions, app.settings, path, clock.now())
    if as_json:
        emit(report.as_dict())
        return
    click.echo(
        f"{report.source}: {report.read} read; {report.hard} hard bounce(s) ({report.suppressed} address(es) "
        f"suppressed), {report.soft} soft, {report.complaints} complaint(s), {report.unsubscribed} unsubscribed by "
        f"mail; {report.already} counted before; {len(report.skipped)} skipped"
    )
    for key, why in report.skipped:
        click.echo(f"  skipped {key}: {why}")


@cli.command("resend")
@click.argument("email")
@click.option("--period", help="The period of the digest (default: the newest one sent); see `digest ledger`.")
@pass_app
def resend_command(app: App, email: str, period: str | None) -> None:
    """Send a recorded digest again, with its original content, under a new Message-ID.

    Example: digest resend ada@example.org --period 2026-11-16
    """
    transport = transport_for(app.settings)
    done = resend(app.sessions, app.settings, transport, email, period)
    click.echo(f"{done.email}: digest of {done.period} sent again to {transport.describe()} as {done.message_id}")


@cli.command("ledger")
@click.argument("email")
@json_option
@pass_app
def ledger_command(app: App, email: str, as_json: bool) -> None:
    """Show what a subscriber was sent and when: every digest, its state, its practices, and resends.

    Example: digest ledger ada@example.org --json
    """
    with app.sessions() as session:
        subscriber = get_subscriber(session, email)
        record = ledger(session, subscriber)
        zone = schedule_of(choice_of(subscriber), defaults_from(app.settings)).zone
    if as_json:
        emit(asdict(record) | {"timezone": zone.key})  # the times as stored (UTC), and whose zone shows them
        return
    bounces = f", {record.bounces} bounce(s)" if record.bounces else ""
    click.echo(f"{record.email} ({record.status}{bounces}), times in their zone, {zone.key}")
    for d in record.digests:
        when = _local(d.sent_at or d.next_attempt_at or d.planned_at, zone)
        click.echo(f"  {d.period}  {d.status:<9} {when}  {len(d.practices)} practice(s)  {d.message_id}")
        for p in d.practices:
            click.echo(f"      {p.theme}: {p.title}" + (" (summarised)" if p.summarised else ""))
        for r in d.resends:
            click.echo(f"      resent {_local(r.sent_at, zone)} as {r.message_id}")
        if d.last_error and d.status != DigestStatus.SENT:
            click.secho(f"      {d.last_error}", fg="yellow")


def _local(instant: str | None, zone: ZoneInfo) -> str:
    """A stored instant as the subscriber reads their clock: "2026-11-23 09:00"."""
    return datetime.fromisoformat(instant).astimezone(zone).strftime("%Y-%m-%d %H:%M") if instant else "-"


@cli.command()
@click.argument("email")
@click.option("--html", "part", flag_value="html", help="Print the HTML body.")
@click.option("--text", "part", flag_value="text", default=True, help="Print the text body (default).")
@click.option("--eml", "part", flag_value="eml", help="Print the whole message.")
@click.option("--last", is_flag=True, help="The last digest sent to them, not the next one.")
@click.option(
    "--send-to",
    metavar="ADDRESS",
    help="Send it to ADDRESS (a test: '[Test]' in the subject, recorded and counted nowhere) instead of printing it.",
)
@pass_app
def preview(app: App, email: str, part: str, last: bool, send_to: str | None) -> None:
    """Print a subscriber's next digest (or, with --last, the last one sent), or send it to an address as a test,
    without recording anything.

    Example: digest preview ada@example.org --send-to me@example.org
    """
    check_templates(app.settings.templates_dir or None)  # a broken template is named even when nothing is new
    now = clock.now()
    target = normalize_email(send_to) if send_to else None
    subject = None
    with app.sessions() as session:
        subscriber = get_subscriber(session, email)
        if last:
            found = digests.last_sent(session, subscriber.id)
            if found is None:
                click.echo(f"{subscriber.email}: no digest sent to them yet", err=True)
                return
            subject, content = found[0], DigestContent.from_json(found[1])
        else:
            upcoming = preview_content(session, subscriber, PlanPolicy.from_settings(app.settings), now)
            if upcoming is None:
                click.echo(
                    f"{subscriber.email}: nothing new since their last digest; --last previews the last one sent",
                    err=True,
                )
                return
            content = upcoming
    if target is not None:
        # Links signed for no subscriber: the tester's unsubscribe or manage click acts for nobody.
        test_subject = f"[Test] {subject or content.subject}"
        to = Addressed("test-send", target, make_msgid(domain=app.settings.id_domain), test_subject)
        _, message = digest_message(app.settings, content, to, now)
        transport = transport_for(app.settings)
        try:
            transport.send(sender_address(app.settings.mail_from), target, message)
        finally:
            transport.close()
        click.echo(
            f"sent a test of {subscriber.email}'s {'last' if last else 'next'} digest to {target} "
            f"via {transport.describe()}"
        )
        return
    to = Addressed(subscriber.key, subscriber.email, "<preview@digest.invalid>", subject)
    rendered, message = digest_message(app.settings, content, to, now)
    if part == "eml":
        sys.stdout.buffer.write(message)
    else:
        click.echo(rendered.html if part == "html" else rendered.text, nl=False)


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
