"""the customer portal: signed links (revocable), meters' display units

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import persistence.types

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('meters', recreate="never") as batch_op:
        batch_op.add_column(sa.Column('unit_name', sqlmodel.sql.sqltypes.AutoString(length=40),
                                      nullable=True))
        batch_op.add_column(sa.Column('unit_per', persistence.types.ExactDecimal(),
                                      nullable=True))
    op.create_table(
        'portal_links',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('created_at', persistence.types.UTCDateTime(), nullable=False),
        sa.Column('expires_at', persistence.types.UTCDateTime(), nullable=False),
        sa.Column('revoked_at', persistence.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_portal_links_customer_id', 'portal_links', ['customer_id'])


def downgrade() -> None:
    op.drop_index('ix_portal_links_customer_id', table_name='portal_links')
    op.drop_table('portal_links')
    with op.batch_alter_table('meters') as batch_op:
        batch_op.drop_column('unit_per')
        batch_op.drop_column('unit_name')
