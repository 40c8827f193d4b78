"""prepaid credits: grants, their ledger, and what credits paid of each invoice

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import persistence.types

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credits', persistence.types.ExactDecimal(),
                                      server_default='0', nullable=False))
    op.create_table(
        'credit_grants',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column('amount', persistence.types.ExactDecimal(), nullable=False),
        sa.Column('priority', sa.Integer(), nullable=False),
        sa.Column('granted_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', persistence.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('voided_at', persistence.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('source_invoice_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
        sa.ForeignKeyConstraint(['source_invoice_id'], ['invoices.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source_invoice_id'),
    )
    op.create_index('ix_credit_grants_customer', 'credit_grants', ['customer_id', 'currency'])
    op.create_table(
        'credit_applications',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('grant_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('invoice_id', sa.Integer(), nullable=False),
        sa.Column('amount', persistence.types.ExactDecimal(), nullable=False),
        sa.Column('applied_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['grant_id'], ['credit_grants.id']),
        sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('invoice_id', 'grant_id', name='uq_credit_application'),
    )
    op.create_index(op.f('ix_credit_applications_grant_id'), 'credit_applications',
                    ['grant_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_credit_applications_grant_id'), table_name='credit_applications')
    op.drop_table('credit_applications')
    op.drop_index('ix_credit_grants_customer', table_name='credit_grants')
    op.drop_table('credit_grants')
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_column('credits')
