"""The schema. Every idempotency rule of the engine is a unique constraint here:
usage ``key``, ``(entity, local date)`` of a bill run, ``(subscription, boundary)`` of an
invoice, ``message_id`` of a processed command or usage batch."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from persistence.types import ExactDecimal, UTCDateTime

JSONType = JSON().with_variant(JSONB(), "postgresql")


class EntityRow(SQLModel, table=True):
    __tablename__ = "entities"
    id: str = Field(primary_key=True, max_length=255)
    timezone: str
    invoice_prefix: str
    delivery: dict[str, Any] | None = Field(default=None, sa_type=JSONType)  # Delivery
    taxes: list[str] | None = Field(default=None, sa_type=JSONType)  # default rate ids
    profile: dict[str, Any] | None = Field(default=None, sa_type=JSONType)  # Party


class TaxRateRow(SQLModel, table=True):
    """A tax rate of the catalog (SPEC §15), a percent. A changed rate applies to the
    invoices computed afterwards; an invoice keeps the rates it was computed with
    (``invoice_taxes``)."""

    __tablename__ = "tax_rates"
    id: str = Field(primary_key=True, max_length=255)
    rate: Decimal = Field(sa_type=ExactDecimal)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class MeterRow(SQLModel, table=True):
    __tablename__ = "meters"
    id: str = Field(primary_key=True, max_length=255)
    aggregation: str
    property: str | None = None
    # the display unit (domain/units.py): how quantities and prices are written
    unit_name: str | None = Field(default=None, max_length=40)
    unit_per: Decimal | None = Field(default=None, sa_type=ExactDecimal)


class PlanRow(SQLModel, table=True):
    """A plan; its terms are in its versions. A changed plan gets a new version, which new
    subscriptions take; existing ones keep the version they were sold on."""

    __tablename__ = "plans"
    id: str = Field(primary_key=True, max_length=255)
    latest_version: int = 1


class PlanVersionRow(SQLModel, table=True):
    __tablename__ = "plan_versions"
    plan_id: str = Field(primary_key=True, foreign_key="plans.id", max_length=255)
    version: int = Field(primary_key=True)
    currency: str
    interval: str
    definition: dict[str, Any] = Field(sa_type=JSONType)  # domain.catalog.plan_to_dict
    created_at: datetime = Field(sa_type=UTCDateTime)


class PlanMeterRow(SQLModel, table=True):
    """Which meters a plan version charges: what overlap checks, lateness and unbilled
    counts join on."""

    __tablename__ = "plan_meters"
    __table_args__ = (
        ForeignKeyConstraint(["plan_id", "version"],
                             ["plan_versions.plan_id", "plan_versions.version"]),
    )
    plan_id: str = Field(primary_key=True)
    version: int = Field(primary_key=True)
    meter_id: str = Field(primary_key=True, foreign_key="meters.id")


class CustomerRow(SQLModel, table=True):
    __tablename__ = "customers"
    id: str = Field(primary_key=True, max_length=255)
    entity_id: str = Field(foreign_key="entities.id", index=True)
    draft_invoices: bool = False  # the latest setting sent (see DraftSettingRow)
    email: str | None = None
    taxes: list[str] | None = Field(default=None, sa_type=JSONType)  # None: names none
    tax_exempt: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    details: dict[str, Any] | None = Field(default=None, sa_type=JSONType)  # Party


class DraftSettingRow(SQLModel, table=True):
    """Every draft_invoices setting of a customer with the instant it was sent (a
    ``set_draft_invoices`` command, or a catalog file). The setting in force at an instant
    is the latest sent by then, whatever order the messages were processed in."""

    __tablename__ = "draft_settings"
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", index=True)
    sent_at: datetime = Field(sa_type=UTCDateTime)
    value: bool


class SubscriptionRow(SQLModel, table=True):
    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_due", "entity_id", "next_boundary_at"),)
    id: str = Field(primary_key=True, max_length=255)
    customer_id: str = Field(foreign_key="customers.id", index=True)
    entity_id: str = Field(foreign_key="entities.id")
    plan_id: str = Field(foreign_key="plans.id")
    plan_version: int  # the version of the plan it was sold on (plan_versions)
    start: date
    start_at: datetime = Field(sa_type=UTCDateTime)  # b_0 00:00 local
    end: date | None = None  # set by cancel: the end boundary
    end_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    discount: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    sent_at: datetime = Field(sa_type=UTCDateTime)  # when the subscribe was sent
    created_at: datetime = Field(sa_type=UTCDateTime)  # when it was applied
    # The first boundary no bill run has dealt with yet (k, date, its instant): what a run
    # looks at instead of the whole history of the subscription's invoices.
    next_k: int = 0
    next_boundary: date
    next_boundary_at: datetime = Field(sa_type=UTCDateTime)
    # Usage before this instant has been invoiced (the end of the latest period whose
    # invoice was computed): an event dated before it that arrives now is late (SPEC §11).
    closed_until_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PlanChangeRow(SQLModel, table=True):
    """A plan change of a subscription (SPEC §14): from the local date ``since`` (its
    instant ``since_at``) on, it is on this plan version. The subscription's row keeps its
    first plan; these rows, by ``since``, make its plan history. A change on the latest
    change date replaces that row (or deletes it, to call the change off)."""

    __tablename__ = "plan_changes"
    subscription_id: str = Field(primary_key=True, foreign_key="subscriptions.id",
                                 max_length=255)
    since: date = Field(primary_key=True)
    since_at: datetime = Field(sa_type=UTCDateTime)
    plan_id: str = Field(foreign_key="plans.id", max_length=255)
    plan_version: int
    sent_at: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)


class SubscriptionCommandRow(SQLModel, table=True):
    """A cancel or uncancel that was accepted, with the instant it was sent: a
    subscription's end is derived from these in the order they were sent. A command for a
    subscription not created yet is kept too, for when it is."""

    __tablename__ = "subscription_commands"
    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(index=True, max_length=255)
    kind: str  # cancel | uncancel
    sent_at: datetime = Field(sa_type=UTCDateTime)
    message_id: str


class UsageEventRow(SQLModel, table=True):
    """An accepted event. ``batch_seq`` numbers the ingest batch that stored it (on
    PostgreSQL; 0 on SQLite): the rollups have folded every batch up to
    ``usage_fold_state.folded`` (persistence/rollups.py)."""

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_customer_meter_ts", "customer_id", "meter_id", "timestamp"),
        # the batches not folded yet are the newest rows: a BRIN index finds them for almost
        # nothing at insert time (PostgreSQL only; SQLite does not fold)
        Index("ix_usage_batch_seq", "batch_seq", postgresql_using="brin",
              postgresql_with={"autosummarize": "on"}).ddl_if(dialect="postgresql"),
    )
    key: str = Field(primary_key=True, max_length=255)
    customer_id: str
    meter_id: str
    quantity: Decimal = Field(sa_type=ExactDecimal)
    timestamp: datetime = Field(sa_type=UTCDateTime)
    properties: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    ingested_at: datetime = Field(sa_type=UTCDateTime)
    batch_seq: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={
        "server_default": "0"})


# the ingest batches' numbers (PostgreSQL; SQLite has no sequences and does not fold)
USAGE_BATCH_SEQ = Sequence("usage_batch_seq", metadata=SQLModel.metadata)


def _number_other_writers(target: Any, connection: Any, **_: Any) -> None:
    """On PostgreSQL, the trigger that numbers events a writer stored without a batch
    number (persistence/rollups.py), made with the table."""
    if connection.dialect.name == "postgresql":
        from persistence.rollups import NUMBERING_TRIGGER

        for statement in NUMBERING_TRIGGER:
            connection.exec_driver_sql(statement)


event.listen(UsageEventRow.__table__, "after_create", _number_other_writers)  # type: ignore[attr-defined]


class UsageRollupRow(SQLModel, table=True):
    """One UTC hour of one customer's usage of one meter — of its events with the same
    ``dims`` — folded from the events of the batches up to ``usage_fold_state.folded``: what
    the estimate and the portal read instead of the events (PostgreSQL). ``dims`` is ''
    for a meter no filter names (persistence/rollups.py: ``usage_rollup_keys``)."""

    __tablename__ = "usage_rollups"
    customer_id: str = Field(primary_key=True, max_length=255)
    meter_id: str = Field(primary_key=True, max_length=255)
    hour: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    dims: str = Field(default="", primary_key=True, sa_type=Text,
                      sa_column_kwargs={"server_default": ""})
    total: Decimal = Field(sa_type=ExactDecimal)
    events: int = Field(sa_type=BigInteger)
    largest: Decimal = Field(sa_type=ExactDecimal)
    smallest: Decimal = Field(sa_type=ExactDecimal)


class UsageRollupKeysRow(SQLModel, table=True):
    """SPEC §13: the properties a meter's rollups are keyed by, so that they can answer per
    filter group — ``wanted``, every name and value the filters of any plan version on the
    meter list (written with the plan version); ``keyed``, what the rollups are keyed by now
    (NULL: not yet; the fold re-folds the meter when they differ). Both canonical JSON,
    ``{name: [values, sorted]}`` (persistence/rollups.py)."""

    __tablename__ = "usage_rollup_keys"
    meter_id: str = Field(primary_key=True, max_length=255)
    wanted: str = Field(sa_type=Text)
    keyed: str | None = Field(default=None, sa_type=Text)


class UsageRollupHorizonRow(SQLModel, table=True):
    """From which UTC hour on a customer's usage is rolled up: the rollups hold every
    folded event of the customer at or after ``since`` and none before (NULL: none yet).
    ``wanted``: the earliest hour a subscription of the customer asked for; a fold rolls up
    the hours from there and moves ``since`` down to it (persistence/rollups.py)."""

    __tablename__ = "usage_rollup_horizons"
    __table_args__ = (
        # the few customers a fold has to widen (PostgreSQL only; SQLite does not fold)
        Index("ix_usage_rollup_horizons_behind", "customer_id",
              postgresql_where=text("since IS NULL OR wanted < since"))
        .ddl_if(dialect="postgresql"),
    )
    customer_id: str = Field(primary_key=True, max_length=255)
    wanted: datetime = Field(sa_type=UTCDateTime)
    since: datetime | None = Field(default=None, sa_type=UTCDateTime)


class UsageFoldStateRow(SQLModel, table=True):
    """How far the rollups go: every event with ``batch_seq <= folded`` is in them."""

    __tablename__ = "usage_fold_state"
    id: int = Field(primary_key=True)  # always 1
    folded: int = Field(default=-1, sa_type=BigInteger)


class LateUsageRow(SQLModel, table=True):
    """An accepted event that arrived after its period's invoice was computed (SPEC §11),
    with the period it belongs to; ``accounted_by`` is the invoice that billed it — the
    regenerated covering draft, or the later invoice whose adjustment line counts it —
    until then NULL. Proportional to what arrived late, not to history."""

    __tablename__ = "late_usage"
    __table_args__ = (Index("ix_late_usage_open", "subscription_id", "accounted_by"),)
    key: str = Field(primary_key=True, foreign_key="usage_events.key", max_length=255)
    subscription_id: str = Field(foreign_key="subscriptions.id")
    meter_id: str
    period_start: date  # b_j
    period_end: date  # b_(j+1): the boundary of the covering invoice
    ingested_at: datetime = Field(sa_type=UTCDateTime)
    accounted_by: int | None = Field(default=None, foreign_key="invoices.id")


class RejectedUsageRow(SQLModel, table=True):
    """An invalid event, kept with its raw payload and the reason, for an operator to fix
    and re-send."""

    __tablename__ = "rejected_usage"
    id: int | None = Field(default=None, primary_key=True)
    key: str | None = Field(default=None, sa_type=Text, index=True)
    reason: str = Field(sa_type=Text)
    payload: str = Field(sa_type=Text)  # the raw event as JSON text: anything can be stored
    received_at: datetime = Field(sa_type=UTCDateTime)
    message_id: str | None = None


class UsageConflictRow(SQLModel, table=True):
    """A key seen again with another payload: the first stays, this is for an operator."""

    __tablename__ = "usage_conflicts"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(index=True)
    stored_payload: Any = Field(sa_type=JSONType)
    received_payload: Any = Field(sa_type=JSONType)
    received_at: datetime = Field(sa_type=UTCDateTime)


class IngestBatchRow(SQLModel, table=True):
    """One processed ``record_usage`` message with its outcome counts. Its primary key makes
    a redelivered message a no-op."""

    __tablename__ = "ingest_batches"
    message_id: str = Field(primary_key=True)
    received_at: datetime = Field(sa_type=UTCDateTime)
    accepted: int = 0
    duplicate: int = 0
    conflict: int = 0
    rejected: int = 0


class CommandLogRow(SQLModel, table=True):
    """One processed command message (subscribe, cancel, …): a redelivery is a no-op, and a
    refusal is kept with its reason."""

    __tablename__ = "command_log"
    message_id: str = Field(primary_key=True)
    actor: str
    received_at: datetime = Field(sa_type=UTCDateTime)
    outcome: str = ""  # applied | unchanged | refused | pending
    detail: str = Field(default="", sa_type=Text)
    code: str = ""  # a refusal's kind: invalid | not_found | conflict
    field: str | None = Field(default=None, sa_type=Text)


class IdempotencyKeyRow(SQLModel, table=True):
    """An ``Idempotency-Key`` of an API key and the one request it names: the fingerprint
    of its method, path and canonical body, and — once answered — the first answer, which
    a retry gets again. Another request with the key is refused (services/idempotency.py).
    Kept for good, like the command log: a key is never free again."""

    __tablename__ = "idempotency_keys"
    api_key_id: int = Field(primary_key=True)
    key: str = Field(primary_key=True, max_length=255)
    method: str = Field(max_length=16)
    path: str = Field(sa_type=Text)
    fingerprint: str = Field(max_length=64)  # SHA-256, hex
    created_at: datetime = Field(sa_type=UTCDateTime)
    status: int | None = None  # the first answer's status code, once answered
    response: str | None = Field(default=None, sa_type=Text)  # its JSON body


class ApiKeyRow(SQLModel, table=True):
    """An HTTP API key: only its SHA-256 is kept (the key is shown once, at creation)."""

    __tablename__ = "api_keys"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=255)
    prefix: str  # the key's first characters, to tell keys apart in a listing
    key_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PortalLinkRow(SQLModel, table=True):
    """A customer portal link. The link's token is signed (it carries this id, the
    customer and the expiry); this row is what lets an operator revoke it early."""

    __tablename__ = "portal_links"
    id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(foreign_key="customers.id", index=True, max_length=255)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class HttpBatchRow(SQLModel, table=True):
    """A usage batch received over HTTP (queued until the ingest worker records it)."""

    __tablename__ = "http_batches"
    id: str = Field(primary_key=True, max_length=255)  # the ingest message's id
    events: int
    received_at: datetime = Field(sa_type=UTCDateTime)


class InvoiceRow(SQLModel, table=True):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("subscription_id", "boundary", name="uq_invoice_subscription_boundary"),
        UniqueConstraint("entity_id", "number", name="uq_invoice_entity_number"),
    )
    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(foreign_key="subscriptions.id", index=True)
    boundary: date
    plan_version: int  # the version of the subscription's first plan when it was computed
    # SPEC §14: the plan (version) whose recurring lines it carries, in advance — what a
    # later plan change prorates against; NULL when it carries none
    advance_plan_id: str | None = Field(default=None, max_length=255)
    advance_plan_version: int | None = None
    entity_id: str = Field(foreign_key="entities.id")
    customer_id: str = Field(foreign_key="customers.id")
    currency: str
    status: str  # an InvoiceStatus (domain/invoices.py): draft | sent
    number: str | None = None
    final: bool = False
    issued_at: datetime = Field(sa_type=UTCDateTime)
    computed_at: datetime = Field(sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    subtotal: Decimal = Field(sa_type=ExactDecimal)
    discount: Decimal = Field(sa_type=ExactDecimal)
    total: Decimal = Field(sa_type=ExactDecimal)  # subtotal − discount + tax
    tax: Decimal = Field(default=Decimal(0), sa_type=ExactDecimal,
                         sa_column_kwargs={"server_default": "0"})  # Σ of invoice_taxes
    # its customer was tax-exempt when it was computed (the document says so)
    tax_exempt: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    # Once sent: when it is due, whether it was paid (domain/payments.py), and who billed
    # whom as it was then (the seller's and the buyer's legal details: a sent invoice
    # never changes)
    due_date: date | None = None
    payment_status: str | None = Field(default=None, max_length=20)
    parties: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    # SPEC §12: what prepaid credits paid when it was sent (the sum of its applications)
    credits: Decimal = Field(default=Decimal(0), sa_type=ExactDecimal,
                             sa_column_kwargs={"server_default": "0"})


class InvoiceLineRow(SQLModel, table=True):
    __tablename__ = "invoice_lines"
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(
        sa_column=Column(Integer, ForeignKey("invoices.id", ondelete="CASCADE"), index=True,
                         nullable=False)
    )
    type: str
    charge_id: str
    period_start: date
    period_end: date
    quantity: Decimal = Field(sa_type=ExactDecimal)
    amount: Decimal = Field(sa_type=ExactDecimal)
    taxes: list[str] | None = Field(default=None, sa_type=JSONType)  # the rates it carries
    # SPEC §13: a filter's id, "" for a charge's default group, NULL for a charge without
    # filters
    filter_id: str | None = Field(default=None, max_length=255)
    plan_id: str | None = Field(default=None, max_length=255)  # a proration line's plan


class InvoiceTaxRow(SQLModel, table=True):
    """One tax rate of an invoice (SPEC §15) as it was computed: a document never
    computes it again."""

    __tablename__ = "invoice_taxes"
    invoice_id: int = Field(
        sa_column=Column(Integer, ForeignKey("invoices.id", ondelete="CASCADE"),
                         primary_key=True)
    )
    tax_id: str = Field(primary_key=True, max_length=255)
    rate: Decimal = Field(sa_type=ExactDecimal)
    base: Decimal = Field(sa_type=ExactDecimal)
    amount: Decimal = Field(sa_type=ExactDecimal)


class PaymentRow(SQLModel, table=True):
    """A payment recorded against a sent invoice: what was received, when, how. Payments
    are only added; the invoice's ``payment_status`` follows them."""

    __tablename__ = "payments"
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    amount: Decimal = Field(sa_type=ExactDecimal)
    currency: str = Field(max_length=3)
    paid_on: date
    method: str = Field(max_length=40)
    reference: str | None = Field(default=None, max_length=255)
    recorded_at: datetime = Field(sa_type=UTCDateTime)


