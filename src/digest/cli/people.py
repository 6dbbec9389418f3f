"""Commands over subscribers: subscribe, unsubscribe, import and list."""

from __future__ import annotations

from dataclasses import asdict

import click

from digest import clock
from digest.cli.app import App, cli, emit, handle_errors, json_option, pass_app
from digest.store import db, queries
from digest.subscriptions.subscribers import import_csv, subscribe, unsubscribe


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
        rows = queries.subscribers(session)
    if as_json:
        emit([asdict(r) for r in rows])
    else:
        for row in rows:
            click.echo(f"{row.email:40} {row.status:13} {', '.join(row.themes)}")
