"""The `digest` command: one click group, each command a thin layer over the service code."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property, wraps
from typing import Any, TypeVar

import click
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from digest import clock, db
from digest.config import Settings, SourceConfig, load_settings
from digest.errors import ConfigError, DigestError
from digest.feeds import build_feeds
from digest.ingest import FORMATS, IngestReport, ingest_sources, policy_from
from digest.models import Membership, Practice, SourceState, Subscription, Theme
from digest.plan import preview_content
from digest.schedule import current_period
from digest.send import Addressed, SendReport, digest_message, plan_and_send
from digest.subscribers import ensure_subscriber, get_subscriber, import_csv, list_subscribers, subscribe, unsubscribe
from digest.transport import transport_for

F = TypeVar("F", bound=Callable[..., Any])
# Sources with fewer items than this store too fast to need a progress bar.
PROGRESS_FROM = 200


@dataclass
class App:
    """What every command needs, made on first use: settings, then the upgraded database."""

    config_path: str | None
    _settings: Settings | None = field(default=None, init=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    @cached_property
    def engine(self) -> Engine:
        engine = db.make_engine(self.settings.database_url)
        db.upgrade(engine)
        return engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return db.session_factory(self.engine)


def json_option(func: F) -> F:
    """Shared --json flag for listing and report commands."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def handle_errors(func: F) -> F:
    """Turn DigestError into a one-line message with a hint and exit status 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DigestError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            if e.hint:
                click.echo(f"hint: {e.hint}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.option(
    "--config",
    "config_path",
    envvar="DIGEST_CONFIG",
    type=click.Path(dir_okay=False),
    help="Config file (default: $DIGEST_CONFIG, else config/digest.toml).",
)
@click.version_option(package_name="digest")
@click.pass_context
@handle_errors
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Email digests and Atom feeds of the practices newly added to each theme.

    Example: digest run --once
    """
    instant = os.environ.get("DIGEST_NOW")
    if instant:
        try:
            clock.set_fixed_now(clock.parse_instant(instant))
        except ValueError as e:
            raise ConfigError(f"DIGEST_NOW: {instant!r} is not an ISO 8601 instant such as 2026-11-23T08:00:00Z") from e
    ctx.obj = App(config_path)


pass_app = click.make_pass_decorator(App)


@cli.group("db")
def db_group() -> None:
    """Database schema commands."""


@db_group.command("upgrade")
@pass_app
@handle_errors
def db_upgrade(app: App) -> None:
    """Upgrade the schema to the newest migration (every command also does this itself).

    Example: digest db upgrade
    """
    _ = app.engine
    click.echo(f"database {app.engine.url.render_as_string(hide_password=True)} is at the newest schema")


def print_ingest(reports: list[IngestReport], as_json: bool) -> None:
    if as_json:
        emit([r.as_dict() for r in reports])
        return
    for r in reports:
        if r.error:
            click.secho(f"{r.source}: FAILED: {r.error}", fg="red", err=True)
            if r.hint:
                click.echo(f"  hint: {r.hint}", err=True)
            continue
        if r.not_modified:
            click.echo(f"{r.source}: not modified since the last fetch")
            continue
        click.echo(
            f"{r.source}: {', '.join(r.themes) or 'no themes'}: {r.new} new, {r.updated} updated, "
            f"{r.unchanged} unchanged"
            + (f", {r.joined} joined another theme" if r.joined else "")
            + (f", {len(r.rejected)} LEFT OUT" if r.rejected else "")
        )
        for problem in r.rejected:
            click.secho(f"  left out {problem}", fg="red", err=True)
        for problem in r.problems:
            click.secho(f"  check {problem}", fg="yellow")


def terminal_progress(source: str, total: int) -> AbstractContextManager[Callable[[int], None]]:
    """A progress bar on stderr for long imports on a terminal; nothing in logs, pipes and CI."""
    if total < PROGRESS_FROM or not sys.stderr.isatty():
        return nullcontext(lambda n: None)

    @contextmanager
    def bar() -> Iterator[Callable[[int], None]]:
        with click.progressbar(length=total, label=f"storing {total} items from {source}", file=sys.stderr) as b:
            yield b.update

    return bar()


