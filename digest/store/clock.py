"""The database's clock as a SQL expression: the one clock every worker's leases use."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DateTime, Float, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["DatabaseNow", "aware"]


class DatabaseNow(FunctionElement[dt.datetime]):
    """The database's clock, ``seconds`` ahead: the one clock every worker's leases use.

    PostgreSQL's ``now()``; on SQLite the UTC time written as SQLAlchemy writes datetimes
    there, to the millisecond, so it compares as text with the stored ones.
    """

    type = DateTime(timezone=True)
    inherit_cache = True

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__(literal(float(seconds), Float()))


@compiles(DatabaseNow, "postgresql")
def _postgresql_now(element: DatabaseNow, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"(now() + make_interval(secs => {seconds}))"


@compiles(DatabaseNow, "sqlite")
def _sqlite_now(element: DatabaseNow, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now', ({seconds}) || ' seconds')"


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """``value`` with its UTC zone: SQLite hands back naive datetimes, written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)
