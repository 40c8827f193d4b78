"""the pendulum scheduler: the catalog's revision (a new entity wakes it), its beats

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import persistence.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'catalog_revision',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'scheduler_beats',
        sa.Column('scheduler', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('started_at', persistence.types.UTCDateTime(), nullable=False),
        sa.Column('woke_at', persistence.types.UTCDateTime(), nullable=False),
        sa.Column('entities', sa.Integer(), nullable=False),
        sa.Column('sent', sa.Integer(), nullable=False),
        sa.Column('next_run_at', persistence.types.UTCDateTime(), nullable=True),
        sa.Column('next_entity', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('next_local_date', sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint('scheduler'),
    )


def downgrade() -> None:
    op.drop_table('scheduler_beats')
    op.drop_table('catalog_revision')