def ingest_reports(app: App, sources: list[SourceConfig], skip_gone: bool) -> list[IngestReport]:
    return ingest_sources(
        app.sessions, sources, clock.now(), policy_from(app.settings), skip_gone=skip_gone, progress=terminal_progress
    )


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("--theme", help="Theme of every item (default: the source's configured theme, else its own title).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Kind of source (default: detected).")
@json_option
@pass_app
@handle_errors
def ingest(app: App, sources: tuple[str, ...], theme: str | None, fmt: str | None, as_json: bool) -> None:
    """Ingest files and http(s) URLs (default: the configured sources); a failing one stops no other.

    Listing pages, RSS and Atom feeds, JSON and CSV exports; the kind is detected. Exits 1 when any source
    failed or left items out.

    Example: digest ingest https://example.org/taxonomy/term/12/feed exports/practices.csv
    """
    configured = {s.location: s for s in app.settings.sources}
    if sources:
        chosen = []
        for location in sources:
            known = configured.get(location, SourceConfig(location))
            chosen.append(SourceConfig(location, theme or known.theme, fmt or known.format))
    else:
        chosen = [
            SourceConfig(s.location, theme or s.theme, fmt or s.format) for s in app.settings.sources if s.enabled
        ]
        if not chosen:
            raise ConfigError("no sources given and none configured", "name files or URLs, or add [[sources]]")
    reports = ingest_reports(app, chosen, skip_gone=not sources)
    print_ingest(reports, as_json)
    if any(not r.ok for r in reports):
        sys.exit(1)


@cli.command("sources")
@json_option
@pass_app
@handle_errors
def sources_command(app: App, as_json: bool) -> None:
    """List the configured sources and every source ever ingested, with the last fetch, status and error.

    Example: digest sources --json
    """
    with app.sessions() as session:
        states = {s.location: s for s in session.scalars(select(SourceState).order_by(SourceState.location))}
    configured = {s.location: s for s in app.settings.sources}
    rows = []
    for location in [*configured, *(loc for loc in states if loc not in configured)]:
        conf, state = configured.get(location), states.get(location)
        rows.append(
            {
                "location": location,
                "configured": conf is not None,
                "enabled": conf.enabled if conf else None,
                "theme": conf.theme if conf else None,
                "format": conf.format if conf else None,
                "status": state.status if state else "never fetched",
                "last_fetch_at": state.last_fetch_at.isoformat() if state else None,
                "last_ok_at": state.last_ok_at.isoformat() if state and state.last_ok_at else None,
                "failures": state.failures if state else 0,
                "items": state.items if state else None,
                "rejected": state.rejected if state else None,
                "last_error": state.last_error if state else None,
                "etag": state.etag if state else None,
                "last_modified": state.last_modified if state else None,
            }
        )
    if as_json:
        emit(rows)
        return
    for row in rows:
        flag = "" if row["configured"] else " (not configured)"
        flag += " (disabled)" if row["enabled"] is False else ""
        when = f" at {row['last_fetch_at']}" if row["last_fetch_at"] else ""
        click.echo(f"{row['location']}{flag}: {row['status']}{when}")
        if row["last_error"] and row["status"] in ("failed", "gone", "partial"):
            click.secho(f"  {row['last_error']}", fg="red")


@cli.command()
@json_option
@pass_app
@handle_errors
def themes(app: App, as_json: bool) -> None:
    """List themes with their practice and subscriber counts.

    Example: digest themes --json
    """
    with app.sessions() as session:
        practices = dict(session.execute(select(Membership.theme_id, func.count()).group_by(Membership.theme_id)).all())
        subscribers = dict(
            session.execute(select(Subscription.theme_id, func.count()).group_by(Subscription.theme_id)).all()
        )
        rows = [
            {
                "name": t.name,
                "slug": t.slug,
                "practices": practices.get(t.id, 0),
                "subscribers": subscribers.get(t.id, 0),
            }
            for t in session.scalars(select(Theme).order_by(Theme.name))
        ]
    if as_json:
        emit(rows)
    else:
        for row in rows:
            click.echo(
                f"{row['slug']:40} {row['practices']:5} practices {row['subscribers']:6} subscribers  {row['name']}"
            )