class InvoiceEventRow(SQLModel, table=True):
    """The outbox of an invoice's status changes (invoice.paid, invoice.voided, …): written
    in the transaction that changes the status, delivered after the commit as a signed
    webhook, in order per invoice, at least once (``dedupe`` makes each change one row)."""

    __tablename__ = "invoice_events"
    __table_args__ = (UniqueConstraint("invoice_id", "dedupe", name="uq_invoice_event"),)
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    type: str = Field(max_length=40)
    dedupe: str = Field(max_length=80)
    payload: dict[str, Any] = Field(sa_type=JSONType)
    created_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="pending", index=True, max_length=10)  # pending|done|failed
    attempts: int = 0
    last_error: str = Field(default="", sa_type=Text)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class CreditGrantRow(SQLModel, table=True):
    """A prepaid credit grant (SPEC §12). What it paid is in its applications; a void sets
    ``voided_at`` once. A grant made from a sent invoice's negative total names it in
    ``source_invoice_id`` (its id is ``credit-{subscription}@{boundary}``)."""

    __tablename__ = "credit_grants"
    __table_args__ = (Index("ix_credit_grants_customer", "customer_id", "currency"),)
    id: str = Field(primary_key=True, max_length=255)
    customer_id: str = Field(foreign_key="customers.id", max_length=255)
    currency: str = Field(max_length=3)
    amount: Decimal = Field(sa_type=ExactDecimal)
    priority: int
    granted_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    voided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    source_invoice_id: int | None = Field(default=None, foreign_key="invoices.id",
                                          unique=True)


