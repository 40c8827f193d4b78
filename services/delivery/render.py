"""A readable invoice: HTML and plain text rendered from Jinja2 templates.

The input is the invoice JSON document (``domain.documents.invoice_document``, optionally with
``id``). Amounts arrive as exact decimal strings and are formatted with Babel at exactly the
currency's ISO 4217 minor digits (never through a float, never rounded further: a unit price
with more digits than the currency keeps them all). Periods are stored with an exclusive end;
they are shown as the first and the last *included* day, and the column says so.

Labels are English; ``locale`` decides how numbers, amounts and dates are written.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation, localcontext
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_time
from babel.numbers import (
    NumberPattern,
    format_currency,
    format_decimal,
    format_percent,
    parse_pattern,
)
from jinja2 import Environment, PackageLoader, StrictUndefined

from domain.catalog import Model, Tier, UsageCharge
from domain.money import ROUNDING, minor_units
from domain.units import Unit, price_per, scaled_quantity
from services.delivery.labels import labels

__all__ = [
    "email_subject",
    "format_amount",
    "render_html",
    "render_text",
]

HTML_TEMPLATE = "invoice.html.j2"
TEXT_TEMPLATE = "invoice.txt.j2"


def _environment(*, autoescape: bool) -> Environment:
    return Environment(
        loader=PackageLoader("services.delivery", "templates"),
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@cache
def _html_env() -> Environment:
    return _environment(autoescape=True)


@cache
def _text_env() -> Environment:
    return _environment(autoescape=False)


# ---------------------------------------------------------------------------------------------
# Numbers, amounts, dates


def to_decimal(value: object, field: str) -> Decimal:
    """An exact decimal from the document's string (or an int/Decimal); floats are refused."""
    if isinstance(value, bool | float):
        raise TypeError(f"{field}: must be a decimal string, got {type(value).__name__}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{field}: {value!r} is not a decimal number") from None
    else:
        raise TypeError(f"{field}: must be a decimal string, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{field}: {value!r} is not a finite number")
    return result


@cache
def _currency_pattern(locale: str) -> NumberPattern:
    return parse_pattern(Locale.parse(locale).currency_formats["standard"])


