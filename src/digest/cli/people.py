"""Commands over subscribers: subscribe, unsubscribe, import and list."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click

from digest import clock
from digest.cli.app import App, cli, emit, json_option, pass_app
from digest.errors import DigestError, SubscriberError, TransportError
from digest.mail.send.notices import Welcome, send_confirmation, send_welcome_if_it_can, welcome_for
from digest.mail.send.transport import transport_for
from digest.schedules.defaults import defaults_from
from digest.schedules.slots import FREQUENCIES, Choice, Defaults, choice_of, parse_choice, schedule_of
from digest.schedules.zones import local
from digest.store import db, queries
from digest.store.states import SubscriberStatus
from digest.subscriptions.imports import import_csv
from digest.subscriptions.subscribers import (
    confirm,
    get_subscriber,
    pause,
    set_format,
    set_language,
    set_practice_languages,
    set_schedule,
    subscribe,
    to_welcome,
    unsubscribe,
)
from digest.subscriptions.subscribers import resume as resume_subscriber
from digest.text.i18n import UnknownLanguage, supported

F = TypeVar("F", bound=Callable[..., Any])


def schedule_options(func: F) -> F:
    """--frequency, --day, --hour, --timezone: a subscriber's schedule (left out: as before, or the defaults)."""
    for option in reversed(
        [
            click.option("--frequency", type=click.Choice(FREQUENCIES), help="daily, weekly or monthly."),
            click.option("--day", help="Weekly: a weekday name (monday ... sunday). Monthly: 1-31 (31: month's end)."),
            click.option("--hour", help="Local hour, 0-23."),
            click.option("--timezone", help="IANA timezone, such as Europe/Paris."),
        ]
    ):
        func = option(func)
    return func


def _choice(frequency: str | None, day: str | None, hour: str | None, timezone: str | None) -> Choice:
    return parse_choice(frequency, day, hour, timezone)  # a ScheduleError names the field


def _describe(summary: queries.SubscriberSummary, defaults: Defaults) -> str:
    """Their schedule and what comes next, in their own timezone (a pause reads back as the day they chose)."""
    schedule = schedule_of(choice_of(summary), defaults)
    if summary.status == SubscriberStatus.PENDING:
        return f"{schedule.describe()}; awaiting confirmation"
    if summary.status != SubscriberStatus.CONFIRMED:
        why = f": {summary.left_reason}" if summary.left_reason else ""
        why += (
            f": {summary.last_bounce}" if summary.status == SubscriberStatus.SUPPRESSED and summary.last_bounce else ""
        )
        return f"{schedule.describe()}; nothing is sent ({summary.status}{why})"
    paused_until, next_due = local(summary.paused_until, schedule.zone), local(summary.next_due_at, schedule.zone)
    paused = f", paused until {paused_until.date().isoformat()}" if paused_until else ""
    nxt = next_due.strftime("%Y-%m-%d %H:%M") if next_due else "at the next run"
    languages = f"; practices in {summary.practice_languages} only" if summary.practice_languages else ""
    languages += f"; mails in {summary.language}" if summary.language else ""
    feed = "; feed only, no mail" if summary.feed_only else ""
    feed += "; plain text" if summary.format == "text" else ""
    asked = local(summary.reconfirm_asked_at, schedule.zone)
    feed += f"; asked 'do you still want these?' on {asked.date().isoformat()}, no answer yet" if asked else ""
    return f"{schedule.describe()}; next {nxt}{paused}{languages}{feed}"