class CreditApplicationRow(SQLModel, table=True):
    """The ledger: a grant paying part of a sent invoice, at the instant it was sent. One
    row per (invoice, grant), so a redelivered message or a re-sent run pays nothing
    twice; rows are only ever added."""

    __tablename__ = "credit_applications"
    __table_args__ = (
        UniqueConstraint("invoice_id", "grant_id", name="uq_credit_application"),
    )
    id: int | None = Field(default=None, primary_key=True)
    grant_id: str = Field(foreign_key="credit_grants.id", index=True, max_length=255)
    invoice_id: int = Field(foreign_key="invoices.id")
    amount: Decimal = Field(sa_type=ExactDecimal)
    applied_at: datetime = Field(sa_type=UTCDateTime)


class BillRunRow(SQLModel, table=True):
    """A claimed bill run: one row per (entity, local date), so two schedulers never run it
    twice. Its progress — claimed, sent (its ``bill_run`` message enqueued), done (a run
    found nothing left to issue) — lets every tick send again what is not done."""

    __tablename__ = "bill_runs"
    entity_id: str = Field(primary_key=True, foreign_key="entities.id")
    local_date: date = Field(primary_key=True)
    run_at: datetime = Field(sa_type=UTCDateTime)
    claimed_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="claimed", index=True)  # claimed | sent | done
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CatalogRevisionRow(SQLModel, table=True):
    """A counter moved on whenever an entity is created or changed: a scheduler rebuilds its
    schedule when it moves, instead of reading every entity on every wake."""

    __tablename__ = "catalog_revision"
    id: int = Field(primary_key=True)  # always 1
    revision: int = 0