def _fraction_digits(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def format_amount(value: object, currency: str, locale: str = "en_US") -> str:
    """``value`` written in ``currency`` for ``locale`` with Babel, exactly: at least the
    currency's ISO 4217 minor digits ("€49.00", "¥1,500", "49,00 €"), and every further
    digit the value has (a unit price of 0.000002 stays 0.000002)."""
    amount = to_decimal(value, "amount")
    if amount.is_zero():
        amount = abs(amount)  # never "-€0.00"
    digits = minor_units(currency)
    pattern = copy.copy(_currency_pattern(locale))
    pattern.frac_prec = (digits, max(digits, _fraction_digits(amount)))
    with localcontext(ROUNDING):  # Babel quantizes in the thread's context (28 digits)
        return format_currency(amount, currency.upper(), format=pattern, locale=locale,
                               currency_digits=False)


def format_quantity(value: object, locale: str = "en_US") -> str:
    """A quantity with the locale's separators, every digit kept ("1,532", "0.0001")."""
    quantity = to_decimal(value, "quantity")
    if locale == "en_US":  # what Babel writes, without its cost (a page writes dozens)
        return english_quantity(quantity)
    with localcontext(ROUNDING):
        return format_decimal(quantity, locale=locale, decimal_quantization=False)


def english_quantity(quantity: Decimal) -> str:
    """Babel's en_US ``format_decimal(q, decimal_quantization=False)``, 20 times faster:
    comma thousands, every significant digit, no trailing zero."""
    text = format(quantity, ",f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_in_unit(value: object, unit: Unit | None, locale: str = "en_US") -> str:
    """A quantity in a meter's display unit: "12.5M tokens", "1,250 requests"; without a
    unit the plain quantity."""
    quantity = to_decimal(value, "quantity")
    if unit is None:
        return format_quantity(quantity, locale)
    number, label = scaled_quantity(quantity, unit)
    joiner = "" if unit.suffix is not None else " "
    return f"{format_quantity(number, locale)}{joiner}{label}"


def format_price_in_unit(value: object, currency: str, unit: Unit | None,
                         locale: str = "en_US") -> str:
    """A unit price quoted per the display unit: "$2.00 / 1M tokens"; without a unit the
    price of one unit."""
    price = to_decimal(value, "unit_price")
    if unit is None:
        return format_amount(price, currency, locale)
    return f"{format_amount(price_per(price, unit), currency, locale)} / {unit.per_label}"


def written_price(price: Decimal, currency: str, unit: Unit | None) -> str:
    """A unit price as the customer reads it: "$2.00 / 1M tokens", "€0.01 per unit"."""
    text = format_price_in_unit(price, currency, unit)
    return text if unit is not None else f"{text} per unit"


def pricing_lines(charge: UsageCharge, currency: str, unit: Unit | None) -> tuple[str, ...]:
    """How a usage charge is priced, in words, in the meter's display unit."""

    def q(value: Decimal) -> str:
        return format_in_unit(value, unit)

    def tier_text(t: Tier, lower: Decimal | None) -> str:
        span = (f"above {q(lower)}" if t.up_to is None and lower is not None
                else "every unit" if t.up_to is None else f"up to {q(t.up_to)}")
        parts = []
        if t.unit_price or not t.flat_price:
            parts.append(written_price(t.unit_price, currency, unit))
        if t.flat_price:
            parts.append(f"{format_amount(t.flat_price, currency)} flat")
        return f"{span}: {' + '.join(parts)}"

    lines: list[str] = []
    if charge.model is Model.UNIT:
        lines.append(written_price(charge.unit_price, currency, unit))
    elif charge.model is Model.PACKAGE:
        lines.append(f"{format_amount(charge.package_price, currency)} per package of "
                     f"{q(charge.package_size)} (a started package counts)")
    else:
        lines.append({Model.GRADUATED: "graduated: each tier prices the units that fall in it",
                      Model.VOLUME: "volume: the tier the total reaches prices every unit",
                      Model.BANDS: "bands: one flat price for the band the total falls in",
                      }[charge.model])
        lower: Decimal | None = None
        for tier in charge.tiers:
            if charge.model is Model.BANDS:
                span = (f"above {q(lower)}" if tier.up_to is None and lower is not None
                        else "any amount" if tier.up_to is None else f"up to {q(tier.up_to)}")
                lines.append(f"{span}: {format_amount(tier.flat_price, currency)}")
            else:
                lines.append(tier_text(tier, lower))
            lower = tier.up_to
    if charge.included:
        lines.append(f"the first {q(charge.included)} included")
    if charge.minimum is not None:
        lines.append(f"at least {format_amount(charge.minimum, currency)}")
    if charge.cap is not None:
        lines.append(f"at most {format_amount(charge.cap, currency)}")
    return tuple(lines)


def _parse_date(value: object, field: str) -> date:
    if not isinstance(value, str):
        raise TypeError(f"{field}: must be an ISO date string, got {type(value).__name__}")
    return date.fromisoformat(value)


def _parse_instant(value: object, field: str) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"{field}: must be an ISO 8601 instant, got {type(value).__name__}")
    instant = datetime.fromisoformat(value)
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def format_period(start: date, end_exclusive: date, locale: str = "en_US") -> str:
    """The first and the last included day: [2026-03-01, 2026-04-01) → "Mar 1, 2026 – Mar 31,
    2026"; a one-day period shows one date."""
    last = end_exclusive - timedelta(days=1)
    first = format_date(start, format="medium", locale=locale)
    if last <= start:
        return first
    return f"{first} – {format_date(last, format='medium', locale=locale)}"


def _format_issued(instant: datetime, timezone: str | None, locale: str) -> str:
    zone = ZoneInfo(timezone) if timezone else UTC
    local = instant.astimezone(zone)
    label = timezone or "UTC"
    return (f"{format_date(local.date(), format='medium', locale=locale)}, "
            f"{format_time(local, format='short', locale=locale)} ({label})")


# ---------------------------------------------------------------------------------------------
# The view the templates lay out


@dataclass(frozen=True)
class LineView:
    type: str
    charge: str
    period: str
    quantity: str
    unit_price: str  # "" when the document has no unit price for the line
    amount: str
    pricing: str = ""  # how it is priced, in words ("graduated: …"), when not a unit price


@dataclass(frozen=True)
class Party:
    name: str | None
    id: str
    address: tuple[str, ...] = ()
    tax_id: str | None = None
    email: str | None = None
    logo: str | None = None  # a data: URI

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})" if self.name and self.name != self.id else self.id


def _party(document: Mapping[str, Any], key: str, id_key: str, name: str | None) -> Party:
    """A party of the invoice from its document's ``seller`` / ``buyer`` details."""
    details = document.get(key) if isinstance(document.get(key), Mapping) else {}
    assert isinstance(details, Mapping)

    def text(field: str) -> str | None:
        value = details.get(field)
        return value if isinstance(value, str) and value else None

    address = text("address")
    return Party(name or text("legal_name"), _text(document, id_key),
                 tuple(ln.strip() for ln in address.splitlines() if ln.strip()) if address
                 else (), text("tax_id"), text("email"), text("logo"))


