"""spend and usage alerts: the alerts, the thresholds they fired, the outbox of
``alert.triggered`` events and how far evaluation has followed the fold

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import persistence.types

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'alerts',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(length=255),
                  nullable=True),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('meter_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True),
        sa.Column('thresholds', _json(), nullable=False),
        sa.Column('recurring_step', persistence.types.ExactDecimal(), nullable=True),
        sa.Column('created_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('deleted_at', persistence.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_alerts_customer', 'alerts', ['customer_id'])
    op.create_table(
        'alert_crossings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('alert_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(length=255),
                  nullable=False),
        sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column('threshold', persistence.types.ExactDecimal(), nullable=False),
        sa.Column('recurring', sa.Integer(), nullable=False),
        sa.Column('value', persistence.types.ExactDecimal(), nullable=False),
        sa.Column('crossed_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['alert_id'], ['alerts.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('alert_id', 'subscription_id', 'period', 'threshold',
                            name='uq_alert_crossing'),
    )
    op.create_table(
        'alert_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('alert_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('payload', _json(), nullable=False),
        sa.Column('created_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.Column('updated_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['alert_id'], ['alerts.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_alert_events_alert_id'), 'alert_events', ['alert_id'])
    op.create_index(op.f('ix_alert_events_status'), 'alert_events', ['status'])
    op.create_table(
        'alert_state',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('evaluated', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('alert_state')
    op.drop_index(op.f('ix_alert_events_status'), table_name='alert_events')
    op.drop_index(op.f('ix_alert_events_alert_id'), table_name='alert_events')
    op.drop_table('alert_events')
    op.drop_table('alert_crossings')
    op.drop_index('ix_alerts_customer', table_name='alerts')
    op.drop_table('alerts')
