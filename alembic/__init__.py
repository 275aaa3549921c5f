"""Alembic migrations of the SQL store (installed as ``specwatch.migrations``)."""
