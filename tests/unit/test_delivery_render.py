"""The readable invoice (services.delivery.render): what a customer reads must be the
document's exact numbers, formatted for the currency and locale."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.delivery.render import (
    email_subject,
    format_amount,
    format_period,
    render_html,
    render_text,
)
from tests.documents import sample_document

document = sample_document


def _squeeze(text: str) -> str:
    """Collapse ASCII whitespace only: the no-break spaces Babel writes are kept."""
    return re.sub(r"[ \t\r\n]+", " ", text).strip(" \t\r\n")


class Cells(HTMLParser):
    """The text of every element that has a class, by class; and all the text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_class: dict[str, list[str]] = {}
        self.text: list[str] = []
        self._open: list[str | None] = []
        self.tags: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("br", "meta"):
            return
        cls = dict(attrs).get("class")
        self._open.append(cls)
        if cls is not None:
            self.by_class.setdefault(cls, []).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("br", "meta") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for cls in self._open:
            if cls is not None:
                self.by_class[cls][-1] += data

    def cell(self, cls: str) -> list[str]:
        return [_squeeze(t) for t in self.by_class.get(cls, [])]

    @property
    def all_text(self) -> str:
        return _squeeze(" ".join(self.text))


def test_html_shows_number_lines_and_exact_totals() -> None:
    html = render_html(document(), entity_name="Acme AS", customer_name="Customer Seven")
    cells = Cells(html)

    assert cells.cell("number") == ["AC-0007"]
    assert cells.cell("entity") == ["Acme AS (acme)"]
    assert cells.cell("customer") == ["Customer Seven (customer-7)"]
    assert cells.cell("type") == ["recurring", "usage"]
    assert cells.cell("charge") == ["base", "tokens"]
    assert cells.cell("quantity") == ["1", "1,532"]
    assert cells.cell("amount") == ["€49.00", "€1.53"]
    # The stored end is exclusive; the invoice shows the last included day.
    assert cells.cell("period") == ["Mar 1, 2026 – Mar 31, 2026", "Feb 1, 2026 – Feb 28, 2026"]
    assert cells.cell("subtotal") == ["€50.53"]
    assert cells.cell("discount") == ["-€1.53"]
    assert cells.cell("total") == ["€49.00"]
    assert cells.cell("unit-price") == []  # not derivable from the document: no column
    assert "Unit price" not in cells.all_text
    assert "both days included" in cells.all_text
    assert "DRAFT" not in cells.all_text


def test_jpy_has_no_decimals() -> None:
    cells = Cells(render_html(document(currency="JPY")))
    assert cells.cell("amount") == ["¥1,000", "¥500"]
    assert cells.cell("total") == ["¥1,500"]
    assert cells.cell("discount") == []  # no discount: no row (issue #25)
    text = render_text(document(currency="JPY"))
    assert "¥1,500" in text and "1,500.00" not in text


def test_a_draft_says_draft_and_has_no_number() -> None:
    doc = document(number=None)
    cells = Cells(render_html(doc))
    assert cells.cell("number") == []
    assert "DRAFT" in cells.all_text
    assert "sub-42@2026-03-01" in cells.all_text
    text = render_text(doc)
    assert text.startswith("DRAFT INVOICE")
    assert "Number:        DRAFT" in text


def test_final_invoice_is_labelled() -> None:
    assert "Final invoice" in Cells(render_html(document(final=True))).all_text
    assert "Final invoice" in render_text(document(final=True))


def test_html_escapes_every_value() -> None:
    evil = '<script>alert("x")</script>'
    doc = document() | {"customer": "c&<1>"}
    html = render_html(doc, entity_name=evil, customer_name=evil)
    assert "<script>" not in html
    cells = Cells(html)
    assert "script" not in cells.tags
    assert cells.cell("entity") == [f"{evil} (acme)"]
    assert cells.cell("customer") == [f"{evil} (c&<1>)"]


def test_locale_formats_amounts_and_dates() -> None:
    cells = Cells(render_html(document(), locale="de_DE"))
    assert cells.cell("total") == ["49,00\xa0€"]
    assert cells.cell("quantity") == ["1", "1.532"]
    assert cells.cell("period")[0] == "01.03.2026 – 31.03.2026"
    assert 'lang="de-DE"' in render_html(document(), locale="de_DE")


