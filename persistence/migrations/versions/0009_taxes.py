"""taxes: the catalog's rates, the rates of entities, customers and invoice lines, and each
invoice's tax per rate; the filter group of an invoice line

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import persistence.types

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'tax_rates',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('rate', persistence.types.ExactDecimal(), nullable=False),
        sa.Column('updated_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'invoice_taxes',
        sa.Column('invoice_id', sa.Integer(), nullable=False),
        sa.Column('tax_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('rate', persistence.types.ExactDecimal(), nullable=False),
        sa.Column('base', persistence.types.ExactDecimal(), nullable=False),
        sa.Column('amount', persistence.types.ExactDecimal(), nullable=False),
        sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('invoice_id', 'tax_id'),
    )
    with op.batch_alter_table('entities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('taxes', _json(), nullable=True))
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('taxes', _json(), nullable=True))
        batch_op.add_column(sa.Column('tax_exempt', sa.Boolean(), server_default='0',
                                      nullable=False))
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tax', persistence.types.ExactDecimal(),
                                      server_default='0', nullable=False))
        batch_op.add_column(sa.Column('tax_exempt', sa.Boolean(), server_default='0',
                                      nullable=False))
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('taxes', _json(), nullable=True))
        batch_op.add_column(sa.Column('filter_id', sqlmodel.sql.sqltypes.AutoString(length=255),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.drop_column('filter_id')
        batch_op.drop_column('taxes')
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_column('tax_exempt')
        batch_op.drop_column('tax')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('tax_exempt')
        batch_op.drop_column('taxes')
    with op.batch_alter_table('entities', schema=None) as batch_op:
        batch_op.drop_column('taxes')
    op.drop_table('invoice_taxes')
    op.drop_table('tax_rates')
