"""The list ids copies went out under (see digest.audience.listid)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from digest.store.tables import list_ids

if TYPE_CHECKING:
    from digest.store.database import Store

__all__ = ["ListIdRecords"]


class ListIdRecords:
    """The list ids of one database, the first first."""

    def __init__(self, database: Store) -> None:
        self._db = database

    def known(self) -> tuple[str, ...]:
        """Every list id copies went out under, the first first (see digest.audience.listid)."""
        query = select(list_ids.c.list_id).order_by(list_ids.c.first_used_at, list_ids.c.list_id)
        with self._db.reading() as connection:
            return tuple(connection.scalars(query))

    def remember(self, list_id: str, *, now: dt.datetime) -> bool:
        """Keep ``list_id`` as one copies went out under; False if it was kept before.

        Two senders may keep the same id at once (workers sharing an issue): the second
        changes nothing, on SQLite and PostgreSQL alike.
        """
        insert = (
            postgresql_insert if self._db.engine.dialect.name == "postgresql" else sqlite_insert
        )
        statement = (
            insert(list_ids)
            .values(list_id=list_id, first_used_at=now)
            .on_conflict_do_nothing(index_elements=[list_ids.c.list_id])
            # A row back means it was added (psycopg gives no row count for this).
            .returning(list_ids.c.list_id)
        )
        with self._db.writing() as connection:
            return connection.execute(statement).first() is not None
