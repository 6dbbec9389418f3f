"""Commands for operators running the service: status (the worker command lives with the worker)."""

from __future__ import annotations

import sys

import click

from digest.cli.app import App, cli, emit, json_option, pass_app
from digest.worker.status import status_of


@cli.command()
@json_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """Show the leader, each job's next and last run, who is due, the last day's digests and failing sources.

    Exits 1 when no worker leads or a job's last run failed: usable as a health check.

    Example: digest status --json
    """
    with app.engine.connect() as connection:
        report = status_of(connection)
    if as_json:
        emit(report)
    else:
        leader = report["leader"]
        if report["state"] == "stopped":
            click.echo("worker: stopped (no worker holds a live lease: nothing runs until one starts)")
        if leader:
            state = "alive" if leader["alive"] else "EXPIRED"
            click.echo(f"leader: {leader['host']} pid {leader['pid']} since {leader['since']} ({state})")
        else:
            click.echo("leader: none")
        for job in report["jobs"]:
            last = job["last_run"]
            did = f"last {last['outcome']} at {last['started_at']}{_counts(last['counts'])}" if last else "never run"
            if last and last["reason"] != "scheduled":
                did += f" ({last['reason']})"
            click.echo(f"  {job['id']:<17} next {job['next_run_at'] or '-'}; {did}")
            if last and last["error"]:
                click.secho(f"    {last['error']}", fg="red")
        waiting = ", ".join(f"{n} {k}" for k, n in report["digests_waiting"].items() if n)
        day = report["last_day"]
        click.echo(
            f"subscribers due now: {report['subscribers_due']}; last 24 h: {day['planned']} planned, "
            f"{day['sent']} sent; waiting: {waiting or 'none'}"
        )
        for relay in report["relays"]:
            state = "up" if relay["up"] else f"down since {relay['since']}: {relay['last_error']}"
            click.secho(f"relay {relay['relay']}: {state}", fg=None if relay["up"] else "yellow")
        for source in report["failing_sources"]:
            click.secho(f"source {source['location']}: {source['status']}: {source['last_error']}", fg="yellow")
        for problem in report["problems"]:
            click.secho(f"problem: {problem}", fg="red", err=True)
    if not report["healthy"]:
        sys.exit(1)


def _counts(counts: object) -> str:
    """A job's counts in words, as a person reads them: ": 3 sources, 1 failed, 5 new" ("" when none)."""
    if not isinstance(counts, dict) or not counts:
        return ""
    return ": " + ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in counts.items())


@cli.group()
def operator() -> None:
    """The operator page (/operator/)."""


@operator.command("password")
def operator_password() -> None:
    """Read a password from standard input (asked twice on a terminal) and print its argon2 hash, the value of
    operator_password_hash. The password itself is never stored or printed.

    Example: digest operator password < secret.txt
    """
    from argon2 import PasswordHasher

    if sys.stdin.isatty():
        password = click.prompt("Operator password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 12:
        raise click.ClickException("the password is shorter than 12 characters: choose a longer one")
    click.echo(PasswordHasher().hash(password))


@cli.group("api")
def api_group() -> None:
    """The REST API (/api/v1/; reference at /api/v1/, docs/api.md)."""


@api_group.group("token")
def token_group() -> None:
    """The API's tokens: create (printed once), list, revoke."""


@token_group.command("create")
@click.argument("name")
@click.option("--write", is_flag=True, help="The token may also change things (create, change, erase subscribers).")
@pass_app
def token_create(app: App, name: str, write: bool) -> None:
    """Make a token named NAME and print it once, as the last line: only its hash is kept, so copy it now.

    Example: digest api token create crm-sync --write
    """
    from digest import clock
    from digest.access import tokens
    from digest.store import db

    with db.transaction(app.sessions) as session:
        token = tokens.create(session, name, write, clock.now())
    click.echo(f"{name}: a {'read and write' if write else 'read-only'} token; it is shown this once:", err=True)
    click.echo(token)


@token_group.command("list")
@json_option
@pass_app
def token_list(app: App, as_json: bool) -> None:
    """List the tokens: name, rights, when made, last used, revoked (never the tokens themselves)."""
    from dataclasses import asdict

    from digest.access import tokens

    with app.sessions() as session:
        found = tokens.listed(session)
    if as_json:
        emit([{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in asdict(t).items()} for t in found])
        return
    for t in found:
        used = t.last_used_at.isoformat(timespec="minutes") if t.last_used_at else "never"
        state = f"revoked {t.revoked_at.isoformat(timespec='minutes')}" if t.revoked_at else "live"
        click.echo(f"{t.name}\t{'write' if t.can_write else 'read'}\tused {used}\t{state}")


@token_group.command("revoke")
@click.argument("name")
@pass_app
def token_revoke(app: App, name: str) -> None:
    """Revoke the token named NAME: refused from now on (its name stays, for the audit log)."""
    from digest import clock
    from digest.access import tokens
    from digest.store import db

    with db.transaction(app.sessions) as session:
        tokens.revoke(session, name, clock.now())
    click.echo(f"{name}: revoked")
