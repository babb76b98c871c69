"""The database: opening and migrating it, transactions, and the locks a send holds.

SQLite by default (``var/digest.db``) and PostgreSQL through ``postgresql+psycopg://``;
the schema is versioned with Alembic and brought up to date whenever a store is opened.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlalchemy import Engine, Select, Table, create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import NullPool, StaticPool
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from digest.errors import StoreError
from digest.store.alerts import AlertRecords
from digest.store.consent import ConsentRecords
from digest.store.deliveries import DeliveryRecords
from digest.store.figures import FigureRecords
from digest.store.issues import IssueRecords
from digest.store.list_ids import ListIdRecords
from digest.store.operator import OperatorRecords
from digest.store.preferences import PreferenceRecords
from digest.store.returns import ReturnRecords
from digest.store.seeds import SeedFileRecords
from digest.store.signups import ErasureRecords, SignupRecords
from digest.store.subscribers import SubscriberRecords

# SQLSTATEs of a transaction the database rolled back so that another could go on
# (serialization failure, deadlock): run again, it will most likely pass.
_GAVE_WAY = frozenset({"40001", "40P01"})
_WRITE_ATTEMPTS = 5
# Any fixed numbers: they name the locks that keep two processes from migrating, or from
# sending one issue, at once.
_MIGRATION_LOCK = 0x6469676573
_SEND_LOCK = 0x64696773
# Held shared by every running digest schedule (see Store.scheduler_presence).
_SCHEDULER_LOCK = 0x64697363
# Advisory locks are per database, not per schema: the schema's name goes into the key, so
# two installations in one database (or two test runs) do not block each other.
_SCHEMA_LOCK = "SELECT {call}(hashtext(current_schema()) # CAST(:space AS integer), :issue)"

_T = TypeVar("_T")

log = logging.getLogger(__name__)

__all__ = ["SCHEMA_HEAD", "Store"]

# The newest migration's revision (digest/store/migrations/versions/); tests/test_store.py
# checks it is alembic's head.
SCHEMA_HEAD = "0013"


class Store:
    """One database: its connections, schema, locks, and a record class per concept."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.issues = IssueRecords(self)
        self.subscribers = SubscriberRecords(self)
        self.returns = ReturnRecords(self)
        self.deliveries = DeliveryRecords(self)
        self.list_ids = ListIdRecords(self)
        self.consent = ConsentRecords(self)
        self.preferences = PreferenceRecords(self)
        self.signups = SignupRecords(self)
        self.erasures = ErasureRecords(self)
        self.seed_files = SeedFileRecords(self)
        self.figures = FigureRecords(self)
        self.alerts = AlertRecords(self)
        self.operator = OperatorRecords(self)

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Store:
        """Connect to ``url``, creating a SQLite file's folder, and migrate to the latest schema.

        With ``create`` False, a SQLite file that does not exist yet is not made: an empty
        database in memory stands in for it, so a command that only reads (a preview, a
        dry run) leaves nothing on disk.
        """
        parsed = make_url(url)
        shown = _shown_url(parsed)
        try:
            sqlite = parsed.get_backend_name() == "sqlite"
            in_file = sqlite and parsed.database not in (None, "", ":memory:")
            if in_file and not create and not Path(str(parsed.database)).exists():
                # One connection for the whole life of the store: each new connection to
                # "sqlite://" would be a new, empty database.
                engine = create_engine("sqlite://", poolclass=StaticPool)
            elif sqlite and not in_file:
                # The same, and a send's recorder thread must see the same database.
                engine = create_engine(parsed, poolclass=StaticPool)
            else:
                if in_file:
                    Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(parsed)
        except (SQLAlchemyError, ImportError, OSError) as exc:
            raise StoreError(f"cannot use database {shown}: {exc}") from exc
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        try:
            store.migrate()
        except SQLAlchemyError as exc:
            engine.dispose()
            reason = getattr(exc, "orig", None) or exc
            raise StoreError(f"cannot open database {shown}: {str(reason).strip()}") from exc
        except StoreError:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def migrate(self) -> None:
        """Apply every migration not yet applied.

        A database already at :data:`SCHEMA_HEAD` is left as it is without loading alembic
        and its migration scripts: most commands open an up-to-date database, and alembic
        is a good part of their start-up.
        """
        if self.schema_revision() == SCHEMA_HEAD:
            return
        from alembic import command
        from alembic.config import Config
        from alembic.util.exc import CommandError

        try:
            self._upgrade(command, Config())
        except CommandError as exc:
            raise StoreError(
                f"database {_shown_url(self.engine.url)} has a schema this digest does not "
                f"know ({exc}); it was written by a newer digest: upgrade digest"
            ) from exc

    def schema_revision(self) -> str | None:
        """The schema's migration revision (alembic's), or None for a new database."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            found = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
            return str(found[0]) if found is not None else None

    def _upgrade(self, command: Any, config: Any) -> None:
        config.set_main_option("script_location", str(files("digest.store") / "migrations"))
        with self.engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # SQLite changes a table's constraints by copying it and dropping the old
                # one; with foreign keys on, the drop would set every reference to it to
                # null (deliveries.subscriber_id, say). Off for the migration, outside any
                # transaction as SQLite requires, and checked before the commit.
                connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
                connection.commit()
            try:
                with connection.begin():
                    if connection.dialect.name == "postgresql":
                        connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                        )
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                    if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                        raise StoreError("the migration left references to missing rows")
            finally:
                if sqlite:
                    connection.exec_driver_sql("PRAGMA foreign_keys = ON")
                    connection.commit()

    @contextmanager
    def send_lock(self, issue_id: int, *, shared: bool = False) -> Iterator[None]:
        """Held for a whole send: a second send of the same issue is refused, not doubled.

        On PostgreSQL an advisory lock on its own connection. ``shared`` is for workers
        (``digest send --worker``): any number of them hold it together, and none while a
        plain send holds it alone. On SQLite a lock on a file beside the database, always
        exclusive (one machine, one sender, is all SQLite serves).
        """
        if self.engine.dialect.name == "postgresql":
            kind = "_shared" if shared else ""
            with self.engine.connect() as connection:
                got = connection.scalar(
                    text(_SCHEMA_LOCK.format(call=f"pg_try_advisory_lock{kind}")),
                    {"space": _SEND_LOCK, "issue": issue_id},
                )
                # A session lock outlives the transaction: end it, so the connection does
                # not sit idle in one for the whole send (a server may kill such sessions).
                connection.commit()
                if not got:
                    raise StoreError(
                        "a plain digest send of this issue is running: a worker cannot "
                        "start beside it; run the worker again when it has finished"
                        if shared
                        else "another digest send of this issue is running"
                    )
                try:
                    yield
                finally:
                    connection.execute(
                        text(_SCHEMA_LOCK.format(call=f"pg_advisory_unlock{kind}")),
                        {"space": _SEND_LOCK, "issue": issue_id},
                    )
                    connection.commit()
            return
        database = self.engine.url.database
        if not database or database == ":memory:":
            yield
            return
        with Path(f"{database}.send-{issue_id}.lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError("another digest send of this issue is running") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def scheduler_presence(self) -> Iterator[bool]:
        """Held by every ``digest schedule`` while it runs; yields whether another was.

        Every scheduler holds the lock shared; one that starts tries it alone first, which
        succeeds only when no other scheduler is running on this database. On PostgreSQL
        an advisory lock on a connection of its own, on SQLite a lock on a file beside
        the database (one machine).
        """
        if self.engine.dialect.name == "postgresql":
            # A connection of its own, outside the pool: APScheduler's job store disposes
            # of the store's engine when the scheduler shuts down, under this lock.
            own = create_engine(self.engine.url, poolclass=NullPool)
            with own.connect() as connection:
                key = {"space": _SCHEDULER_LOCK, "issue": 0}
                alone = _no_scheduler_on(connection)
                connection.execute(text(_SCHEMA_LOCK.format(call="pg_advisory_lock_shared")), key)
                # Out of the transaction: the session lock stays, the connection not idle in one.
                connection.commit()
                try:
                    yield not alone
                finally:
                    connection.execute(
                        text(_SCHEMA_LOCK.format(call="pg_advisory_unlock_shared")), key
                    )
                    connection.commit()
            own.dispose()
            return
        lock = self._scheduler_lock_file()
        if lock is None:
            yield False
            return
        with lock.open("a") as handle:
            others = not _alone_on(handle)
            # From alone to shared (or shared at once): the next one to start sees this one.
            fcntl.flock(handle, fcntl.LOCK_SH)
            try:
                yield others
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def scheduler_running(self) -> bool:
        """True while a ``digest schedule`` runs on this database (it holds
        :meth:`scheduler_presence`): the lock cannot be taken alone."""
        if self.engine.dialect.name == "postgresql":
            own = create_engine(self.engine.url, poolclass=NullPool)
            try:
                with own.connect() as connection:
                    return not _no_scheduler_on(connection)
            finally:
                own.dispose()
        lock = self._scheduler_lock_file()
        if lock is None or not lock.exists():
            return False
        with lock.open("a") as handle:
            alone = _alone_on(handle)
            if alone:
                fcntl.flock(handle, fcntl.LOCK_UN)
            return not alone

    def _scheduler_lock_file(self) -> Path | None:
        """The file beside a SQLite database that schedulers lock; None for one in memory."""
        database = self.engine.url.database
        if not database or database == ":memory:":
            return None
        return Path(f"{database}.scheduler.lock")

    def transact(self, work: Callable[[Connection], _T]) -> _T:
        """``work`` in one transaction, made again if the database rolled it back.

        PostgreSQL does that to break a deadlock or on a serialization failure: the whole
        transaction is undone, so running it again is safe. The attempts are bounded.
        """
        retrying = Retrying(
            retry=retry_if_exception(_gave_way),
            stop=stop_after_attempt(_WRITE_ATTEMPTS),
            wait=wait_random_exponential(multiplier=0.05, max=1),
            before_sleep=lambda state: log.warning(
                "the database rolled back a write (a deadlock or a serialization "
                "failure): writing it again"
            ),
            reraise=True,
        )
        done: _T = retrying(self._transaction, work)
        return done

    def insert_once(self, table: Table, row: dict[str, Any], *, found: Select[Any]) -> bool:
        """Insert ``row`` unless ``found`` finds a row already: True when it was inserted.

        Two writers at the same moment: the table's unique key refuses the second, which
        gets False too.
        """

        def work(connection: Connection) -> bool:
            if connection.execute(found).first() is not None:
                return False
            connection.execute(table.insert(), row)
            return True

        try:
            return self.transact(work)
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                return False
            raise

    def _transaction(self, work: Callable[[Connection], _T]) -> _T:
        with self.writing() as connection:
            return work(connection)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads; database errors become :class:`StoreError`."""
        try:
            with self.engine.connect() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the database: {_reason(exc)}") from exc

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A transaction; database errors become :class:`StoreError`."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write to the database: {_reason(exc)}") from exc


