"""hourly usage rollups: the batches' numbers, the rollups and how far they go

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Existing events get batch number 0 without rewriting the table (a constant default), and
the fold state starts at -1: the first fold takes them all. Events inserted later without
a number (by a worker still on the older code) are numbered by a trigger.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import persistence.types

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('batch_seq', sa.BigInteger(), server_default='0',
                                      nullable=False))
    op.create_table(
        'usage_rollups',
        sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('meter_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('hour', persistence.types.UTCDateTime(), nullable=False),
        sa.Column('total', persistence.types.ExactDecimal(), nullable=False),
        sa.Column('events', sa.BigInteger(), nullable=False),
        sa.Column('largest', persistence.types.ExactDecimal(), nullable=False),
        sa.Column('smallest', persistence.types.ExactDecimal(), nullable=False),
        sa.PrimaryKeyConstraint('customer_id', 'meter_id', 'hour'),
    )
    op.create_table(
        'usage_fold_state',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('folded', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    if op.get_bind().dialect.name == 'postgresql':
        from persistence.rollups import NUMBERING_TRIGGER

        op.execute(sa.schema.CreateSequence(sa.Sequence('usage_batch_seq')))
        for statement in NUMBERING_TRIGGER:  # numbers what older workers still insert
            op.execute(statement)
        # one scan of the table, during which inserts wait: on a large table, upgrade at a
        # quiet moment (a BRIN index builds at about the speed of a sequential scan)
        op.create_index('ix_usage_batch_seq', 'usage_events', ['batch_seq'],
                        postgresql_using='brin', postgresql_with={'autosummarize': 'on'})


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_usage_batch_seq', table_name='usage_events')
        op.execute('DROP TRIGGER usage_events_batch_number ON usage_events')
        op.execute('DROP FUNCTION usage_events_batch_number()')
        op.execute(sa.schema.DropSequence(sa.Sequence('usage_batch_seq')))
    op.drop_table('usage_fold_state')
    op.drop_table('usage_rollups')
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.drop_column('batch_seq')
