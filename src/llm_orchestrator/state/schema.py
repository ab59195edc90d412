"""The tables, as SQLAlchemy Core metadata. Alembic migrations (state/migrations) create them;
`tests/state/test_migrations.py` checks that head matches this file exactly.

JSON values live in Text columns holding canonical JSON (see `codec`); outputs, run inputs and
checkpoint snapshots are zlib blobs. Times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = [
    "UTCDateTime",
    "checkpoints",
    "ledger",
    "metadata",
    "outputs",
    "run_outputs",
    "runs",
    "step_runs",
    "workflows",
]

#: Stable constraint and index names, so migrations can refer to them.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    SQLite keeps them as naive UTC text (which sorts correctly); PostgreSQL as timestamptz.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_ID = sa.String(255)
_HASH = sa.String(128)

workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("hash", _HASH, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("workflow_hash", _HASH, sa.ForeignKey("workflows.hash"), nullable=False),
    sa.Column("workflow_name", sa.Text, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("user_id", _ID, nullable=True),
    sa.Column("owner", _ID, nullable=True),
    sa.Column("lease_expires_at", UTCDateTime, nullable=True),
    sa.Column("inputs", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Double, nullable=False),
    # added by migration 0002
    sa.Column("parent_run_id", _ID, nullable=True),
    sa.Index(None, "id", "status"),
    sa.Index(None, "status", "lease_expires_at"),
    sa.Index(None, "user_id"),
    sa.Index(None, "workflow_name", "created_at"),
    sa.Index(None, "created_at"),
    sa.Index(None, "parent_run_id"),
)

#: Content-addressed: `hash` is the sha256 of the canonical JSON; `data` the stored blob.
outputs = sa.Table(
    "outputs",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
)

#: Every outputs blob a run refers to (from a step or a checkpoint): what keeps it alive.
run_outputs = sa.Table(
    "run_outputs",
    metadata,
    sa.Column("run_id", _ID, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("outputs_hash", sa.String(64), sa.ForeignKey("outputs.hash"), primary_key=True),
    sa.Index(None, "outputs_hash"),
)

step_runs = sa.Table(
    "step_runs",
    metadata,
    sa.Column("run_id", _ID, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("step_id", _ID, primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("attempts", sa.Text, nullable=False),
    sa.Column("outputs_hash", sa.String(64), sa.ForeignKey("outputs.hash"), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("info", sa.Text, nullable=False),
    sa.Column("skips", sa.Text, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Double, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Index(None, "outputs_hash"),
)

#: `snapshot` is a blob of {"steps": {step_id: outputs_hash}, "usage": {...}}.
checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("run_id", _ID, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("step_id", _ID, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("snapshot", sa.LargeBinary, nullable=False),
)
sa.Index(
    "ix_checkpoints_run_id_created_at",
    checkpoints.c.run_id,
    checkpoints.c.created_at.desc(),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("run_id", _ID, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("step_id", _ID, primary_key=True),
    sa.Column("idempotency_key", _ID, primary_key=True),
    sa.Column("claimed_at", UTCDateTime, nullable=False),
    sa.Column("receipt", sa.Text, nullable=True),
    sa.Column("completed_at", UTCDateTime, nullable=True),
)
