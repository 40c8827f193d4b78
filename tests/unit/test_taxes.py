"""Taxes (SPEC §15) as pure rules: the rates of a line, the base a discount leaves, one
rounding per rate, half away from zero; and the invariants over random invoices."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.catalog import Plan, RecurringCharge
from domain.invoices import Line, Terms, compose_invoice, totals
from domain.money import minor_units
from domain.periods import Interval
from domain.subscriptions import Discount
from domain.taxes import TaxAmount, TaxPolicy, invoice_taxes, parse_tax_ids, parse_tax_rates
from domain.validation import Invalid

D = Decimal


def test_the_rates_of_a_line_charge_then_customer_then_entity() -> None:
    entity_only = TaxPolicy({"a": D(1)}, entity=("a",))
    assert entity_only.rates_of(None) == ("a",)
    assert entity_only.rates_of(()) == ()  # a charge with `taxes: []`
    assert entity_only.rates_of(("b",)) == ("b",)
    customer = TaxPolicy({}, entity=("a",), customer=("c", "d"))
    assert customer.rates_of(None) == ("c", "d")
    assert customer.rates_of(("b",)) == ("b",)
    assert TaxPolicy({}, entity=("a",), customer=()).rates_of(None) == ()
    exempt = TaxPolicy({}, entity=("a",), customer=("c",), exempt=True)
    assert exempt.rates_of(("b",)) == ()


def test_lagos_coupon_case() -> None:
    """Fees 100 / 50 / 30 / 20 at 10 / 0 / 20 / 20 %, a 10.00 discount: taxes 19.00."""
    lines = [(D("100.00"), ("t10",)), (D("50.00"), ("t0",)), (D("30.00"), ("t20",)),
             (D("20.00"), ("t20",))]
    rates = {"t10": D(10), "t0": D(0), "t20": D(20)}
    taxes = invoice_taxes(lines, D("200.00"), D("10.00"), rates, "USD")
    assert taxes == (TaxAmount("t0", D(0), D("47.50"), D("0.00")),
                     TaxAmount("t10", D(10), D("95.00"), D("9.50")),
                     TaxAmount("t20", D(20), D("47.50"), D("9.50")))
    assert sum(t.amount for t in taxes) == D("19.00")


@pytest.mark.parametrize(("amount", "tax"), [("0.25", "0.13"), ("-0.25", "-0.13"),
                                             ("0.23", "0.12"), ("-0.23", "-0.12")])
def test_a_half_rounds_away_from_zero(amount: str, tax: str) -> None:
    taxes = invoice_taxes([(D(amount), ("half",))], D(amount), D(0), {"half": D(50)}, "USD")
    assert taxes[0].amount == D(tax)


def test_the_base_is_never_rounded_before_the_tax() -> None:
    """books 10.00 at 7 % under 15 % off a 64.99 subtotal: base 8.4997… (shown 8.50), tax
    0.59498… → 0.59 (0.60 had the base been rounded first)."""
    taxes = invoice_taxes([(D("10.00"), ("r",))], D("64.99"), D("9.75"), {"r": D(7)}, "EUR")
    assert (taxes[0].base, taxes[0].amount) == (D("8.50"), D("0.59"))


def test_no_discount_on_a_credit_and_a_credit_of_tax() -> None:
    result = totals([Line("adjustment", "x", date(2026, 1, 1), date(2026, 2, 1), D(-1),
                          D("-15.00"), ("vat",))], Discount(percent=D(50)), 0, "EUR",
                    {"vat": D(19)})
    assert (result.discount, result.taxes[0].amount, result.total) == (
        D("0.00"), D("-2.85"), D("-17.85"))


def test_jpy_and_kwd_round_to_their_minor_units() -> None:
    assert invoice_taxes([(D("1005"), ("c",))], D("1005"), D(0), {"c": D(10)},
                         "JPY")[0].amount == D("101")
    assert invoice_taxes([(D("1.005"), ("v",))], D("1.005"), D(0), {"v": D(5)},
                         "KWD")[0].amount == D("0.050")


def test_an_exempt_customer_has_no_tax_and_the_invoice_says_so() -> None:
    plan = Plan("p", "EUR", Interval.MONTH, (RecurringCharge("fee", D("10.00"), ("vat",)),))
    policy = TaxPolicy({"vat": D(19)}, entity=("vat",), exempt=True)
    invoice = compose_invoice(Terms(date(2026, 1, 1), None, plan), 0, {}, tax=policy)
    assert invoice is not None
    assert (invoice.taxes, invoice.total, invoice.tax_exempt) == ((), D("10.00"), True)


def test_catalog_errors_name_the_field() -> None:
    with pytest.raises(Invalid, match="duplicate tax id"):
        parse_tax_rates([("taxes[0]", {"id": "a", "rate": "1"}),
                         ("taxes[1]", {"id": "a", "rate": "2"})])
    with pytest.raises(Invalid) as bad:
        parse_tax_rates([("taxes[0]", {"id": "a", "rate": "100.5"})])
    assert bad.value.field == "taxes[0].rate"
    with pytest.raises(Invalid) as unknown:
        parse_tax_ids(["vat", "nope"], "entities[0].taxes", {"vat": 1})
    assert unknown.value.field == "entities[0].taxes[1]"
    with pytest.raises(Invalid, match="listed twice"):
        parse_tax_ids(["vat", "vat"], "taxes", {"vat": 1})


currencies = st.sampled_from(["USD", "JPY", "KWD"])
rate_values = st.decimals(min_value=0, max_value=100, places=3)


@st.composite
def invoices(draw: st.DrawFn) -> tuple[str, list[Line], dict[str, Decimal], Discount | None]:
    currency = draw(currencies)
    digits = minor_units(currency)
    rates = {f"r{i}": draw(rate_values) for i in range(draw(st.integers(1, 4)))}
    lines = []
    for i in range(draw(st.integers(1, 8))):
        units = draw(st.integers(-10**7, 10**7))
        taxes = tuple(draw(st.lists(st.sampled_from(sorted(rates)), unique=True, max_size=3)))
        lines.append(Line("usage", f"c{i}", date(2026, 1, 1), date(2026, 2, 1), D(1),
                          D(units).scaleb(-digits), taxes))
    discount = draw(st.one_of(
        st.none(),
        st.builds(lambda p: Discount(percent=p), st.decimals(min_value="0.01", max_value=100,
                                                            places=2)),
        st.builds(lambda u: Discount(amount=D(u).scaleb(-digits)),
                  st.integers(1, 10**6))))
    return currency, lines, rates, discount


@given(invoices())
def test_total_is_subtotal_less_discount_plus_each_rate_within_half_a_minor_unit(
        invoice: tuple[str, list[Line], dict[str, Decimal], Discount | None]) -> None:
    currency, lines, rates, discount = invoice
    result = totals(lines, discount, 0, currency, rates)
    assert result.total == result.subtotal - result.discount + sum(
        (t.amount for t in result.taxes), D(0))
    subtotal = sum((ln.amount for ln in lines), D(0))
    share = Fraction(1)
    if subtotal > 0 and result.discount > 0:
        share = (Fraction(subtotal) - Fraction(result.discount)) / Fraction(subtotal)
    half = Fraction(1, 2 * 10 ** minor_units(currency))
    assert [t.tax for t in result.taxes] == sorted({r for ln in lines for r in ln.taxes})
    for t in result.taxes:
        exact = sum((Fraction(ln.amount) for ln in lines if t.tax in ln.taxes),
                    Fraction(0)) * share * Fraction(rates[t.tax]) / 100
        assert abs(Fraction(t.amount) - exact) <= half


@given(invoices())
def test_negating_every_line_negates_every_tax(
        invoice: tuple[str, list[Line], dict[str, Decimal], Discount | None]) -> None:
    currency, lines, rates, _ = invoice
    negated = [Line(ln.type, ln.charge, ln.period_start, ln.period_end, ln.quantity,
                    -ln.amount, ln.taxes) for ln in lines]
    taxes = totals(lines, None, 0, currency, rates).taxes
    assert totals(negated, None, 0, currency, rates).taxes == tuple(
        TaxAmount(t.tax, t.rate, -t.base if t.base else t.base,
                  -t.amount if t.amount else t.amount) for t in taxes)