def test_unit_price_column_when_the_document_has_unit_prices() -> None:
    doc = document()
    doc["lines"][1]["unit_price"] = "0.000002"
    cells = Cells(render_html(doc))
    assert cells.cell("unit-price") == ["", "€0.000002"]  # every digit, none rounded away
    assert "Unit price" in render_text(doc)


def test_text_has_the_same_facts_in_aligned_columns() -> None:
    text = render_text(document(), entity_name="Acme AS", timezone="Europe/Oslo")
    assert text.startswith("INVOICE AC-0007\n")
    assert "From:          Acme AS (acme)" in text
    assert "Issued:        Mar 1, 2026, 8:15\u202fAM (Europe/Oslo)" in text
    lines = text.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("Type"))
    table = lines[header: header + 4]  # header, rule, two lines
    assert [ln.split()[1] for ln in table[2:]] == ["base", "tokens"]
    assert "Mar 1, 2026 – Mar 31, 2026" in table[2]
    assert len({len(ln) for ln in table}) == 1  # right-aligned amounts end together
    assert table[2].endswith("€49.00") and table[3].endswith("€1.53")
    totals = [ln for ln in lines if ln.strip().startswith(("Subtotal", "Discount", "Total"))]
    assert [ln.split()[-1] for ln in totals] == ["€50.53", "-€1.53", "€49.00"]
    assert len({len(ln) for ln in totals}) == 1


def test_email_subject() -> None:
    assert email_subject(document(), entity_name="Acme") == "Invoice AC-0007 from Acme: €49.00"
    assert email_subject(document(number=None)) == (
        "Draft invoice sub-42@2026-03-01 from acme: €49.00")


@pytest.mark.parametrize(("value", "currency", "locale", "expected"), [
    ("49.00", "EUR", "en_US", "€49.00"),
    ("1500", "JPY", "en_US", "¥1,500"),
    ("1500.250", "KWD", "en_US", "KWD1,500.250"),  # 3 minor digits, trailing zero kept
    ("1234567.89", "USD", "en_US", "$1,234,567.89"),
    ("-0.00", "EUR", "en_US", "€0.00"),
    ("0.0005", "USD", "en_US", "$0.0005"),
    ("49.00", "EUR", "fr_FR", "49,00\xa0€"),
    (Decimal("7"), "EUR", "en_US", "€7.00"),
    (7, "EUR", "en_US", "€7.00"),
])
def test_format_amount(value: object, currency: str, locale: str, expected: str) -> None:
    assert format_amount(value, currency, locale) == expected


@given(st.decimals(min_value=-10**12, max_value=10**12, places=6, allow_nan=False,
                   allow_infinity=False))
def test_format_amount_is_exact(value: Decimal) -> None:
    shown = format_amount(value, "USD")
    assert Decimal(shown.replace("$", "").replace(",", "")) == value


def test_floats_and_malformed_documents_are_refused() -> None:
    with pytest.raises(TypeError):
        format_amount(49.0, "EUR")
    with pytest.raises(TypeError):
        render_html(document() | {"total": 49.0})
    with pytest.raises(ValueError):
        render_html(document() | {"total": "forty-nine"})
    with pytest.raises(ValueError):
        render_html(document() | {"currency": "XYZ"})


def test_one_day_period() -> None:
    assert format_period(date(2026, 3, 1), date(2026, 3, 2)) == "Mar 1, 2026"


@settings(max_examples=2000)
@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=Decimal("-1e30"),
                   max_value=Decimal("1e30"), places=None) | st.sampled_from(
    [Decimal(x) for x in ("0", "-0", "1.00", "-1.50", "1E+3", "1.2E-7", "0.10", "1E-20")]))
def test_the_english_fast_path_writes_what_babel_writes(value: Decimal) -> None:
    from decimal import localcontext

    from babel.numbers import format_decimal

    from services.delivery.render import ROUNDING, english_quantity

    with localcontext(ROUNDING):  # as format_quantity calls Babel
        babel = format_decimal(value, locale="en_US", decimal_quantization=False)
    assert english_quantity(value) == babel
