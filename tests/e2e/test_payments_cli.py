"""Payments from the command line, as an operator records them: what is open and
overdue, a payment (never more than is due; a refusal is one line), a void, and the PDF
of an invoice — each command a real ``billing`` process on a small live database."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_operator_errors import assert_one_line_error, billing, build, ok


def numbers(env: dict[str, str], *flags: str) -> list[str]:
    listed = json.loads(ok(billing(env, "invoices", "list", *flags, "--json",
                                   columns=200)).stdout)
    return [i["number"] for i in (listed["invoices"] if isinstance(listed, dict) else listed)]


def test_open_overdue_pay_refuse_and_pdf(tmp_path: Path) -> None:
    env = build(tmp_path)  # EU-000001 and 2 sent on 1 February, due 30 days later: overdue
    assert sorted(numbers(env, "--open")) == ["EU-000001", "EU-000002"]
    assert sorted(numbers(env, "--overdue")) == ["EU-000001", "EU-000002"]
    shown = json.loads(ok(billing(env, "invoices", "show", "EU-000001", "--json")).stdout)
    due = shown["amount_due"]
    too_much = billing(env, "invoices", "pay", "EU-000001", "100000.00", "EUR",
                       "--date", "2026-02-10")
    assert_one_line_error(too_much, "still due")
    other = billing(env, "invoices", "pay", "EU-000001", "1.00", "USD", "--date", "2026-02-10")
    assert_one_line_error(other, "currency")
    draft = billing(env, "invoices", "pay", "s-2@2026-02-01", "1.00", "EUR", "--date",
                    "2026-02-10")
    assert_one_line_error(draft, "draft")
    paid = json.loads(ok(billing(env, "invoices", "pay", "EU-000001", due, "EUR", "--date",
                                 "2026-02-10", "--method", "bank_transfer",
                                 "--reference", "TX-1", "--json")).stdout)
    assert (paid["payment_status"], paid["paid"]) == ("paid", due)
    assert numbers(env, "--open") == numbers(env, "--overdue") == ["EU-000002"]
    assert_one_line_error(billing(env, "invoices", "void", "EU-000001"), "payments")
    voided = json.loads(ok(billing(env, "invoices", "void", "EU-000002", "--json")).stdout)
    assert (voided["number"], voided["payment_status"]) == ("EU-000002", "void")
    assert numbers(env, "--open") == numbers(env, "--overdue") == []
    pdf = tmp_path / "EU-000001.pdf"
    ok(billing(env, "invoices", "show", "EU-000001", "--pdf", "--out", str(pdf)))
    assert pdf.read_bytes().startswith(b"%PDF")