def _gave_way(exc: BaseException) -> bool:
    """True for a write the database rolled back to break a deadlock or a serialization clash."""
    cause = exc.__cause__ if isinstance(exc, StoreError) else None
    return getattr(getattr(cause, "orig", None), "sqlstate", None) in _GAVE_WAY


def _reason(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def _no_scheduler_on(connection: Connection) -> bool:
    """True when no scheduler holds the PostgreSQL lock: it could be taken alone (and was
    let go again at once)."""
    key = {"space": _SCHEDULER_LOCK, "issue": 0}
    alone = bool(connection.scalar(text(_SCHEMA_LOCK.format(call="pg_try_advisory_lock")), key))
    if alone:
        connection.execute(text(_SCHEMA_LOCK.format(call="pg_advisory_unlock")), key)
    return alone


def _alone_on(handle: IO[str]) -> bool:
    """True when the scheduler lock file could be locked alone (it then stays so)."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _shown_url(url: URL) -> str:
    """``url`` for messages, its password hidden: libpq takes one in the query too."""
    hidden = {key: "***" for key in url.query if "password" in key.casefold()}
    shown = url.update_query_dict(hidden).render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", "***")


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # Write-ahead logging lets readers (a preview, digest serve) work while a send writes,
    # and with synchronous=NORMAL a commit survives the process being killed without an
    # fsync each: a send records every delivery as it completes.
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    # Wait for a writer instead of failing at once when another process holds the lock.
    cursor.execute("PRAGMA busy_timeout = 10000")
    cursor.close()
