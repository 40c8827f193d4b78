"""plan versions, commands in the order sent, bill-run progress, invoice failures, late
usage, API keys, dead letters and rejected payloads stored as text

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Existing data is carried over: each plan becomes its version 1 (its subscriptions and
invoices are on it), each subscription's next boundary is the one after its latest
invoice, every claimed bill run is done, each customer's draft setting is its first.

Columns added to tables that others refer to keep a server default, so that SQLite needs
no table rebuild (which foreign keys forbid inside a transaction).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import persistence.types

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
EPOCH = "1900-01-01 00:00:00.000000"


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _text(table: str, column: str) -> None:
    """A JSON column becomes JSON text."""
    if _is_postgres():
        op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE TEXT USING {column}::text')
    else:
        with op.batch_alter_table(table, recreate="always") as batch_op:
            batch_op.alter_column(column, existing_type=sa.JSON(), type_=sa.Text(),
                                  existing_nullable=False)


def upgrade() -> None:
    op.create_table('plan_versions',
    sa.Column('plan_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('interval', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('definition', JSON, nullable=False),
    sa.Column('created_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], ),
    sa.PrimaryKeyConstraint('plan_id', 'version')
    )
    op.execute(f"INSERT INTO plan_versions (plan_id, version, currency, interval, definition, "
               f"created_at) SELECT id, 1, currency, interval, definition, "
               f"{'now()' if _is_postgres() else repr(EPOCH)} FROM plans")
    with op.batch_alter_table('plans', recreate="never") as batch_op:
        batch_op.add_column(sa.Column('latest_version', sa.Integer(), nullable=False,
                                      server_default="1"))
        batch_op.drop_column('interval')
        batch_op.drop_column('currency')
        batch_op.drop_column('definition')

    op.create_table('plan_meters_v3',
    sa.Column('plan_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('meter_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['meter_id'], ['meters.id'], ),
    sa.ForeignKeyConstraint(['plan_id', 'version'], ['plan_versions.plan_id', 'plan_versions.version'], ),
    sa.PrimaryKeyConstraint('plan_id', 'version', 'meter_id')
    )
    op.execute("INSERT INTO plan_meters_v3 (plan_id, version, meter_id) "
               "SELECT plan_id, 1, meter_id FROM plan_meters")
    op.drop_table('plan_meters')
    op.rename_table('plan_meters_v3', 'plan_meters')
    if _is_postgres():  # keep the names PostgreSQL gives a table created as plan_meters
        op.execute("ALTER TABLE plan_meters RENAME CONSTRAINT plan_meters_v3_pkey "
                   "TO plan_meters_pkey")

    op.create_table('draft_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('sent_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('value', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('draft_settings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_draft_settings_customer_id'), ['customer_id'], unique=False)
    op.execute(f"INSERT INTO draft_settings (customer_id, sent_at, value) SELECT id, "
               f"{repr(EPOCH + '+00') if _is_postgres() else repr(EPOCH)}, draft_invoices "
               "FROM customers")

    op.create_table('subscription_commands',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('sent_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('subscription_commands', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscription_commands_subscription_id'), ['subscription_id'], unique=False)

    op.create_table('invoice_failures',
    sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('boundary', sa.Date(), nullable=False),
    sa.Column('run_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('first_failed_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_failed_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('subscription_id', 'boundary')
    )

    with op.batch_alter_table('bill_runs', recreate="never") as batch_op:
        batch_op.add_column(sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default="done"))
        batch_op.add_column(sa.Column('sent_at', persistence.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('done_at', persistence.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_bill_runs_status'), ['status'], unique=False)

    with op.batch_alter_table('invoices', recreate="never") as batch_op:
        batch_op.add_column(sa.Column('plan_version', sa.Integer(), nullable=False,
                                      server_default="1"))

    epoch = EPOCH + "+00" if _is_postgres() else EPOCH
    with op.batch_alter_table('subscriptions', recreate="never") as batch_op:
        batch_op.add_column(sa.Column('plan_version', sa.Integer(), nullable=False,
                                      server_default="1"))
        batch_op.add_column(sa.Column('sent_at', persistence.types.UTCDateTime(timezone=True),
                                      nullable=False, server_default=epoch))
        batch_op.add_column(sa.Column('next_k', sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column('next_boundary', sa.Date(), nullable=False,
                                      server_default="1900-01-01"))
        batch_op.add_column(sa.Column('next_boundary_at', persistence.types.UTCDateTime(timezone=True),
                                      nullable=False, server_default=epoch))
        batch_op.add_column(sa.Column('closed_until_at', persistence.types.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.drop_index(batch_op.f('ix_subscriptions_entity_id'))
        batch_op.create_index('ix_subscriptions_due', ['entity_id', 'next_boundary_at'], unique=False)
    _carry_subscriptions_over()

    op.create_table('late_usage',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('meter_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('ingested_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('accounted_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['accounted_by'], ['invoices.id'], ),
    sa.ForeignKeyConstraint(['key'], ['usage_events.key'], ),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], ),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('late_usage', schema=None) as batch_op:
        batch_op.create_index('ix_late_usage_open', ['subscription_id', 'accounted_by'], unique=False)

    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('prefix', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('key_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', persistence.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', persistence.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash'),
    sa.UniqueConstraint('name')
    )
    op.create_table('http_batches',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('received_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('command_log', recreate="never") as batch_op:
        batch_op.add_column(sa.Column('code', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column('field', sa.Text(), nullable=True))

    _text('dead_letters', 'message')
    _text('rejected_usage', 'payload')


def _carry_subscriptions_over() -> None:
    """Each subscription's sent instant is when it was created; its next boundary is the
    one after its latest invoice (the opening one when it has none)."""
    from domain.catalog import parse_plan
    from domain.periods import boundary, boundary_index, midnight

    bind = op.get_bind()
    plans = {pid: parse_plan(d if isinstance(d, dict) else __import__("json").loads(d), pid)
             for pid, d in bind.execute(sa.text(
                 "SELECT plan_id, definition FROM plan_versions"))}
    zones = dict(bind.execute(sa.text("SELECT id, timezone FROM entities")).all())
    latest = dict(bind.execute(sa.text(
        "SELECT subscription_id, max(boundary) FROM invoices GROUP BY subscription_id")).all())
    rows = bind.execute(sa.text(
        "SELECT id, plan_id, entity_id, start, created_at FROM subscriptions")).all()
    for sub_id, plan_id, entity_id, start, created_at in rows:
        start = start if isinstance(start, date) else date.fromisoformat(str(start))
        interval = plans[plan_id].interval
        last = latest.get(sub_id)
        if isinstance(last, str):
            last = date.fromisoformat(last)
        k = 0 if last is None else (boundary_index(start, interval, last) or 0) + 1
        nxt = boundary(start, interval, k)
        at = midnight(nxt, zones[entity_id])
        closed = midnight(boundary(start, interval, k - 1), zones[entity_id]) if k >= 2 else None
        if isinstance(created_at, str):
            created_at = datetime.fromisoformat(created_at)
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)
        instant = persistence.types.UTCDateTime()
        bind.execute(sa.text(
            "UPDATE subscriptions SET sent_at = :sent, next_k = :k, next_boundary = :b, "
            "next_boundary_at = :at, closed_until_at = :closed WHERE id = :id").bindparams(
                sa.bindparam("sent", type_=instant), sa.bindparam("at", type_=instant),
                sa.bindparam("closed", type_=instant), sa.bindparam("b", type_=sa.Date())),
            {"sent": created_at, "k": k, "b": nxt, "at": at, "closed": closed, "id": sub_id})


def downgrade() -> None:
    raise NotImplementedError("0003 cannot be undone: plan versions cannot be folded back")
