"""Prepaid credits (SPEC §12): granting, voiding, paying sent invoices, balances.

Credits move only when an invoice is sent: ``settle`` runs in the transaction that numbers
the invoices (``services.sending``), locks the customers' usable grants (in id order), and
appends to the ledger what each grant pays — so two invoices of one customer sent at once
by two workers never spend the same credit twice, and a redelivered message pays nothing
twice (the ledger is unique per invoice and grant).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy.orm import Session

from domain.credits import (
    NEGATIVE_TOTAL_PRIORITY,
    Balance,
    Grant,
    Ledger,
    allocate,
    balances_by_currency,
    ledger,
    negative_total_grant_id,
    parse_grant,
)
from domain.documents import grant_document
from domain.money import EXACT, format_money
from domain.validation import Invalid, check_text
from persistence import catalog as catalog_repo
from persistence import credits as credits_repo
from persistence.credits import Application
from persistence.db import unit_of_work
from services.commands import Outcome, applied, invalid, not_found, refused, unchanged


@dataclass(frozen=True)
class Sent:
    """An invoice being sent, as credits see it."""

    invoice_id: int
    subscription: str
    boundary: date
    customer: str
    currency: str
    total: Decimal


def settle(session: Session, sent: Sequence[Sent], at: datetime) -> dict[int, Decimal]:
    """SPEC §12 for invoices sent at ``at``, in the order given (a customer's invoices take
    credits one after the other): a positive total is paid by the customer's usable grants
    in its currency; a negative total becomes a grant of priority 0. What each invoice's
    grants paid, by invoice id."""
    paying = [s for s in sent if s.total > 0]
    credits: dict[int, Decimal] = {}
    applications: list[Application] = []
    if paying:
        grants = credits_repo.usable(session, {s.customer for s in paying}, at, lock=True)
        used = credits_repo.used(session, [g.id for g in grants])
        remaining: dict[str, Decimal] = {}
        by_account: dict[tuple[str, str], list[Grant]] = defaultdict(list)
        with localcontext(EXACT):
            for g in grants:
                remaining[g.id] = g.amount - used.get(g.id, Decimal(0))
                by_account[(g.customer, g.currency)].append(g)
            for s in paying:
                account = by_account.get((s.customer, s.currency), [])
                paid = allocate(s.total, [Balance(g, remaining[g.id]) for g in account], at)
                for grant_id, amount in paid:
                    remaining[grant_id] -= amount
                    applications.append(Application(grant_id, s.invoice_id, amount, at))
                if paid:
                    credits[s.invoice_id] = sum((a for _, a in paid), Decimal(0))
    negatives = [
        (Grant(negative_total_grant_id(s.subscription, s.boundary), s.customer, s.currency,
               -s.total, at, priority=NEGATIVE_TOTAL_PRIORITY), s.invoice_id)
        for s in sent if s.total < 0]
    credits_repo.add_many(session, negatives)
    credits_repo.apply(session, applications, credits)
    return credits


# ---------------------------------------------------------------------------- commands


def do_grant(session: Session, now: datetime, data: Any) -> Outcome:
    """Create a grant, granted at ``now``; refused (naming the field) when its customer is
    unknown, its id taken or reserved, its amount or currency invalid, or it expires by
    ``now``."""
    try:
        request = parse_grant(data)
    except Invalid as exc:
        return invalid(exc)
    if catalog_repo.customer(session, request.customer) is None:
        return not_found(f"{request.customer!r} is not a known customer", "customer")
    if request.expires_at is not None and request.expires_at <= now:
        return refused(f"expires_at {request.expires_at.isoformat()} is not later than the "
                       f"grant ({now.isoformat()})", "invalid", "expires_at")
    grant = Grant(request.id, request.customer, request.currency, request.amount, now,
                  request.expires_at, request.priority)
    if not credits_repo.add(session, grant):
        return refused(f"grant id {request.id!r} is taken", "conflict", "id")
    return applied(f"granted {request.amount} {request.currency} to {request.customer} "
                   f"as {request.id}")


def do_void(session: Session, now: datetime, grant_id: Any) -> Outcome:
    """Void a grant at ``now``: it pays nothing sent from then on; what it paid stays
    paid. Voiding a voided or expired grant changes nothing."""
    if not isinstance(grant_id, str) or not grant_id:
        return refused(f"must be a grant id, got {grant_id!r}", "invalid", "grant")
    try:
        check_text(grant_id, "grant")
    except Invalid as exc:
        return invalid(exc)
    grant = credits_repo.get(session, grant_id, lock=True)
    if grant is None:
        return not_found(f"{grant_id!r} is not a known credit grant", "grant")
    if grant.voided_at is not None:
        return unchanged(f"{grant_id} was voided at {grant.voided_at.isoformat()}")
    if grant.expires_at is not None and grant.expires_at <= now:
        return unchanged(f"{grant_id} expired at {grant.expires_at.isoformat()}")
    credits_repo.void(session, grant_id, now)
    return applied(f"{grant_id} voided")


# ---------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class GrantView:
    grant: Grant
    ledger: Ledger
    applications: tuple[tuple[datetime, Decimal], ...]

    def document(self) -> dict[str, Any]:
        """The grant as the API and ``--json`` show it: its ledger, its terms and each
        payment it made."""
        g = self.grant

        def iso(at: datetime | None) -> str | None:
            return None if at is None else at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

        return {**grant_document(g, self.ledger), "priority": g.priority,
                "granted_at": iso(g.granted_at), "expires_at": iso(g.expires_at),
                "voided_at": iso(g.voided_at),
                "ledger": [{"at": iso(at), "amount": format_money(amount, g.currency)}
                           for at, amount in self.applications]}


def grant_views(session: Session, at: datetime, *, customer: str | None = None,
                grant_id: str | None = None) -> list[GrantView]:
    """Grants with their ledger at ``at`` (a customer's, one, or all), sorted by id."""
    if grant_id is not None:
        one = credits_repo.get(session, grant_id)
        grants = [] if one is None else [one]
    elif customer is not None:
        grants = credits_repo.of_customers(session, [customer])
    else:
        grants = credits_repo.all_grants(session)
    paid = credits_repo.applications(session, [g.id for g in grants])
    return [GrantView(g, ledger(g, paid.get(g.id, []), at), tuple(paid.get(g.id, [])))
            for g in grants]


def balances(session: Session, customer: str, at: datetime) -> dict[str, Decimal]:
    """A customer's balance per currency at ``at`` (SPEC §12)."""
    return balances_by_currency([(v.grant, v.ledger) for v in
                                 grant_views(session, at, customer=customer)], at)


def estimate(session: Session, customer: str, currency: str, total: Decimal,
             at: datetime) -> Decimal:
    """What the customer's credits would pay of an invoice of ``total`` sent at ``at``
    before any other (the preview's ``credits``, SPEC §12)."""
    if total <= 0:
        return Decimal(0)
    views = grant_views(session, at, customer=customer)
    account = [Balance(v.grant, v.ledger.remaining) for v in views
               if v.grant.currency == currency]
    with localcontext(EXACT):
        return sum((a for _, a in allocate(total, account, at)), Decimal(0))


def grants(at: datetime, *, customer: str | None = None) -> list[GrantView]:
    """``grant_views`` in a transaction of its own (the CLI's and the API's reads)."""
    with unit_of_work() as session:
        if customer is not None and catalog_repo.customer(session, customer) is None:
            raise Invalid("customer", f"{customer!r} is not a known customer")
        return grant_views(session, at, customer=customer)


def grant(grant_id: str, at: datetime) -> GrantView | None:
    with unit_of_work() as session:
        found = grant_views(session, at, grant_id=grant_id)
    return found[0] if found else None


def balance(customer: str, at: datetime) -> dict[str, Decimal]:
    with unit_of_work() as session:
        if catalog_repo.customer(session, customer) is None:
            raise Invalid("customer", f"{customer!r} is not a known customer")
        return balances(session, customer, at)
