"""Commands about one reader's mail and what comes back from readers: preview, ledger, resend, bounces."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from email.utils import make_msgid
from zoneinfo import ZoneInfo

import click

from digest import clock
from digest.cli.app import App, cli, emit, json_option, pass_app
from digest.mail.build.mime import sender_address
from digest.mail.build.recipient import Addressed, digest_message
from digest.mail.build.render import check_templates
from digest.mail.plan.compose import DigestContent
from digest.mail.plan.planner import PlanPolicy, preview_content
from digest.mail.replies.bounces import read_bounces
from digest.mail.replies.mailboxes import messages_of
from digest.mail.replies.reader import read_bytes
from digest.mail.send.resend import resend
from digest.mail.send.transport import transport_for
from digest.schedules.defaults import defaults_from
from digest.schedules.slots import choice_of, schedule_of
from digest.store import digests
from digest.store.queries import ledger
from digest.store.states import DigestStatus
from digest.subscriptions.subscribers import get_subscriber, normalize_email


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
