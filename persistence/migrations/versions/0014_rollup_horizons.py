"""rollup horizons (issue #21): from which hour on each customer's usage is rolled up, and
from which hour its subscriptions want it

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

Until now every folded event was rolled up: each customer with rollups gets the hour of its
first rollup row as its horizon (the rollups hold every folded event from there on), and
each customer with a subscription wants its usage from the hour of its earliest start,
which the first fold rolls up.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import persistence.types

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'usage_rollup_horizons',
        sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('wanted', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('since', persistence.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('customer_id'),
    )
    if op.get_bind().dialect.name == 'postgresql':  # SQLite never folds
        op.create_index('ix_usage_rollup_horizons_behind', 'usage_rollup_horizons',
                        ['customer_id'], postgresql_where=sa.text(
                            'since IS NULL OR wanted < since'))
        op.execute(
            "INSERT INTO usage_rollup_horizons (customer_id, wanted, since) "
            "SELECT coalesce(r.customer_id, s.customer_id), "
            "least(r.since, s.wanted), r.since "
            "FROM (SELECT customer_id, min(hour) AS since FROM usage_rollups "
            "      GROUP BY customer_id) AS r "
            "FULL JOIN (SELECT customer_id, date_trunc('hour', min(start_at), 'UTC') AS wanted"
            "           FROM subscriptions GROUP BY customer_id) AS s "
            "ON s.customer_id = r.customer_id")


def downgrade() -> None:
    # without horizons every folded event is rolled up: start the rollups over
    op.drop_table('usage_rollup_horizons')
    op.execute('DELETE FROM usage_rollups')
    op.execute('UPDATE usage_fold_state SET folded = -1')