@dataclass(frozen=True)
class InvoiceView:
    lang: str
    title: str
    draft: bool
    number: str | None
    reference: str
    entity: Party
    customer: Party
    subscription: str
    boundary: str
    issued: str
    status: str
    final: bool
    currency: str
    lines: tuple[LineView, ...]
    show_unit_price: bool
    subtotal: str
    discount: str
    total: str
    credit: str | None  # the amount owed to the customer when the total is negative
    adjusted: bool  # it carries adjustment lines (late usage of earlier periods)
    taxes: tuple[tuple[str, str], ...] = ()  # ("Tax vat-de 19 % on €42.49", "€8.07")
    tax_exempt: bool = False
    words: Mapping[str, str] = field(default_factory=lambda: labels("en"))
    due: str | None = None  # the due date, once sent
    payment: str | None = None  # "open", "paid", "partially paid", "void", … in the language
    stamp: str | None = None  # PAID, VOID, OVERDUE
    discount_label: str = ""  # "Discount (10 %)"
    payment_instructions: tuple[str, ...] = ()
    footer: tuple[str, ...] = ()
    payments: tuple[tuple[str, str, str], ...] = ()  # (date, how, amount)
    credits: str | None = None  # what prepaid credits paid (SPEC §12), as a deduction
    credit_grants: str = ""  # which grants paid it: "welcome 25.00, promo 4.80"
    amount_due: str | None = None  # what is left to pay, when credits paid part of it

    @property
    def totals(self) -> list[tuple[str, str, str]]:
        """The rows under the lines: (label, amount, CSS class)."""
        w = self.words
        rows = [(w["subtotal"], self.subtotal, "subtotal")]
        if self.discount_label:  # no row for no discount
            rows.append((self.discount_label, self.discount, "discount"))
        rows += [*((label, amount, "tax") for label, amount in self.taxes),
                 (w["total_credit"] if self.credit else w["total"], self.total, "total")]
        if self.credits is not None and self.amount_due is not None:
            label = w["credits"] + (f" ({self.credit_grants})" if self.credit_grants
                                    else "")
            rows += [(label, self.credits, "credits"), (w["amount_due"], self.amount_due,
                                                        "amount-due")]
        return rows

    @property
    def total_label(self) -> str:
        return self.words["total_credit"] if self.credit else self.words["total"]

    @property
    def notes(self) -> list[str]:
        notes = []
        if self.adjusted:
            notes.append("Adjustment lines correct an earlier period: usage that arrived after "
                         "its invoice was sent, priced again with the whole period.")
        if self.tax_exempt:
            notes.append(self.words["tax_exempt"])
        if self.credit and self.draft:
            notes.append(f"This invoice is a credit: {self.credit} is owed to the customer; "
                         "once sent, it becomes prepaid credit that pays the next invoices.")
        elif self.credit:
            notes.append(f"This invoice is a credit: {self.credit} became prepaid credit "
                         "that pays the customer's next invoices first.")
        return notes