@cli.command()
@click.option("--theme", help="Only practices in this theme (slug or name).")
@json_option
@pass_app
@handle_errors
def practices(app: App, theme: str | None, as_json: bool) -> None:
    """List practices, newest first, with their themes.

    Example: digest practices --theme goal-5-gender-equality --json
    """
    from digest.subscribers import resolve_themes

    with app.sessions() as session:
        query = (
            select(Practice)
            .order_by(Practice.id.desc())
            .options(selectinload(Practice.memberships).selectinload(Membership.theme))
        )
        if theme:
            (target,) = resolve_themes(session, [theme])
            query = query.where(Practice.id.in_(select(Membership.practice_id).where(Membership.theme_id == target.id)))
        rows: list[dict[str, Any]] = []
        for p in session.scalars(query):
            members = sorted(p.memberships, key=lambda m: m.id)
            rows.append(
                {
                    "id": p.id,
                    "title": p.title,
                    "summary": p.summary,
                    "url": p.url,
                    "submitted_by": p.submitted_by,
                    "themes": [{"name": m.theme.name, "slug": m.theme.slug} for m in members],
                    "added": members[0].added_at.isoformat() if members else None,
                    "title_derived": p.title_derived,
                }
            )
    if as_json:
        emit(rows)
    else:
        for row in rows:
            slugs = ", ".join(t["slug"] for t in row["themes"])
            click.echo(f"{row['id']:6}  {row['title'][:80]}  [{slugs}]")


@cli.command("subscribe")
@click.argument("email")
@click.option("--theme", "themes_", multiple=True, required=True, help="Theme slug or name; repeat for more.")
@click.option("--confirmed", is_flag=True, help="Skip the confirmation mail (the address is known to be theirs).")
@pass_app
@handle_errors
def subscribe_cmd(app: App, email: str, themes_: tuple[str, ...], confirmed: bool) -> None:
    """Subscribe an address to themes.

    Example: digest subscribe ada@example.org --theme goal-5-gender-equality --confirmed
    """
    with db.transaction(app.sessions) as session:
        sub = subscribe(session, email, themes_, clock.now(), confirmed, app.settings.welcome_backfill_days)
        click.echo(f"{sub.email}: {sub.status}, {len(sub.subscriptions)} theme(s)")


@cli.command("unsubscribe")
@click.argument("email")
@click.option("--theme", help="Leave only this theme (default: leave everything).")
@pass_app
@handle_errors
def unsubscribe_cmd(app: App, email: str, theme: str | None) -> None:
    """Unsubscribe an address from one theme or from everything; takes effect at once.

    Example: digest unsubscribe ada@example.org
    """
    with db.transaction(app.sessions) as session:
        sub = unsubscribe(session, email, clock.now(), theme)
        click.echo(f"{sub.email}: {sub.status}, {len(sub.subscriptions)} theme(s)")


@cli.group("subscribers")
def subscribers_group() -> None:
    """List and import subscribers."""


@subscribers_group.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False))
@click.option("--confirmed", is_flag=True, help="Import as confirmed (they opted in elsewhere).")
@json_option
@pass_app
@handle_errors
def subscribers_import(app: App, csv_file: str, confirmed: bool, as_json: bool) -> None:
    """Import subscribers from CSV with columns email,themes (themes separated by `;`).

    Example: digest subscribers import people.csv --confirmed
    """
    report = import_csv(app.sessions, csv_file, clock.now(), confirmed, app.settings.welcome_backfill_days)
    if as_json:
        emit({"created": report.created, "updated": report.updated, "errors": report.errors})
    else:
        click.echo(f"{csv_file}: {report.created} created, {report.updated} updated, {len(report.errors)} problem(s)")
        for line, message in report.errors:
            click.secho(f"  {csv_file}, line {line}: {message}", fg="yellow", err=True)


@subscribers_group.command("list")
@json_option
@pass_app
@handle_errors
def subscribers_list(app: App, as_json: bool) -> None:
    """List subscribers with status and themes.

    Example: digest subscribers list --json
    """
    with app.sessions() as session:
        rows = list_subscribers(session)
    if as_json:
        emit(rows)
    else:
        for row in rows:
            click.echo(f"{row['email']:40} {row['status']:13} {', '.join(row['themes'])}")


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


def main() -> None:
    cli(prog_name="digest")