class SchedulerBeatRow(SQLModel, table=True):
    """What a scheduler process did last (for ``billing status``): when it woke, how many
    entities it schedules, and the next run it waits for."""

    __tablename__ = "scheduler_beats"
    scheduler: str = Field(primary_key=True, max_length=255)  # host:pid
    started_at: datetime = Field(sa_type=UTCDateTime)
    woke_at: datetime = Field(sa_type=UTCDateTime)
    entities: int = 0
    sent: int = 0  # bill_run messages sent at that wake
    next_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_entity: str | None = Field(default=None, max_length=255)
    next_local_date: date | None = None


class InvoiceFailureRow(SQLModel, table=True):
    """An invoice a bill run could not compute (its subscription's data cannot be billed),
    kept with the error for the operator. The rest of its run is issued; the next run tries
    it again, and an invoice issued removes its failure."""

    __tablename__ = "invoice_failures"
    subscription_id: str = Field(primary_key=True, max_length=255)
    boundary: date = Field(primary_key=True)
    run_at: datetime = Field(sa_type=UTCDateTime)  # the latest run that tried it
    error: str = Field(sa_type=Text)
    attempts: int = 1
    first_failed_at: datetime = Field(sa_type=UTCDateTime)
    last_failed_at: datetime = Field(sa_type=UTCDateTime)


