"""Commands for operators running the service: status (the worker command lives with the worker)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import click

from digest.cli.app import App, cli, emit, json_option, pass_app
from digest.errors import DigestError
from digest.store.states import WebhookState
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
    """List the tokens: name, rights, when made, last used, revoked (never the tokens themselves).

    Example: digest api token list --json
    """
    from digest.access import tokens

    with app.sessions() as session:
        found = tokens.listed(session)
    if as_json:
        emit(_records(found))
        return
    for t in found:
        used = t.last_used_at.isoformat(timespec="minutes") if t.last_used_at else "never"
        state = f"revoked {t.revoked_at.isoformat(timespec='minutes')}" if t.revoked_at else "live"
        click.echo(f"{t.name}\t{'write' if t.can_write else 'read'}\tused {used}\t{state}")


@token_group.command("revoke")
@click.argument("name")
@pass_app
def token_revoke(app: App, name: str) -> None:
    """Revoke the token named NAME: refused from now on (its name stays, for the audit log).

    Example: digest api token revoke crm-sync
    """
    from digest import clock
    from digest.access import tokens
    from digest.store import db

    with db.transaction(app.sessions) as session:
        tokens.revoke(session, name, clock.now())
    click.echo(f"{name}: revoked")


@cli.group("webhooks")
def webhooks_group() -> None:
    """Webhooks (Standard Webhooks): endpoints that hear of changes as they happen (docs/webhooks.md)."""


@webhooks_group.command("add")
@click.argument("url")
@click.option("--event", "types", multiple=True, help="An event type it wants (repeat; none: every type).")
@pass_app
def webhooks_add(app: App, url: str, types: tuple[str, ...]) -> None:
    """Add an endpoint and print its signing secret once, as the last line (whsec_...: verify each delivery with it).

    Example: digest webhooks add https://crm.example/hooks --event subscriber.created --event subscriber.unsubscribed
    """
    from digest import clock
    from digest.access import webhooks
    from digest.store import db

    with db.transaction(app.sessions) as session:
        ident, secret = webhooks.add(session, url, list(types), clock.now())
    wanted = ", ".join(types) if types else "every event"
    click.echo(f"endpoint {ident}: {wanted}; its signing secret, shown this once:", err=True)
    click.echo(secret)


@webhooks_group.command("list")
@json_option
@pass_app
def webhooks_list(app: App, as_json: bool) -> None:
    """List the endpoints: id, URL (no credentials), events, deliveries pending, delivered and given up, and whether
    one is failing or disabled.

    Example: digest webhooks list --json
    """
    from digest.access import webhooks

    with app.sessions() as session:
        found = webhooks.listed(session)
    if as_json:
        emit(_records(found))
        return
    for e in found:
        failing = f"failing since {e.failing_since:%Y-%m-%d %H:%M}" if e.failing_since else "ok"
        state = "disabled" if e.disabled_at else failing
        kinds = " ".join(e.events) or "every event"
        counts = f"{e.pending} pending, {e.delivered} delivered, {e.failed} given up"
        click.echo(f"{e.id}\t{e.url}\t{kinds}\t{counts}\t{state}")


@webhooks_group.command("remove")
@click.argument("ident", type=int)
@pass_app
def webhooks_remove(app: App, ident: int) -> None:
    """Remove endpoint IDENT and its delivery log: nothing more is sent to it.

    Example: digest webhooks remove 2
    """
    from digest.access import webhooks
    from digest.store import db

    with db.transaction(app.sessions) as session:
        webhooks.remove(session, ident)
    click.echo(f"endpoint {ident}: removed")


@webhooks_group.command("enable")
@click.argument("ident", type=int)
@pass_app
def webhooks_enable(app: App, ident: int) -> None:
    """Take deliveries again at an endpoint disabled after three days of failures.

    Example: digest webhooks enable 2
    """
    from digest.access import webhooks
    from digest.store import db

    with db.transaction(app.sessions) as session:
        webhooks.enable(session, ident)
    click.echo(f"endpoint {ident}: enabled")


@webhooks_group.command("test")
@click.argument("ident", type=int)
@pass_app
def webhooks_test(app: App, ident: int) -> None:
    """Send endpoint IDENT a webhook.test event now, and say what it answered.

    Example: digest webhooks test 2
    """
    from digest import clock
    from digest.access import webhooks
    from digest.store import db

    with db.transaction(app.sessions) as session:
        msg_id = webhooks.test(session, ident, clock.now())
    webhooks.deliver_due(app.sessions, app.settings.webhook_timeout)
    with app.sessions() as session:
        attempt = next(a for a in webhooks.log(session, ident) if a.msg_id == msg_id)
    if attempt.state != "delivered":
        raise DigestError(
            f"endpoint {ident} did not take {msg_id}: {attempt.last_error}",
            "check the URL and that the receiver answers 2xx; it is tried again on the retry schedule",
        )
    click.echo(f"endpoint {ident}: {msg_id} delivered ({attempt.last_status})")


@webhooks_group.command("log")
@click.argument("ident", type=int)
@json_option
@pass_app
def webhooks_log(app: App, ident: int, as_json: bool) -> None:
    """The delivery log of endpoint IDENT, newest first: event, state, tries, the last answer, the next try.

    Example: digest webhooks log 2 --json
    """
    from digest.access import webhooks

    with app.sessions() as session:
        found = webhooks.log(session, ident)
    if as_json:
        emit(_records(found))
        return
    for a in found:
        answer = f"{a.last_status}" if a.last_status else (a.last_error or "-")
        after = f"next {a.next_attempt_at:%Y-%m-%d %H:%M:%S}" if a.state == WebhookState.PENDING else ""
        click.echo(f"{a.msg_id}\t{a.type}\t{a.state}\t{a.attempts} tries\t{answer}\t{after}")


@webhooks_group.command("deliver")
@json_option
@pass_app
def webhooks_deliver(app: App, as_json: bool) -> None:
    """Deliver every due event now (the worker does it every webhook_seconds).

    Example: digest webhooks deliver --json
    """
    from digest.access import webhooks

    done = webhooks.deliver_due(app.sessions, app.settings.webhook_timeout)
    if as_json:
        emit(done.as_dict())
        return
    click.echo(f"{done.delivered} delivered, {done.failed} failed (tried again later)")


def _records(found: Sequence[Any]) -> list[dict[str, Any]]:
    """Dataclass records for --json, their times in ISO 8601 (as every listing writes them)."""
    return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(r).items()} for r in found]
