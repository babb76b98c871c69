"""Alembic migrations for the digest database; applied by :func:`digest.store.Store.open`."""

__all__: list[str] = []
