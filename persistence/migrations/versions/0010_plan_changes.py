"""plan changes: each subscription's plan history, the plan an invoice billed in advance,
a proration line's plan

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

An invoice issued before this revision carried its subscription's plan's recurring lines,
when it had any: that plan is what a later change prorates against.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import persistence.types

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'plan_changes',
        sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(length=255),
                  nullable=False),
        sa.Column('since', sa.Date(), nullable=False),
        sa.Column('since_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('plan_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('plan_version', sa.Integer(), nullable=False),
        sa.Column('sent_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('created_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['plan_id'], ['plans.id']),
        sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id']),
        sa.PrimaryKeyConstraint('subscription_id', 'since'),
    )
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('advance_plan_id',
                                      sqlmodel.sql.sqltypes.AutoString(length=255),
                                      nullable=True))
        batch_op.add_column(sa.Column('advance_plan_version', sa.Integer(), nullable=True))
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('plan_id', sqlmodel.sql.sqltypes.AutoString(length=255),
                                      nullable=True))
    op.execute(
        "UPDATE invoices SET advance_plan_id = (SELECT s.plan_id FROM subscriptions s "
        "WHERE s.id = invoices.subscription_id), advance_plan_version = plan_version "
        "WHERE EXISTS (SELECT 1 FROM invoice_lines l WHERE l.invoice_id = invoices.id "
        "AND l.type = 'recurring')")


def downgrade() -> None:
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.drop_column('plan_id')
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_column('advance_plan_version')
        batch_op.drop_column('advance_plan_id')
    op.drop_table('plan_changes')
