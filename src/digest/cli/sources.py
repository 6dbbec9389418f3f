"""Commands over sources and what they stored: ingest, sources, themes, practices."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from digest import clock
from digest.cli.app import App, cli, emit, json_option, pass_app
from digest.config import SOURCE_FORMATS, SourceConfig
from digest.errors import ConfigError
from digest.store import queries
from digest.store.states import FAILING

if TYPE_CHECKING:
    from digest.ingest import IngestReport

# Sources with fewer items than this store too fast to need a progress bar.
PROGRESS_FROM = 200


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
    """Ingest, and say in each failure's hint what happens next: a configured source is read again by every run;
    one named on the command line only is not."""
    from digest.feeds import websub
    from digest.ingest import ingest_sources, policy_from
    from digest.text.links import redact_url

    before = websub.revisions(app.sessions)
    reports = ingest_sources(
        app.sessions, sources, clock.now(), policy_from(app.settings), skip_gone=skip_gone, progress=terminal_progress
    )
    # The hubs hear of each feed this ingest changed; one that fails is said and never fails the command.
    told = websub.announce(app.sessions, app.settings, before)
    for written in told.written:
        if written.error:
            click.echo(f"warning: {written.error} (digest feeds writes it again)", err=True)
    for hub in told.failed:
        click.echo(
            f"warning: WebSub hub {redact_url(hub.hub)} was not told of {len(told.feeds)} changed feed(s): "
            f"{hub.error}; it is told at the next change (readers still get them at their next poll)",
            err=True,
        )
    configured = {redact_url(s.location) for s in app.settings.sources if s.enabled}
    for report in reports:
        if report.error is None or report.gone:
            continue
        if report.source in configured:
            again = "it is read again by the next run (digest run --once, or the worker's next poll)"
        else:
            again = "it is not a configured source, so nothing retries it: run this again, or add it to [[sources]]"
        report.hint = f"{report.hint}; {again}" if report.hint else again
    return reports


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("--theme", help="Theme of every item (default: the source's configured theme, else its own title).")
@click.option("--format", "fmt", type=click.Choice(SOURCE_FORMATS), help="Kind of source (default: detected).")
@json_option
@pass_app
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
def sources_command(app: App, as_json: bool) -> None:
    """List the configured sources and every source ever ingested, with the last fetch, status and error.

    Example: digest sources --json
    """
    with app.sessions() as session:
        from digest.ingest import source_overview

        rows = source_overview(session, app.settings.sources)
    if as_json:
        emit(rows)
        return
    for row in rows:
        flag = "" if row["configured"] else " (not configured)"
        flag += " (disabled)" if row["enabled"] is False else ""
        when = f" at {row['last_fetch_at']}" if row["last_fetch_at"] else ""
        click.echo(f"{row['location']}{flag}: {row['status']}{when}")
        if row["last_error"] and row["status"] in FAILING:
            click.secho(f"  {row['last_error']}", fg="red")


@cli.command()
@json_option
@pass_app
def themes(app: App, as_json: bool) -> None:
    """List themes with their practice and subscriber counts.

    Example: digest themes --json
    """
    with app.sessions() as session:
        rows = queries.themes(session)
    if as_json:
        emit([asdict(r) for r in rows])
        return
    for row in rows:
        click.echo(f"{row.slug:40} {row.practices:5} practices {row.subscribers:6} subscribers  {row.name}")


@cli.command()
@click.option("--theme", help="Only practices in this theme (slug or name).")
@json_option
@pass_app
def practices(app: App, theme: str | None, as_json: bool) -> None:
    """List practices, newest first, with their themes.

    Example: digest practices --theme goal-5-gender-equality --json
    """
    with app.sessions() as session:
        rows = queries.practices(session, theme)
    if as_json:
        emit([asdict(r) for r in rows])
        return
    for row in rows:
        slugs = ", ".join(t.slug for t in row.themes)
        click.echo(f"{row.id:6}  {row.title[:80]}  [{slugs}]")
