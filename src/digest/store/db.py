"""Engine, sessions and schema upgrades.

Every command upgrades the schema itself, so many processes may start on a fresh database at once (a worker, a
web server with several workers, senders). The upgrade runs under a lock that only one of them holds: a
PostgreSQL advisory lock, or a lock file beside a SQLite database. The others wait, see the schema current,
and go on.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ARRAY, ColumnElement, Engine, any_, bindparam, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

from digest.errors import ConfigError, DigestError

T = TypeVar("T")

MIGRATIONS = "digest.store:migrations"
# pg_advisory_lock key of schema upgrades: any fixed 64-bit number no other code on the server uses.
UPGRADE_LOCK = 0x64696765_7374  # "digest"
# pg_advisory_xact_lock key between ingest (shared) and planning's read of the newest membership (exclusive).
MEMBERSHIP_LOCK = 0x64696765_7375


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web app read while the worker writes; busy_timeout waits out a writer instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(database_url: str) -> Engine:
    """An engine for the URL; a SQLite file's folder is created, and SQLite gets WAL and foreign keys."""
    try:
        url = make_url(database_url)
    except ArgumentError as e:
        raise ConfigError(f"database_url: {database_url!r} is not a database URL") from e
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            try:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"database_url: cannot create the folder of {url.database}: {e.strerror}") from e
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


@cache
def head_revision() -> str:
    """The newest migration's revision, read off the file names: each migration is named after its revision
    (`0013_no_status_index.py` is 0013) in one line of history (tests/test_house.py checks this against
    alembic's own reading). Every command asks whether the schema is current; reading the scripts with alembic
    to answer costs a fifth of a second, and the answer is nearly always yes."""
    versions = resources.files("digest.store.migrations").joinpath("versions")
    return max(f.name.split("_")[0] for f in versions.iterdir() if f.name[:4].isdigit() and f.name.endswith(".py"))


def schema_is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration."""
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except OperationalError as e:
        if "no such table" in str(e.orig):
            return False  # a new SQLite database
        raise  # the database cannot be reached
    except DBAPIError:
        return False  # no alembic_version table (PostgreSQL: UndefinedTable): a new database
    return stored == {head_revision()}


@contextmanager
def upgrade_lock(engine: Engine) -> Iterator[None]:
    """Held by one process at a time per database, across processes (and hosts, on PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": UPGRADE_LOCK})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": UPGRADE_LOCK})
                conn.commit()
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.upgrade-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to the newest migration, or to `revision` (a no-op when it is there already).

    Safe when many processes start at once: one upgrades under the lock, the others find it done.
    """
    try:
        if revision == "head" and schema_is_current(engine):
            return
        with upgrade_lock(engine):
            if revision == "head" and schema_is_current(engine):
                return  # another process upgraded it while this one waited
            from alembic import command

            cfg = _alembic_config(engine)
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
    except OperationalError as e:
        raise DigestError(
            f"cannot open the database {engine.url.render_as_string(hide_password=True)}: {e.orig}",
            "check database_url / DIGEST_DATABASE_URL and that the server is running",
        ) from e


def conflict_insert(session: Session) -> Callable[..., Any]:
    """The session's database's INSERT that takes ON CONFLICT (SQLite and PostgreSQL both have it)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def one_of(session: Session, column: InstrumentedAttribute[Any], values: Collection[Any]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL, ``column = ANY(array)``: one parameter whatever the count, so a batch's
    statement reads the same for every batch (parsed once, then prepared by psycopg) where an IN list of hundreds
    of parameters is rendered and parsed anew each time."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def id_array(ids: Iterable[int]) -> str:
    """Ids as one PostgreSQL array literal ('{1,2,3}': digits only, nothing to quote), for a statement that takes
    them as ``%s::integer[]``: psycopg dumps a Python list element by element, in Python."""
    return "{" + ",".join(map(str, map(int, ids))) + "}"


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit when the block ends, roll back if it raises."""
    with factory() as session, session.begin():
        yield session


def first_writer_wins(factory: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    """``work`` in one transaction, run once more if a concurrent one took the same unique key first.

    For a unit that reads, then inserts what it did not find (a new address subscribing from two tabs at once):
    the loser's INSERT breaks a unique constraint; run again, it reads the winner's row and takes the path of an
    address already known. A second conflict is a real one and is raised.
    """
    try:
        with transaction(factory) as session:
            return work(session)
    except IntegrityError:
        with transaction(factory) as session:
            return work(session)
