"""The click group, the shared App (settings, engine, sessions) and the helpers every command uses."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings, load_settings
from digest.errors import ConfigError, DigestError
from digest.store import db

F = TypeVar("F", bound=Callable[..., Any])


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

    def close(self) -> None:
        """At the command's end, its pooled connections closed: SQLite checkpoints its write-ahead log into the
        database file as the last one closes, so the file alone holds what the command wrote (a copy of it is a
        backup), and nothing is left to the interpreter's exit."""
        if "engine" in self.__dict__:
            self.engine.dispose()


def json_option(func: F) -> F:
    """Shared --json flag for listing and report commands."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


class LazyGroup(click.Group):
    """A group whose commands are imported only when invoked (click's lazy-loading pattern): ``lazy`` names the
    module that defines each (registering it on the group as it is imported)."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            importlib.import_module(self.lazy[cmd_name])
        return super().get_command(ctx, cmd_name)


# Every command, by the module that defines it: a command imports its own module only (`digest send` starts in
# half the time it took with every command's imports, the worker's scheduler among them). tests/test_cli.py
# checks this list against the modules.
COMMANDS = {
    "api": "digest.cli.ops",
    "bounces": "digest.cli.readers",
    "feeds": "digest.cli.mail",
    "ingest": "digest.cli.sources",
    "ledger": "digest.cli.readers",
    "operator": "digest.cli.ops",
    "practices": "digest.cli.sources",
    "preview": "digest.cli.readers",
    "resend": "digest.cli.readers",
    "run": "digest.cli.cycle",
    "send": "digest.cli.mail",
    "serve": "digest.cli.web",
    "sources": "digest.cli.sources",
    "status": "digest.cli.ops",
    "subscribe": "digest.cli.people",
    "subscribers": "digest.cli.people",
    "themes": "digest.cli.sources",
    "unsubscribe": "digest.cli.people",
    "webhooks": "digest.cli.ops",
    "worker": "digest.cli.worker",
}


def explain(error: BaseException) -> DigestError | None:
    """What the door says for an error raised on purpose or by the machine at start-up, or None for a bug (which
    keeps its traceback). One place for every command: a DigestError as it is; an OS error (a folder not
    writable, a file missing, a port taken) naming the thing; a database that cannot be used naming its URL."""
    if isinstance(error, DigestError):
        return error
    if isinstance(error, OSError):
        thing = f" {error.filename}" if error.filename else ""
        return DigestError(
            f"{error.strerror or error}{':' if thing else ''}{thing}",
            "check that the path exists and that this user may read and write it",
        )
    from sqlalchemy.exc import OperationalError

    if isinstance(error, OperationalError):
        return DigestError(
            f"the database cannot be used: {str(error.orig).strip()}",
            "check database_url / DIGEST_DATABASE_URL, that the server is up and that the file is not locked",
        )
    return None


class DigestGroup(LazyGroup):
    """The `digest` group: every command's errors are turned into a one-line message and a hint here, once."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as e:
            said = explain(e)
            if said is None:
                raise
            click.secho(f"error: {said}", fg="red", err=True)
            if said.hint:
                click.echo(f"hint: {said.hint}", err=True)
            sys.exit(1)


@click.group(cls=DigestGroup, lazy=COMMANDS)
@click.option(
    "--config",
    "config_path",
    envvar="DIGEST_CONFIG",
    type=click.Path(dir_okay=False),
    help="Config file (default: $DIGEST_CONFIG, else config/digest.toml).",
)
@click.version_option(package_name="digest")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Email digests and Atom feeds of the practices newly added to each theme.

    Example: digest run --once
    """
    instant = os.environ.get("DIGEST_NOW")
    if instant:
        try:
            fixed = clock.parse_instant(instant)
            if not 1971 <= fixed.year <= 9998:  # periods and slots a week or a month away must stay in the calendar
                raise ValueError("out of range")
            clock.set_fixed_now(fixed)
        except (ValueError, OverflowError) as e:
            raise ConfigError(
                f"DIGEST_NOW: {instant!r} is not an ISO 8601 instant from 1971 to 9998 such as 2026-11-23T08:00:00Z"
            ) from e
    ctx.obj = App(config_path)
    ctx.call_on_close(ctx.obj.close)


pass_app = click.make_pass_decorator(App)


@cli.group("db")
def db_group() -> None:
    """Database schema commands."""


@db_group.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Upgrade the schema to the newest migration (every command also does this itself).

    Example: digest db upgrade
    """
    _ = app.engine
    click.echo(f"database {app.engine.url.render_as_string(hide_password=True)} is at the newest schema")