def _language(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The --language given, as one of the languages of mails; a usage error naming the option otherwise."""
    if value is None:
        return None
    try:
        return supported(value)
    except UnknownLanguage as e:
        raise click.BadParameter(str(e), ctx, param) from e


language_option = click.option(
    "--language",
    callback=_language,
    metavar="CODE",
    help="Language of their mails and pages: en, fr or es (default: the browser's on the web, else default_language).",
)


@cli.command("subscribe")
@click.argument("email")
@click.option("--theme", "themes_", multiple=True, required=True, help="Theme slug or name; repeat for more.")
@schedule_options
@click.option("--confirmed", is_flag=True, help="Skip the confirmation mail (the address is known to be theirs).")
@click.option("--welcome", is_flag=True, help="With --confirmed: send them the welcome mail (what comes and when).")
@language_option
@pass_app
def subscribe_cmd(
    app: App,
    email: str,
    themes_: tuple[str, ...],
    frequency: str | None,
    day: str | None,
    hour: str | None,
    timezone: str | None,
    confirmed: bool,
    welcome: bool,
    language: str | None,
) -> None:
    """Subscribe an address to themes, on a schedule of its own (default: the operator's weekly one). Unless
    --confirmed, the address gets the confirmation mail the web form sends, and nothing else until it is confirmed.

    Example: digest subscribe ada@example.org --theme goal-5-gender-equality --frequency daily --hour 7
    --timezone Asia/Tokyo --language fr --confirmed
    """
    choice = _choice(frequency, day, hour, timezone)
    now, backfill = clock.now(), app.settings.welcome_backfill_days
    with db.transaction(app.sessions) as session:
        sub = subscribe(session, email, themes_, now, confirmed, backfill, choice, language)
        address, status, key = sub.email, sub.status, sub.key
        in_language = sub.language or app.settings.default_language
        names = sorted(s.theme.name for s in sub.subscriptions)
        # Confirmed here, the welcome is theirs only when asked for; either way it is settled (never sent later).
        settled = confirmed and to_welcome(session, sub, now)
        told = welcome_for(app.settings, sub, now) if settled and welcome else None
    click.echo(f"{address}: {status}, {len(names)} theme(s)")
    _welcome(app, told)
    if status == SubscriberStatus.PENDING:
        _send_confirmation(app, address, key, names, in_language)


def _local_day(instant: str | None, zone: ZoneInfo) -> str | None:
    return datetime.fromisoformat(instant).astimezone(zone).date().isoformat() if instant else None


def _send_confirmation(app: App, address: str, key: str, themes: list[str], language: str) -> None:
    transport = transport_for(app.settings)
    where = transport.describe()
    try:
        send_confirmation(app.settings, transport, address, key, themes, language)
    except TransportError as e:
        # The transport's own hint speaks of digests, which wait for the next run; a confirmation does not.
        raise DigestError(
            f"{address}: the subscription is stored (pending), but its confirmation mail was not sent: {e}",
            f"check smtp_url, then send it again: digest subscribers resend-confirmation {address}",
        ) from e
    click.echo(f"{address}: confirmation mail sent to {where}; nothing else goes there until it is confirmed")


@cli.command("unsubscribe")
@click.argument("email")
@click.option("--theme", help="Leave only this theme (default: leave everything).")
@pass_app
def unsubscribe_cmd(app: App, email: str, theme: str | None) -> None:
    """Unsubscribe an address from one theme or from everything; takes effect at once.

    Example: digest unsubscribe ada@example.org
    """
    with db.transaction(app.sessions) as session:
        sub = unsubscribe(session, email, clock.now(), theme)
        click.echo(f"{sub.email}: {sub.status}, {len(sub.subscriptions)} theme(s)")


@cli.group("subscribers")
def subscribers_group() -> None:
    """List, import, confirm and change subscribers."""


@subscribers_group.command("confirm")
@click.argument("email")
@pass_app
def subscribers_confirm(app: App, email: str) -> None:
    """Confirm an address by hand (it is known to be theirs): from now on new practices count for them.

    Example: digest subscribers confirm ada@example.org
    """
    with db.transaction(app.sessions) as session:
        subscriber = get_subscriber(session, email)
        if subscriber.status == SubscriberStatus.CONFIRMED:
            click.echo(f"{subscriber.email}: confirmed already")
            return
        now = clock.now()
        confirm(session, subscriber, now, app.settings.welcome_backfill_days)
        click.echo(f"{subscriber.email}: confirmed, {len(subscriber.subscriptions)} theme(s)")
        welcome = welcome_for(app.settings, subscriber, now) if to_welcome(session, subscriber, now) else None
    _welcome(app, welcome)


def _welcome(app: App, welcome: Welcome | None) -> None:
    """The welcome of someone confirmed, after the confirmation is committed; a mail server away is a warning."""
    if welcome is None:
        return
    if send_welcome_if_it_can(app.settings, welcome):
        click.echo(f"{welcome.to}: welcome mail sent")
    else:
        click.echo(f"warning: {welcome.to}: the welcome mail could not be sent (it is not sent again)", err=True)


@subscribers_group.command("resend-confirmation")
@click.argument("email")
@pass_app
def subscribers_resend_confirmation(app: App, email: str) -> None:
    """Send the confirmation mail again to an address awaiting confirmation (a new link, valid confirm_hours).

    Example: digest subscribers resend-confirmation ada@example.org
    """
    with app.sessions() as session:
        subscriber = get_subscriber(session, email)
        if subscriber.status != SubscriberStatus.PENDING:
            raise SubscriberError(
                f"{subscriber.email} is {subscriber.status}, not awaiting confirmation",
                "only a pending address gets a confirmation mail; see `digest subscribers list`",
            )
        address, key = subscriber.email, subscriber.key
        in_language = subscriber.language or app.settings.default_language
        names = sorted(s.theme.name for s in subscriber.subscriptions)
    _send_confirmation(app, address, key, names, in_language)


@subscribers_group.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False))
@click.option("--confirmed", is_flag=True, help="Import as confirmed (they opted in elsewhere).")
@json_option
@pass_app
def subscribers_import(app: App, csv_file: str, confirmed: bool, as_json: bool) -> None:
    """Import subscribers from CSV with columns email,themes (themes separated by `;`), and optionally
    frequency,day,hour,timezone and language (of their mails: en, fr or es). Rows with a problem are left out
    and named; the rest are imported. Exits 1 when any row was left out (as `digest ingest` does when an item was).

    Example: digest subscribers import people.csv --confirmed
    """
    report = import_csv(app.sessions, csv_file, clock.now(), confirmed, app.settings.welcome_backfill_days)
    if as_json:
        emit({"created": report.created, "updated": report.updated, "errors": report.errors})
    else:
        click.echo(f"{csv_file}: {report.created} created, {report.updated} updated, {len(report.errors)} problem(s)")
        for line, message in report.errors:
            click.secho(f"  {csv_file}, line {line}: {message}", fg="yellow", err=True)
    if report.errors:
        sys.exit(1)


@subscribers_group.command("set")
@click.argument("email")
@schedule_options
@click.option("--pause-until", type=click.DateTime(["%Y-%m-%d"]), help="Send nothing before this local date.")
@click.option("--resume", is_flag=True, help="End a pause now.")
@click.option(
    "--practice-languages",
    metavar="TAGS",
    help='Only practices in these languages, e.g. "es fr" (and those of unknown language); "" = every language.',
)
@language_option
@click.option(
    "--format", "mail_format", type=click.Choice(["html", "text"]), help="HTML with a text version, or plain text only."
)
@pass_app
def subscribers_set(
    app: App,
    email: str,
    frequency: str | None,
    day: str | None,
    hour: str | None,
    timezone: str | None,
    pause_until: datetime | None,
    resume: bool,
    practice_languages: str | None,
    language: str | None,
    mail_format: str | None,
) -> None:
    """Change a subscriber's schedule, pause and resume, languages or format; from their next slot, nothing lost or
    sent twice.

    Example: digest subscribers set ada@example.org --frequency monthly --day 1 --hour 9
    """
    if pause_until and resume:
        raise click.UsageError("--pause-until and --resume do not go together")
    choice = _choice(frequency, day, hour, timezone)
    defaults = defaults_from(app.settings)
    now = clock.now()
    with db.transaction(app.sessions) as session:
        subscriber = get_subscriber(session, email)
        if choice != Choice() or not (
            pause_until or resume or practice_languages is not None or language or mail_format
        ):
            set_schedule(session, subscriber, choice, defaults, now)
        if language:
            set_language(subscriber, language)
        if mail_format:
            set_format(subscriber, mail_format)
        if practice_languages is not None:
            set_practice_languages(subscriber, practice_languages.split())
        if pause_until:
            pause(session, subscriber, pause_until.date(), defaults, now)
        if resume:
            resume_subscriber(session, subscriber, defaults, now)
        address = subscriber.email
    with app.sessions() as session:
        (summary,) = queries.subscribers(session, address)
    click.echo(f"{address}: {_describe(summary, defaults)}")


@subscribers_group.command("list")
@json_option
@pass_app
def subscribers_list(app: App, as_json: bool) -> None:
    """List subscribers with status, themes, schedule and next due time.

    Example: digest subscribers list --json
    """
    defaults = defaults_from(app.settings)
    with app.sessions() as session:
        rows = queries.subscribers(session)
    if as_json:
        # The schedule they follow (their choice, completed by the defaults), and what they chose.
        out = []
        for row in rows:
            schedule = schedule_of(choice_of(row), defaults)
            out.append(
                asdict(row)
                | {
                    "chosen": {k: getattr(row, k) for k in ("frequency", "day", "hour", "timezone")},
                    "frequency": schedule.frequency,
                    "day": schedule.day,
                    "hour": schedule.hour,
                    "timezone": schedule.zone.key,
                    "schedule": schedule.describe(),
                    # The pause as they chose it: the day digests resume, in their own zone (paused_until is
                    # the UTC instant that day starts).
                    "paused_until_date": _local_day(row.paused_until, schedule.zone),
                }
            )
        emit(out)
    else:
        for row in rows:
            click.echo(f"{row.email:40} {row.status:13} {', '.join(row.themes)}  ({_describe(row, defaults)})")
