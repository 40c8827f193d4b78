"""invoices a business can send: the parties' legal details, due dates, payments, a
payment status and the outbox of an invoice's status changes

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

An invoice sent before this revision is open (or paid, when nothing was due) and due on
the day it was sent: its net terms were never set.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import persistence.types

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('entities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('profile', _json(), nullable=True))
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('details', _json(), nullable=True))
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('due_date', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('payment_status',
                                      sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
        batch_op.add_column(sa.Column('parties', _json(), nullable=True))
    op.create_table(
        'payments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('invoice_id', sa.Integer(), nullable=False),
        sa.Column('amount', persistence.types.ExactDecimal(), nullable=False),
        sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column('paid_on', sa.Date(), nullable=False),
        sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('reference', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('recorded_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_payments_invoice_id'), 'payments', ['invoice_id'])
    op.create_table(
        'invoice_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('invoice_id', sa.Integer(), nullable=False),
        sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('dedupe', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('payload', _json(), nullable=False),
        sa.Column('created_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.Column('updated_at', persistence.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('invoice_id', 'dedupe', name='uq_invoice_event'),
    )
    op.create_index(op.f('ix_invoice_events_invoice_id'), 'invoice_events', ['invoice_id'])
    op.create_index(op.f('ix_invoice_events_status'), 'invoice_events', ['status'])
    bind = op.get_bind()
    invoices = sa.table('invoices', sa.column('id', sa.Integer()),
                        sa.column('status', sa.String()),
                        sa.column('total', persistence.types.ExactDecimal()),
                        sa.column('credits', persistence.types.ExactDecimal()),
                        sa.column('sent_at', persistence.types.UTCDateTime(timezone=True)),
                        sa.column('due_date', sa.Date()),
                        sa.column('payment_status', sa.String()))
    sent = bind.execute(sa.select(invoices.c.id, invoices.c.total, invoices.c.credits,
                                  invoices.c.sent_at).where(invoices.c.status == 'sent')).all()
    for invoice_id, total, credits, sent_at in sent:  # exact decimals, in Python
        bind.execute(invoices.update().where(invoices.c.id == invoice_id).values(
            payment_status='open' if total - credits > 0 else 'paid',
            due_date=sent_at.date() if sent_at is not None else None))


def downgrade() -> None:
    op.drop_index(op.f('ix_invoice_events_status'), table_name='invoice_events')
    op.drop_index(op.f('ix_invoice_events_invoice_id'), table_name='invoice_events')
    op.drop_table('invoice_events')
    op.drop_index(op.f('ix_payments_invoice_id'), table_name='payments')
    op.drop_table('payments')
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_column('parties')
        batch_op.drop_column('payment_status')
        batch_op.drop_column('due_date')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('details')
    with op.batch_alter_table('entities', schema=None) as batch_op:
        batch_op.drop_column('profile')
