"""The shapes of the HTTP API's requests and responses (its OpenAPI document). Amounts and
quantities are decimal strings, never floats."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Model):
    code: str = Field(description="machine-readable: unauthorized, invalid, not_found, "
                                  "conflict, too_large, unavailable, …")
    message: str = Field(description="one line, for a person")
    field: str | None = Field(description="the field it is about, when there is one")


class ErrorBody(Model):
    error: ErrorDetail


class BatchAccepted(Model):
    batch: str = Field(description="the batch id: ask GET /v1/usage/batches/{batch}")
    events: int


class Rejection(Model):
    key: str | None
    reason: str


class BatchStatus(Model):
    batch: str
    status: Literal["queued", "processed"]
    events: int | None
    accepted: int | None
    duplicate: int | None
    conflict: int | None
    rejected: int | None
    rejections: list[Rejection]


class CustomerIn(Model):
    """A customer; an omitted field is cleared, except ``draft_invoices``."""

    entity: str
    email: str | None = None
    draft_invoices: bool | None = Field(
        default=None, description="omitted: unchanged (false for a new customer)")
    legal_name: str | None = Field(default=None, description="the buyer on its invoices")
    address: str | None = Field(default=None, description="lines separated by newlines")
    tax_id: str | None = Field(default=None, description="shown on its invoices, not checked")
    net_terms: int | None = Field(default=None, description="days from issue to due date; "
                                                            "omitted: the entity's")
    locale: str | None = Field(default=None, description="its invoices' language and "
                                                         "number format, e.g. de, ja, pt_BR")
    taxes: list[str] | None = Field(default=None, description="tax rate ids (SPEC §15)")
    tax_exempt: bool | None = None


class Customer(Model):
    id: str
    entity: str
    email: str | None
    draft_invoices: bool
    legal_name: str | None = None
    address: str | None = None
    tax_id: str | None = None
    net_terms: int | None = None
    locale: str | None = None
    taxes: list[str] | None = None
    tax_exempt: bool = False


class SubscriptionIn(Model):
    id: str
    customer: str
    plan: str
    start: str = Field(description="a local date YYYY-MM-DD in the entity's time zone")
    discount: dict[str, Any] | None = Field(
        default=None, description='{"percent": "10"} or {"amount": "5.00"}, with optional '
                                  '"cycles"')


class Subscription(Model):
    id: str
    customer: str
    entity: str
    plan: str
    plan_version: int
    start: str
    end: str | None
    status: Literal["scheduled", "active", "cancelled", "ended"]
    next_boundary: str | None
    next_run: str | None = Field(description="the bill run that issues the next invoice; "
                                   "null once ended, or when overdue (the next tick)")
    discount: dict[str, Any] | None
    created_at: str
    note: str | None = Field(None, description="why the next invoice comes when it does, "
                                               "when that is not obvious")
    plans: list[PlanPeriod] = Field(description="its plan history: the first plan from the "
                                                "start, then each change (SPEC §14)")


class PlanPeriod(Model):
    plan: str
    version: int
    since: str = Field(alias="from", description="the local date it is in force from")


class PlanChangeIn(Model):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    plan: str
    since: str = Field(alias="from", description="the local date YYYY-MM-DD it is in force "
                                                 "from")


class PlanChangePreview(Model):
    change: str = Field(description="what the change would do")
    estimate: Estimate | None


class Line(Model):
    type: Literal["recurring", "usage", "adjustment", "proration"]
    charge: str
    filter: str | None = Field(None, description="SPEC §13: the group of a charge with "
                                                 "filters (null: its default group); absent "
                                                 "for a charge without filters")
    plan: str | None = Field(None, description="SPEC §14: the plan of a proration line")
    period_start: str
    period_end: str
    quantity: str
    amount: str
    taxes: list[str] | None = Field(None, description="the tax rates the line carries")


class Tax(Model):
    tax: str = Field(description="the tax rate's id")
    rate: str = Field(description="a percent, e.g. 19 or 4.875")
    base: str = Field(description="what the rate applies to, after the discount")
    amount: str


class CreditApplied(Model):
    grant: str
    amount: str


class Invoice(Model):
    reference: str = Field(description="its number once sent, SUBSCRIPTION@BOUNDARY for a "
                                       "draft: what every endpoint takes as {ref}")
    entity: str
    customer: str
    subscription: str
    boundary: str
    issued_at: str
    status: Literal["draft", "sent"]
    number: str | None
    final: bool
    currency: str
    lines: list[Line]
    subtotal: str
    discount: str
    taxes: list[Tax] = Field(description="per tax rate, sorted by id (SPEC §15)")
    tax: str
    total: str = Field(description="subtotal − discount + tax")
    credits: str = Field(description="what prepaid credits paid when it was sent (SPEC §12)")
    amount_due: str = Field(description="max(0, total − credits)")
    credits_applied: list[CreditApplied]
    tax_exempt: bool
    due_date: str | None = Field(description="once sent: the issue date plus the net terms")
    payment_status: Literal["open", "partially_paid", "paid", "void", "uncollectible"] | None
    overdue: bool = Field(description="open (or partly paid) past its due date")
    paid: str = Field(description="the sum of the payments recorded")
    payments: list[PaymentOut]
    seller: dict[str, Any] = Field(description="the entity's legal details when it was sent")
    buyer: dict[str, Any] = Field(description="the customer's billing details when it was sent")


class PaymentOut(Model):
    id: int
    amount: str
    date: str
    method: str
    reference: str | None


class PaymentIn(Model):
    amount: str = Field(description='a decimal string, e.g. "100.00"')
    currency: str
    date: str = Field(description="the day it was paid, YYYY-MM-DD")
    method: Literal["bank_transfer", "card", "direct_debit", "cash", "check", "other"] = "other"
    reference: str | None = None


class InvoicePage(Model):
    invoices: list[Invoice]
    next: str | None = Field(description="pass as `after` for the next page; null: the last")


class Estimate(Model):
    subscription: str
    at: str
    boundary: str
    final: bool
    currency: str
    lines: list[Line]
    subtotal: str
    discount: str
    taxes: list[Tax]
    tax: str
    total: str
    credits: str = Field(description="what the customer's prepaid credits would pay if it "
                                     "were sent now, before any other invoice")
    amount_due: str
    pending: list[PendingInvoice] = Field(
        default_factory=list, description="the subscription's invoices due but not issued "
        "yet (their boundary passed; the next bill run issues them), before this estimate")


class PendingInvoice(Model):
    reference: str = Field(description="SUBSCRIPTION@BOUNDARY: the draft or the invoice it "
                                       "becomes keeps this reference")
    status: Literal["pending"]
    subscription: str
    boundary: str
    final: bool
    currency: str
    lines: list[Line]
    subtotal: str
    discount: str
    taxes: list[Tax]
    tax: str
    total: str
    credits: str
    amount_due: str


class CustomerEstimate(Model):
    customer: str
    at: str
    pending: list[PendingInvoice] = Field(
        default_factory=list, description="invoices due but not issued yet (their boundary "
        "passed; the next bill run issues them), computed as that run would")
    estimates: list[Estimate]


class CreditGrantIn(Model):
    id: str = Field(description="unique; ids beginning with credit- are the engine's own")
    customer: str
    currency: str = Field(description="ISO 4217, e.g. USD")
    amount: str = Field(description='a decimal string with at most the currency\'s minor '
                                    'digits, e.g. "100.00"')
    expires_at: str | None = Field(None, description="when what is left expires: an "
                                                     "instant with an offset")
    priority: int | None = Field(None, description="0-100, lower is used first (default 50)")


class AlertIn(Model):
    id: str = Field(description="unique")
    customer: str
    subscription: str | None = Field(None, description="one subscription of the customer; "
                                                        "without it, each of them")
    kind: str = Field(description="usage_amount (the estimated usage amount of the current "
                                  "period), usage_quantity (a meter's usage in it) or "
                                  "credit_balance (the customer's balance, decreasing)")
    meter: str | None = Field(None, description="usage_quantity: the meter")
    currency: str | None = Field(None, description="credit_balance: ISO 4217")
    thresholds: Any = Field(description='decimal strings > 0, strictly increasing, e.g. '
                                        '["50.00", "100.00"]')
    recurring_step: Any = Field(None, description='then every so much after the last, e.g. '
                                                  '"100.00" (not for credit_balance)')


class Alert(Model):
    id: str
    customer: str
    subscription: str | None
    kind: str
    meter: str | None
    currency: str | None
    thresholds: list[str]
    recurring_step: str | None
    created_at: str


class Alerts(Model):
    alerts: list[Alert]


class AlertDeleted(Model):
    id: str
    deleted: bool


class LedgerEntry(Model):
    at: str = Field(description="when the invoice it paid was sent")
    amount: str


class CreditGrant(Model):
    id: str
    customer: str
    currency: str
    amount: str
    used: str
    voided: str
    expired: str
    remaining: str
    priority: int
    granted_at: str
    expires_at: str | None
    voided_at: str | None
    ledger: list[LedgerEntry]


class CreditGrants(Model):
    customer: str
    grants: list[CreditGrant]


class Balance(Model):
    currency: str
    balance: str


class CreditBalance(Model):
    customer: str
    balances: list[Balance]


class PortalLinkIn(Model):
    customer: str
    ttl: str | None = Field(default=None, description='e.g. "12h", "30m", "7d" (default 12h)')


class PortalLink(Model):
    id: str = Field(description="the link's id: DELETE /v1/portal-links/{id} revokes it")
    customer: str
    url: str = Field(description="the page to send the customer to; the token in it is the "
                                 "customer's key to the page until it expires")
    expires_at: str


class Health(Model):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unreachable"]
    broker: Literal["ok", "unreachable", "in-process"]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in {
        400: "the body cannot be read (not UTF-8)",
        401: "no API key, or not a valid one",
        404: "not found",
        409: "refused: it conflicts with what exists (an overlap, an issued invoice, …)",
        413: "the request is too large",
        422: "invalid input (the field is named)",
        503: "the database or the broker is unreachable: try again",
    }.items()
}


class BillRunIn(Model):
    entity: str = Field(min_length=1, max_length=255)
    date: str | None = Field(default=None, description="the run of this local date "
                             "(08:15 local); null or absent: a run at the present instant, "
                             "issuing everything due by now")


class BillRunInvoice(Model):
    reference: str
    subscription: str
    boundary: str
    outcome: str = Field(description="applied (issued by this run), unchanged or refused")
    detail: str
    status: str | None
    final: bool | None
    currency: str | None
    total: str | None


class BillRunDelivery(Model):
    outcome: str
    detail: str


class BillRun(Model):
    entity: str
    run_at: str | None
    issued: int
    issued_before: int
    invoices: list[BillRunInvoice]
    notes: list[str]
    deliveries: list[BillRunDelivery]
