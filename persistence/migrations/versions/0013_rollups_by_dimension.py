"""rollups by dimension (SPEC §13): ``usage_rollups.dims`` in the key, and what each
meter's rollups are keyed by

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

Existing rollups keep their rows, with ``dims`` '' (keyed by nothing). The names and
values the filters of existing plan versions list go into ``usage_rollup_keys.wanted``, with
``keyed`` NULL: the first fold re-folds those meters; until then their estimates read the
events, as before.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
import sqlmodel
from alembic import op

import persistence.types

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def _rollups_table(*key: str) -> None:
    op.create_table(
        'usage_rollups',
        sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('meter_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('hour', persistence.types.UTCDateTime(), nullable=False),
        *([sa.Column('dims', sa.Text(), server_default='', nullable=False)]
          if 'dims' in key else []),
        sa.Column('total', persistence.types.ExactDecimal(), nullable=False),
        sa.Column('events', sa.BigInteger(), nullable=False),
        sa.Column('largest', persistence.types.ExactDecimal(), nullable=False),
        sa.Column('smallest', persistence.types.ExactDecimal(), nullable=False),
        sa.PrimaryKeyConstraint(*key),
    )


def _wanted(bind: sa.engine.Connection) -> dict[str, str]:
    """Per meter, the names and values the filters of the stored plan versions list
    (``persistence.rollups.keys_text``'s canonical JSON)."""
    keys: dict[str, dict[str, set[str]]] = {}
    for (definition,) in bind.execute(sa.text('SELECT definition FROM plan_versions')):
        plan = json.loads(definition) if isinstance(definition, str) else definition
        for charge in plan.get('charges', []):
            for f in charge.get('filters') or []:
                for name, values in f['match'].items():
                    keys.setdefault(charge['meter'], {}).setdefault(name, set()).update(values)
    return {meter: json.dumps({n: sorted(v) for n, v in named.items()}, sort_keys=True,
                              separators=(',', ':'), ensure_ascii=False)
            for meter, named in keys.items()}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':  # keep the rows: no table rewrite
        op.add_column('usage_rollups', sa.Column('dims', sa.Text(), server_default='',
                                                 nullable=False))
        op.drop_constraint('usage_rollups_pkey', 'usage_rollups', type_='primary')
        op.create_primary_key('usage_rollups_pkey', 'usage_rollups',
                              ['customer_id', 'meter_id', 'hour', 'dims'])
    else:  # SQLite never folds: its rollups are empty
        op.drop_table('usage_rollups')
        _rollups_table('customer_id', 'meter_id', 'hour', 'dims')
    keys = op.create_table(
        'usage_rollup_keys',
        sa.Column('meter_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('wanted', sa.Text(), nullable=False),
        sa.Column('keyed', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('meter_id'),
    )
    rows = [{'meter_id': meter, 'wanted': wanted} for meter, wanted in _wanted(bind).items()]
    if rows:
        op.bulk_insert(keys, rows)


def downgrade() -> None:
    op.drop_table('usage_rollup_keys')
    # rows of one hour with different dims would collide: start the rollups over
    op.drop_table('usage_rollups')
    _rollups_table('customer_id', 'meter_id', 'hour')
    op.execute('UPDATE usage_fold_state SET folded = -1')