def _text(document: Mapping[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"invoice document: {key!r} must be a non-empty string, got {value!r}")
    return value


def _charge_label(line: Mapping[str, Any]) -> str:
    """The charge, and for a charge with filters its group (SPEC §13): "tokens — large",
    "tokens — default" for the events no filter matched."""
    charge = _text(line, "charge")
    if line.get("type") == "proration":  # SPEC §14: "base — pro, 21 days charged"
        days = str(line.get("quantity", "")).lstrip("-")
        what = "credited" if str(line.get("quantity", "")).startswith("-") else "charged"
        return f"{charge} — {line.get('plan')}, {days} days {what}"
    if "filter" not in line:
        return charge
    group = line["filter"]
    return f"{charge} — {group if isinstance(group, str) and group else 'default'}"


def invoice_view(
    document: Mapping[str, Any],
    *,
    entity_name: str | None = None,
    customer_name: str | None = None,
    locale: str = "en_US",
    timezone: str | None = None,
    units: Mapping[str, Unit] | None = None,
) -> InvoiceView:
    """Everything the templates show, formatted; raises ValueError/TypeError on a malformed
    document (a float amount, a missing field, an unknown currency)."""
    Locale.parse(locale)  # fail early on an unknown locale
    currency = _text(document, "currency").upper()
    number = document.get("number")
    if number is not None and (not isinstance(number, str) or not number):
        raise ValueError(f"invoice document: 'number' must be a string or null, got {number!r}")
    subscription = _text(document, "subscription")
    boundary = _parse_date(document.get("boundary"), "boundary")
    reference = number or f"{subscription}@{boundary.isoformat()}"
    lines = _lines(document, currency, locale, units or {})
    discount = to_decimal(document.get("discount", "0"), "discount")
    total = to_decimal(document.get("total"), "total")
    status = _text(document, "status")
    final = bool(document.get("final", False))
    draft = number is None
    words = labels(locale)
    percent = document.get("discount_percent")
    return InvoiceView(
        lang=locale.replace("_", "-"),
        title=f"{words['invoice']} {number}" if number else f"{words['draft']} "
                                                           f"{words['invoice'].lower()}",
        draft=draft,
        number=number,
        reference=reference,
        entity=_party(document, "seller", "entity", entity_name),
        customer=_party(document, "buyer", "customer", customer_name),
        words=words,
        **_payment(document, words, locale),
        discount_label="" if not discount else words["discount"] + (
            f" ({_percent(percent, locale)})" if percent else ""),
        payment_instructions=_paragraph(document.get("seller"), "payment_instructions"),
        footer=_paragraph(document.get("seller"), "footer"),
        subscription=subscription,
        boundary=format_date(boundary, format="medium", locale=locale),
        issued=_format_issued(_parse_instant(document.get("issued_at"), "issued_at"), timezone,
                              locale),
        status=status + (", final invoice" if final else ""),
        final=final,
        currency=currency,
        lines=tuple(lines),
        show_unit_price=any(line.unit_price for line in lines),
        subtotal=format_amount(document.get("subtotal"), currency, locale),
        discount=format_amount(-discount, currency, locale),
        total=format_amount(document.get("total"), currency, locale),
        credit=format_amount(-total, currency, locale) if total < 0 else None,
        adjusted=any(line.type == "adjustment" for line in lines),
        **_credits(document, currency, locale),
        taxes=_taxes(document, currency, locale),
        tax_exempt=document.get("tax_exempt") is True,
    )


def _lines(document: Mapping[str, Any], currency: str, locale: str,
           units: Mapping[str, Unit]) -> list[LineView]:
    lines: list[LineView] = []
    raw_lines = document.get("lines")
    if not isinstance(raw_lines, list):
        raise ValueError("invoice document: 'lines' must be a list")
    for i, ln in enumerate(raw_lines):
        if not isinstance(ln, Mapping):
            raise ValueError(f"invoice document: lines[{i}] must be an object")
        unit_price = ln.get("unit_price")
        unit = units.get(str(ln.get("charge")))
        lines.append(LineView(
            type=_text(ln, "type"),
            charge=_charge_label(ln),
            period=format_period(_parse_date(ln.get("period_start"), f"lines[{i}].period_start"),
                                 _parse_date(ln.get("period_end"), f"lines[{i}].period_end"),
                                 locale),
            quantity=format_in_unit(ln.get("quantity"), unit, locale),
            unit_price="" if unit_price is None else format_price_in_unit(unit_price, currency,
                                                                          unit, locale),
            amount=format_amount(ln.get("amount"), currency, locale),
            pricing=str(ln.get("pricing") or ""),
        ))
    return lines


def _paragraph(details: Any, key: str) -> tuple[str, ...]:
    value = details.get(key) if isinstance(details, Mapping) else None
    return tuple(value.splitlines()) if isinstance(value, str) else ()


def _payment(document: Mapping[str, Any], words: Mapping[str, str],
             locale: str) -> dict[str, Any]:
    """The due date, the payment status (with its stamp) and the payments of a sent
    invoice, in the document's language."""
    status = document.get("payment_status")
    if not isinstance(status, str):
        return {}
    currency = _text(document, "currency").upper()
    due = document.get("due_date")
    overdue = document.get("overdue") is True
    stamp = {"paid": words["paid"], "void": words["void"]}.get(status)
    if overdue:
        stamp = words["overdue"]
    payments = tuple(
        (format_date(_parse_date(p.get("date"), "payments.date"), format="medium",
                     locale=locale),
         str(p.get("method", "")).replace("_", " ") + (f" · {p['reference']}"
                                                      if p.get("reference") else ""),
         format_amount(p.get("amount"), currency, locale))
        for p in document.get("payments") or [] if isinstance(p, Mapping))
    return {"due": format_date(_parse_date(due, "due_date"), format="medium", locale=locale)
            if isinstance(due, str) else None,
            "payment": words.get(status, status) + (f", {words['overdue']}" if overdue
                                                    else ""),
            "stamp": stamp.upper() if stamp else None, "payments": payments}


def _taxes(document: Mapping[str, Any], currency: str, locale: str
           ) -> tuple[tuple[str, str], ...]:
    """One row per tax rate: "Tax vat-de (19 %) on €42.49" and its amount."""
    rows = []
    for i, t in enumerate(document.get("taxes") or []):
        if not isinstance(t, Mapping):
            raise ValueError(f"invoice document: taxes[{i}] must be an object")
        rate = format_quantity(t.get("rate"), locale)
        base = format_amount(t.get("base"), currency, locale)
        words = labels(locale)
        rows.append((f"{words['tax']} {_text(t, 'tax')} ({rate} %) {words['on']} {base}",
                     format_amount(t.get("amount"), currency, locale)))
    return tuple(rows)


def _credits(document: Mapping[str, Any], currency: str, locale: str) -> dict[str, Any]:
    """What prepaid credits paid of a sent invoice, and what is left to pay (nothing to
    show when they paid nothing)."""
    paid = to_decimal(document.get("credits", "0"), "credits")
    if not paid:
        return {}
    applied = document.get("credits_applied") or []
    grants = ", ".join(f"{a['grant']} {format_amount(a['amount'], currency, locale)}"
                       for a in applied if isinstance(a, Mapping))
    return {"credits": format_amount(-paid, currency, locale), "credit_grants": grants,
            "amount_due": format_amount(document.get("amount_due"), currency, locale)}


# ---------------------------------------------------------------------------------------------
# Rendering


def _percent(percent: str, locale: str) -> str:
    """``12.5`` → "12.5%" (en), "12,5 %" (de, fr): every digit given is kept."""
    return format_percent(Decimal(percent) / 100, locale=locale, decimal_quantization=False)


def render_html(
    document: Mapping[str, Any],
    *,
    entity_name: str | None = None,
    customer_name: str | None = None,
    locale: str = "en_US",
    timezone: str | None = None,
    units: Mapping[str, Unit] | None = None,
) -> str:
    """The invoice as a self-contained HTML page (inline CSS, every value escaped).

    ``timezone`` (an IANA name, e.g. the entity's) is where the issue time is shown; UTC
    when not given."""
    view = invoice_view(document, entity_name=entity_name, customer_name=customer_name,
                        locale=locale, timezone=timezone, units=units)
    return _html_env().get_template(HTML_TEMPLATE).render(inv=view)


@dataclass(frozen=True)
class _Column:
    title: str
    width: int
    right: bool


def render_text(
    document: Mapping[str, Any],
    *,
    entity_name: str | None = None,
    customer_name: str | None = None,
    locale: str = "en_US",
    timezone: str | None = None,
    units: Mapping[str, Unit] | None = None,
) -> str:
    """The invoice as plain text with aligned columns (the text part of an email)."""
    view = invoice_view(document, entity_name=entity_name, customer_name=customer_name,
                        locale=locale, timezone=timezone, units=units)
    titles = ["Type", "Charge", "Period (both days included)", "Quantity"]
    right = [False, False, False, True]
    if view.show_unit_price:
        titles.append("Unit price")
        right.append(True)
    titles.append(f"Amount ({view.currency})")
    right.append(True)
    rows: list[list[str]] = []
    for ln in view.lines:
        row = [ln.type, ln.charge, ln.period, ln.quantity]
        if view.show_unit_price:
            row.append(ln.unit_price)
        row.append(ln.amount)
        rows.append(row)
    widths = [max([len(t), *(len(r[i]) for r in rows)]) for i, t in enumerate(titles)]
    columns = [_Column(t, w, r) for t, w, r in zip(titles, widths, right, strict=True)]
    table_width = sum(widths) + 2 * (len(widths) - 1)
    pairs = [(label, value) for label, value, _ in view.totals]
    value_width = max(len(v) for _, v in pairs)
    label_width = max(len(label) for label, _ in pairs)
    totals = [f"{label:>{label_width}}  {value:>{value_width}}" for label, value in pairs]
    table_width = max(table_width, *(len(t) for t in totals))
    return _text_env().get_template(TEXT_TEMPLATE).render(
        inv=view, columns=columns, rows=rows, totals=totals, table_width=table_width,
    )


def email_subject(
    document: Mapping[str, Any], *, entity_name: str | None = None, locale: str = "en_US"
) -> str:
    """A one-line subject: "Invoice AC-0001 from Acme: €49.00" ("Draft invoice
    sub-1@2026-03-01 …" for a draft)."""
    view = invoice_view(document, entity_name=entity_name, locale=locale)
    what = f"Invoice {view.number}" if view.number else f"Draft invoice {view.reference}"
    amount = f"a credit of {view.credit}" if view.credit else view.total
    return f"{what} from {view.entity.name or view.entity.id}: {amount}"
