"""Alembic environment for llm-orchestrator's state schema.

Configured from code by `llm_orchestrator.state.migrate` (no alembic.ini): the caller opens a
connection, begins the transaction and passes the connection in
`config.attributes["connection"]`; every migration then runs in that one transaction.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from llm_orchestrator.state.schema import metadata

#: pg_advisory_xact_lock key: concurrent upgrades of one PostgreSQL database queue up
_PG_LOCK_KEY = 0x6C6C6D6F  # "llmo"


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "llm-orchestrator migrations run through llm_orchestrator.state.migrate "
            "(`llm-orchestrator db upgrade`), which passes an open connection"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        context.run_migrations()


_run()
