"""Shared fixtures: a fresh store per test, settings pointing into tmp_path, a real SMTP server, a CLI runner."""

from __future__ import annotations

import email
import email.policy
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.cli import cli
from digest.config import Settings
from digest.store import db
from tests.feedserver import FeedServer, running

FIXTURES = Path(__file__).parent / "fixtures"
SERVER = os.environ.get("DIGEST_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database with a random name, dropped afterwards."""
    name = "digest_test_" + secrets.token_hex(6)
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as e:
        pytest.fail(f"PostgreSQL is needed at {SERVER} (set DIGEST_TEST_POSTGRES): {e.orig}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


SHARED_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
# Why the tests of the real sample pages skip in a clone elsewhere (CI's has them beside it; a fork's may not).
SAMPLES_ABSENT = (
    "the real theme pages (../shared/samples) live beside the project's workspace, not in the repository; "
    "tests/fixtures cover their format here"
)


def fixture_path(name: str) -> str:
    return str(FIXTURES / name)


@pytest.fixture(autouse=True)
def _reset_clock() -> Iterator[None]:
    yield
    clock.set_fixed_now(None)


def at(instant: str) -> datetime:
    """Fix the clock at an ISO instant and return it."""
    value = clock.parse_instant(instant)
    clock.set_fixed_now(value)
    return value


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'var' / 'digest.db'}",
        base_url="https://digest.test",
        outbox_dir=str(tmp_path / "outbox"),
        feeds_dir=str(tmp_path / "feeds"),
        id_domain="digest.test",
        secret_key="test-secret-0123456789abcdef",
        timezone="Europe/Paris",
    )


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    yield db.session_factory(engine)
    engine.dispose()


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that keeps every message the real SMTP server accepted."""

    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.recipients]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[RecordingHandler, str]]:
    """A real SMTP server on loopback; yields its handler and the smtp:// URL to reach it."""
    handler = RecordingHandler()
    with smtp_controller(handler) as url:
        yield handler, url


@contextmanager
def smtp_controller(handler: Any, smtputf8: bool = False) -> Iterator[str]:
    """Run a real aiosmtpd server with this handler on a free loopback port; yield its smtp:// URL."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A real HTTP server on loopback serving feeds (and failures) per path."""
    with running() as server:
        yield server


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def smtp_settings(settings: Settings, smtp_server: tuple[RecordingHandler, str]) -> Settings:
    return replace(settings, smtp_url=smtp_server[1])


@dataclass
class Cli:
    """Runs `digest` in-process against a config file in tmp_path."""

    runner: CliRunner
    config: Path
    env: dict[str, str]

    def __call__(self, *args: str, now: str | None = None, **env: str) -> Result:
        environment = dict(self.env, **env)
        if now:
            environment["DIGEST_NOW"] = now
        result = self.runner.invoke(cli, list(args), env=environment, catch_exceptions=False)
        clock.set_fixed_now(None)
        return result


@pytest.fixture
def run_cli(tmp_path: Path) -> Cli:
    config = tmp_path / "digest.toml"
    config.write_text(
        f"""
database_url = "sqlite:///{tmp_path / "var" / "digest.db"}"
base_url = "https://digest.test"
outbox_dir = "{tmp_path / "outbox"}"
feeds_dir = "{tmp_path / "feeds"}"
id_domain = "digest.test"
secret_key = "test-secret-0123456789abcdef"
timezone = "Europe/Paris"
""",
        encoding="utf-8",
    )
    return Cli(CliRunner(), config, {"DIGEST_CONFIG": str(config), "DIGEST_NOW": ""})


@pytest.fixture
def web(smtp_settings: Settings, sessions: sessionmaker[Session], smtp_server: tuple[RecordingHandler, str]) -> Any:
    """The web app (tests/webapp.py's Web) on a store with the two water themes, mail to a real SMTP server."""
    from digest.config import SourceConfig
    from digest.ingest import ingest_sources
    from digest.web import create_app
    from tests.webapp import BASE, Web

    settings = replace(smtp_settings, base_url=BASE, subscribe_per_client_per_hour=1000)
    at("2026-11-09T10:00:00Z")
    reports = ingest_sources(sessions, [SourceConfig(fixture_path("listing-water.txt"))], clock.now())
    reports += ingest_sources(sessions, [SourceConfig(fixture_path("listing-goal6.txt"))], clock.now())
    assert all(r.ok for r in reports)
    clock.set_fixed_now(None)
    yield Web(create_app(settings), settings, sessions, smtp_server[0])