class InvoiceCounterRow(SQLModel, table=True):
    """The per-entity sequence of sent invoices, locked while a number is taken."""

    __tablename__ = "invoice_counters"
    entity_id: str = Field(primary_key=True, sa_type=String(255))
    last_number: int = 0


class DeadLetterRow(SQLModel, table=True):
    """A message that failed for good, kept for an operator to inspect and requeue."""

    __tablename__ = "dead_letters"
    message_id: str = Field(primary_key=True)
    queue_name: str
    actor_name: str
    # The message as the broker's JSON text (ASCII, every character escaped), so that any
    # payload can be stored — NUL and lone surrogates included.
    message: str = Field(sa_type=Text)
    error: str = Field(default="", sa_type=Text)
    failed_at: datetime = Field(sa_type=UTCDateTime)


class DeliveryRow(SQLModel, table=True):
    """A sent invoice to deliver, recorded in the transaction that sends it: pending until
    a channel accepts it (done) or refuses it for good (failed)."""

    __tablename__ = "deliveries"
    invoice_id: int = Field(
        sa_column=Column(Integer, ForeignKey("invoices.id", ondelete="CASCADE"),
                         primary_key=True)
    )
    status: str = Field(default="pending", index=True)  # pending | done | failed
    channel: str | None = None
    target: str | None = None
    attempts: int = 0
    last_error: str = Field(default="", sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class AlertRow(SQLModel, table=True):
    """A spend or usage alert (docs/billing-rules.md §18): on one subscription, or on each
    of its customer's (``subscription_id`` None). Deleting it sets ``deleted_at``; its id
    stays taken (the events it fired name it)."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_customer", "customer_id"),)
    id: str = Field(primary_key=True, max_length=255)
    customer_id: str = Field(foreign_key="customers.id", max_length=255)
    subscription_id: str | None = Field(default=None, max_length=255)
    kind: str = Field(max_length=20)  # usage_amount | usage_quantity | credit_balance
    meter_id: str | None = Field(default=None, max_length=255)
    currency: str | None = Field(default=None, max_length=3)
    thresholds: list[str] = Field(sa_type=JSONType)  # decimal strings, increasing
    recurring_step: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    created_at: datetime = Field(sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AlertCrossingRow(SQLModel, table=True):
    """A threshold an alert fired in a period of a subscription — one row per (alert,
    subscription, period, threshold), so a repeated or concurrent evaluation cannot fire
    it twice. A recurring threshold has its number in ``recurring`` (listed: 0); for a
    balance alert ``subscription_id`` and ``period`` are "" and the row is removed when
    the balance is back at or above the threshold (armed again)."""

    __tablename__ = "alert_crossings"
    __table_args__ = (UniqueConstraint("alert_id", "subscription_id", "period", "threshold",
                                       name="uq_alert_crossing"),)
    id: int | None = Field(default=None, primary_key=True)
    alert_id: str = Field(foreign_key="alerts.id", max_length=255)
    subscription_id: str = Field(max_length=255)
    period: str = Field(max_length=10)  # the period's first day, ISO; "" for a balance
    threshold: Decimal = Field(sa_type=ExactDecimal)
    recurring: int = 0
    value: Decimal = Field(sa_type=ExactDecimal)
    crossed_at: datetime = Field(sa_type=UTCDateTime)


class AlertEventRow(SQLModel, table=True):
    """The outbox of ``alert.triggered``: written with the crossings it reports, delivered
    after the commit as a signed webhook (the customer's entity's channel), at least once,
    with the same ``webhook-id`` on every attempt."""

    __tablename__ = "alert_events"
    id: int | None = Field(default=None, primary_key=True)
    alert_id: str = Field(foreign_key="alerts.id", max_length=255, index=True)
    type: str = Field(max_length=40)
    payload: dict[str, Any] = Field(sa_type=JSONType)
    created_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="pending", index=True, max_length=10)  # pending|done|failed
    attempts: int = 0
    last_error: str = Field(default="", sa_type=Text)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class AlertStateRow(SQLModel, table=True):
    """How far alerts are evaluated: the customers of every batch up to ``evaluated`` were
    (PostgreSQL; it follows ``usage_fold_state.folded``). Locked by an evaluation."""

    __tablename__ = "alert_state"
    id: int = Field(primary_key=True)  # always 1
    evaluated: int = Field(default=-1, sa_type=BigInteger)
