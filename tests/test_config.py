"""Settings: defaults, file, environment, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from digest.config import load_settings, parse_smtp_url
from digest.errors import ConfigError


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.database_url == "sqlite:///var/digest.db"
    assert settings.smtp() is None
    assert settings.config_path is None


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(
        'base_url = "https://a.example/"\nschedule_hour = 9\nbatch_size = 10\n'
        '[[sources]]\npath = "x.txt"\ntheme = "T"\n[[subscribers]]\nemail = "a@b.org"\nthemes = ["T"]\n'
    )
    settings = load_settings(path, environ={"DIGEST_SCHEDULE_HOUR": "7", "DIGEST_FEEDS_DIR": "/srv/feeds"})
    assert settings.base_url == "https://a.example"  # trailing slash dropped
    assert settings.schedule_hour == 7  # environment wins
    assert settings.feeds_dir == "/srv/feeds"
    assert settings.batch_size == 10
    assert settings.sources[0].location == "x.txt" and settings.sources[0].theme == "T"
    assert settings.subscribers[0].themes == ("T",)


def test_digest_config_variable_picks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text('feed_author = "Ops"\n')
    assert load_settings(environ={"DIGEST_CONFIG": str(path)}).feed_author == "Ops"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"DIGEST_SCHEDULE_HOUR": "nine"}, "DIGEST_SCHEDULE_HOUR"),
        ({"DIGEST_SCHEDULE_HOUR": "24"}, "schedule_hour"),
        ({"DIGEST_TIMEZONE": "Mars/Olympus"}, "timezone"),
        ({"DIGEST_SCHEDULE_WEEKDAY": "funday"}, "schedule_weekday"),
        ({"DIGEST_SMTP_URL": "http://mail"}, "smtp_url"),
        ({"DIGEST_BASE_URL": "digest.example.org"}, "base_url"),
        ({"DIGEST_BATCH_SIZE": "0"}, "batch_size"),
        ({"DIGEST_ID_DATE": "yesterday"}, "id_date"),
    ],
)
def test_bad_values_name_the_key(
    env: dict[str, str], key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=key):
        load_settings(environ=env)


def test_bad_file_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("base_url = ")
    with pytest.raises(ConfigError, match="broken.toml"):
        load_settings(broken, environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="colour.*unknown.toml"):
        load_settings(unknown, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_smtp_url_forms() -> None:
    plain = parse_smtp_url("smtp://mail.example.org")
    assert (plain.host, plain.port, plain.ssl, plain.starttls, plain.username) == (
        "mail.example.org",
        25,
        False,
        False,
        None,
    )
    tls = parse_smtp_url("smtp://user%40x:p%3Ass@mail:587?starttls=1")
    assert (tls.port, tls.starttls, tls.username, tls.password) == (587, True, "user@x", "p:ss")
    ssl = parse_smtp_url("smtps://mail")
    assert (ssl.port, ssl.ssl) == (465, True)
    assert "p:ss" not in tls.display()


def test_schedule_is_crontab_with_crontab_weekdays() -> None:
    from datetime import UTC, datetime

    from digest.config import Settings
    from digest.schedules.defaults import defaults_from
    from digest.schedules.slots import Choice, schedule_of

    def newest(settings: Settings) -> datetime:
        return schedule_of(Choice(), defaults_from(settings)).last_at_or_before(datetime(2026, 11, 22, 10, tzinfo=UTC))

    # Sunday 22 November: the newest Monday-to-Friday slot is Friday the 20th (crontab's 1-5, not Tue-Sat).
    weekdays = Settings(schedule="30 7 * * 1-5", timezone="Europe/Paris")
    assert newest(weekdays) == datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
    assert newest(Settings(schedule="0 9 * * 0", timezone="UTC")) == datetime(2026, 11, 22, 9, tzinfo=UTC)


def test_bad_schedule_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"schedule \(from DIGEST_SCHEDULE\): '0 8 \* mon' is not a five-field"):
        load_settings(environ={"DIGEST_SCHEDULE": "0 8 * mon"})


def test_worker_unit_runs_the_worker_and_restarts_on_failure() -> None:
    from pathlib import Path

    from digest.cli import cli

    unit = (Path(__file__).resolve().parents[1] / "deploy" / "digest-worker.service").read_text()
    lines = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert lines["ExecStart"].split()[-1] == "worker" and "worker" in cli.list_commands(click.Context(cli))
    assert lines["Restart"] == "on-failure" and lines["KillSignal"] == "SIGTERM"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DIGEST_SMTP_TIMEOUT": "nan"}, r"smtp_timeout \(from DIGEST_SMTP_TIMEOUT\): 'nan' is not a finite number"),
        ({"DIGEST_HTTP_BACKOFF": "inf"}, r"http_backoff \(from DIGEST_HTTP_BACKOFF\): 'inf' is not a finite number"),
        ({"DIGEST_BATCH_SIZE": "1" + "0" * 30}, r"batch_size \(from DIGEST_BATCH_SIZE\): 1000+ is out of range"),
        ({"DIGEST_RATE_PER_HOUR": "1e400"}, r"rate_per_hour \(from DIGEST_RATE_PER_HOUR\): '1e400' is not a whole"),
        ({"DIGEST_MAX_ATTEMPTS": "2.5"}, r"max_attempts \(from DIGEST_MAX_ATTEMPTS\): '2.5' is not a whole number"),
        ({"DIGEST_CLAIM_TIMEOUT": "0"}, r"claim_timeout \(from DIGEST_CLAIM_TIMEOUT\): 0 s is below the safe floor"),
        ({"DIGEST_MAIL_FROM": "Practice digest"}, r"mail_from \(from DIGEST_MAIL_FROM\): 'Practice digest' has no"),
        ({"DIGEST_MAIL_FROM": "Digest <digest@localhost>"}, r"mail_from .* is not a valid address"),
        ({"DIGEST_LIST_ID": "my list"}, r"list_id \(from DIGEST_LIST_ID\): 'my list' is not a list id"),
        ({"DIGEST_ID_DOMAIN": "exa mple.org"}, r"id_domain \(from DIGEST_ID_DOMAIN\)"),
        (
            {"DIGEST_DATABASE_URL": "mysql://app:pw@db/digest"},
            r"database_url .*: digest runs on SQLite and PostgreSQL, not mysql",
        ),
        (
            {"DIGEST_DATABASE_URL": "postgresql+psycopg2://app@db/digest"},
            r"database_url .*: the database driver for postgresql\+psycopg2 is not installed",
        ),
        (
            {"DIGEST_DATABASE_URL": "sqlite://"},
            r"database_url \(from DIGEST_DATABASE_URL\): an in-memory SQLite database is gone when the process ends",
        ),
        ({"DIGEST_DATABASE_URL": "sqlite:///:memory:"}, r"database_url .*: an in-memory SQLite database"),
        (
            {"DIGEST_DATABASE_URL": "not a url"},
            r"database_url \(from DIGEST_DATABASE_URL\): 'not a url' is not a database URL",
        ),
        (
            {"DIGEST_TEMPLATES_DIR": "/nonexistent/templates"},
            r"templates_dir .*: /nonexistent/templates has no digest.txt",
        ),
    ],
)
def test_values_that_would_crash_later_are_refused_at_load(
    env: dict[str, str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env)


def test_folders_that_cannot_be_created_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    for key in ("feeds_dir", "outbox_dir"):
        with pytest.raises(ConfigError, match=rf"{key} \(from DIGEST_{key.upper()}\): .*a-file is a file"):
            load_settings(environ={f"DIGEST_{key.upper()}": str(tmp_path / "a-file" / "sub")})
    with pytest.raises(ConfigError, match=r"database_url \(from .*digest.toml\): .*a-file is a file, not a folder"):
        (tmp_path / "digest.toml").write_text(f'database_url = "sqlite:///{tmp_path}/a-file/var/digest.db"\n')
        load_settings(tmp_path / "digest.toml", environ={})


def test_errors_never_print_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for env in (
        {"DIGEST_SMTP_URL": "smtp://mailer:hunter2@mail.example.org:notaport"},
        {"DIGEST_SMTP_URL": "smtpx://mailer:hunter2@mail.example.org"},
        {"DIGEST_DATABASE_URL": "mysql://app:hunter2@db/digest"},
    ):
        with pytest.raises(ConfigError) as caught:
            load_settings(environ=env)
        assert "hunter2" not in str(caught.value), str(caught.value)
        assert "***" in str(caught.value) or "not mysql" in str(caught.value), str(caught.value)


def test_mail_from_is_normalised_for_the_wire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"DIGEST_MAIL_FROM": "Digest <news@bücher.example>"})
    assert settings.mail_from == "Digest <news@xn--bcher-kva.example>"
    with pytest.raises(ConfigError, match="must be ASCII before the @"):
        load_settings(environ={"DIGEST_MAIL_FROM": "josé@example.org"})


@pytest.mark.parametrize("instant", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2026-13-01T00:00:00Z"])
def test_digest_now_at_the_edges_of_the_calendar_is_a_clear_error(run_cli: object, instant: str) -> None:
    from tests.conftest import Cli

    assert isinstance(run_cli, Cli)
    result = run_cli("send", now=instant)
    assert result.exit_code == 1
    assert "DIGEST_NOW" in result.stderr and "from 1971 to 9998" in result.stderr


def test_the_sample_config_shows_every_key_with_its_default() -> None:
    """config/digest.toml says it shows every key with its default: every scalar setting is there, set (or
    commented out) to the value a Settings() has, unless the demo sets it on purpose."""
    import dataclasses
    import re
    import tomllib

    from digest.config import Settings

    sample = Path(__file__).parent.parent / "config" / "digest.toml"
    text = sample.read_text(encoding="utf-8")
    values = tomllib.loads(text)
    demo = {"database_url", "base_url", "outbox_dir", "mail_from", "list_id", "secret_key", "environment",
            "feeds_dir", "id_domain", "sources", "subscribers", "config_path"}  # fmt: skip
    defaults = Settings()
    missing = [f.name for f in dataclasses.fields(Settings) if f.name not in values and f.name != "config_path"]
    assert not missing, f"config/digest.toml lacks {missing}"
    differ = {
        name: (values[name], getattr(defaults, name))
        for name in values
        if name not in demo and values[name] != getattr(defaults, name)
    }
    assert not differ, f"config/digest.toml shows values that are not the defaults: {differ}"
    # Each key has a comment above it (directly, or at the head of its group).
    assert not re.search(r"\n\n[a-z_]+ = ", text), "a key with no comment above it"
