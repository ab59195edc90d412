"""The initial state schema: workflows, runs, outputs, steps, checkpoints, ledger.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("hash", name="pk_workflows"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("workflow_hash", sa.String(128), nullable=False),
        sa.Column("workflow_name", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        _ts("lease_expires_at"),
        sa.Column("inputs", sa.LargeBinary, nullable=False),
        _ts("created_at", nullable=False),
        _ts("started_at"),
        _ts("finished_at"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["workflow_hash"], ["workflows.hash"], name="fk_runs_workflow_hash_workflows"
        ),
    )
    op.create_index("ix_runs_id_status", "runs", ["id", "status"])
    op.create_index("ix_runs_status_lease_expires_at", "runs", ["status", "lease_expires_at"])
    op.create_index("ix_runs_user_id", "runs", ["user_id"])
    op.create_index("ix_runs_workflow_name_created_at", "runs", ["workflow_name", "created_at"])
    op.create_index("ix_runs_created_at", "runs", ["created_at"])

    op.create_table(
        "outputs",
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("hash", name="pk_outputs"),
    )
    op.create_table(
        "run_outputs",
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("outputs_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "outputs_hash", name="pk_run_outputs"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_outputs_run_id_runs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["outputs_hash"], ["outputs.hash"], name="fk_run_outputs_outputs_hash_outputs"
        ),
    )
    op.create_index("ix_run_outputs_outputs_hash", "run_outputs", ["outputs_hash"])

    op.create_table(
        "step_runs",
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("step_id", sa.String(255), nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Text, nullable=False),
        sa.Column("outputs_hash", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("info", sa.Text, nullable=False),
        sa.Column("skips", sa.Text, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Double, nullable=False),
        _ts("started_at"),
        _ts("finished_at"),
        sa.PrimaryKeyConstraint("run_id", "step_id", name="pk_step_runs"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_step_runs_run_id_runs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["outputs_hash"], ["outputs.hash"], name="fk_step_runs_outputs_hash_outputs"
        ),
    )
    op.create_index("ix_step_runs_outputs_hash", "step_runs", ["outputs_hash"])

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("step_id", sa.String(255), nullable=False),
        _ts("created_at", nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("snapshot", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoints"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_checkpoints_run_id_runs", ondelete="CASCADE"
        ),
    )
    op.create_index(
        "ix_checkpoints_run_id_created_at",
        "checkpoints",
        ["run_id", sa.text("created_at DESC")],
    )

    op.create_table(
        "ledger",
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("step_id", sa.String(255), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        _ts("claimed_at", nullable=False),
        sa.Column("receipt", sa.Text, nullable=True),
        _ts("completed_at"),
        sa.PrimaryKeyConstraint("run_id", "step_id", "idempotency_key", name="pk_ledger"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_ledger_run_id_runs", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    for table in ("ledger", "checkpoints", "step_runs", "run_outputs", "outputs", "runs"):
        op.drop_table(table)
    op.drop_table("workflows")
