"""``billing customers``: list them, show one with its subscriptions and invoices, create
one, change one."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import connect, count, err, fail, out
from cli.subscriptions import subscription_json, subscriptions_table
from domain.catalog import Customer
from domain.validation import Invalid
from services import catalog as catalog_service
from services import clock
from services import customers as customers_service
from services import invoices as invoices_service
from services import subscriptions as subscriptions_service
from services.delivery import format_amount

app = typer.Typer(help="Customers: list, show, create, update.", no_args_is_help=True)


@app.command("list")
def list_(
    entity: Annotated[str | None, typer.Option(help="Only this entity's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List customers with their entity, draft setting and counts."""
    connect()
    rows = customers_service.listing(entity=entity)
    if as_json:
        out.print_json(json.dumps([vars(c) for c in rows]))
        return
    table = Table(title=count(len(rows), "customer"), title_justify="left")
    for name in ("customer", "entity", "email", "drafts", "subscriptions", "invoices"):
        table.add_column(name, justify="right" if name in ("subscriptions", "invoices")
                         else "left")
    for c in rows:
        table.add_row(c.id, c.entity, c.email or "—", "yes" if c.draft_invoices else "no",
                      str(c.subscriptions), str(c.invoices))
    out.print(table)


@app.command("show")
def show(
    customer: Annotated[str, typer.Argument(help="The customer id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One customer: its settings, its subscriptions (with the next run) and invoices."""
    connect()
    found = customers_service.get(customer)
    if found is None:
        fail(f"no customer {customer!r} (see `billing customers list`)", code=1)
    now = clock.now()
    subs = subscriptions_service.views(now, customer=customer)
    invoices = invoices_service.listing(customer=customer)
    if as_json:
        out.print_json(json.dumps({
            **vars(found),
            "subscriptions": [subscription_json(v) for v in subs],
            "invoices": [{"reference": r.reference, "subscription": r.subscription,
                          "boundary": r.boundary.isoformat(), "status": r.status,
                          "currency": r.currency, "total": str(r.total)} for r in invoices],
        }))
        return
    out.print(f"[bold]{found.id}[/]  entity {found.entity} · email {found.email or '—'} · "
              f"drafts {'yes' if found.draft_invoices else 'no'}", highlight=False)
    out.print(subscriptions_table(subs, count(len(subs), "subscription")))
    table = Table(title=count(len(invoices), "invoice"), title_justify="left")
    for name in ("reference", "subscription", "boundary", "status"):
        table.add_column(name)
    table.add_column("total", justify="right")
    for r in invoices:
        table.add_row(r.reference, r.subscription, r.boundary.isoformat(),
                      r.status + (", final" if r.final else ""),
                      format_amount(r.total, r.currency))
    out.print(table)


def _customer_json(customer: Customer) -> dict[str, Any]:
    return {"id": customer.id, "entity": customer.entity, "email": customer.email,
            "draft_invoices": bool(customer.draft_invoices),
            "taxes": None if customer.taxes is None else list(customer.taxes),
            "tax_exempt": customer.tax_exempt, **customer.details.to_dict()}


def _write(customer_id: str, changes: dict[str, Any], as_json: bool, *, create: bool) -> None:
    connect()
    try:
        written = catalog_service.write_customer(customer_id, changes, clock.now(),
                                                 create=create)
    except LookupError as exc:
        fail(str(exc.args[0]), code=1)
    except Invalid as exc:
        field = (exc.field or "").replace("customers[0].", "")
        known = "is not a known" in exc.message  # an entity or tax rate: refused, not a typo
        fail(f"{field}: {exc.message}" if field else exc.message, code=1 if known else 2)
    except catalog_service.CatalogRefused as exc:
        fail(str(exc).replace("customers[0].", ""), code=1)
    if as_json:
        out.print_json(json.dumps(_customer_json(written)))
        return
    err.print(f"[green]✓[/] customer {escape(written.id)} {'created' if create else 'updated'}"
              f": entity {escape(written.entity)}", highlight=False, soft_wrap=True)


EntityOption = Annotated[str | None, typer.Option("--entity", help="Its billing entity.")]
EmailOption = Annotated[str | None, typer.Option(help="Where its invoices are e-mailed.")]
DraftsOption = Annotated[bool | None, typer.Option(
    "--drafts/--no-drafts", help="Its invoices are drafts to release, or sent at once.")]
TaxOption = Annotated[list[str] | None, typer.Option(
    "--tax", help="A tax rate of the catalog its lines carry (repeat for several); "
                  "--tax '' goes back to the entity's rates.")]
ExemptOption = Annotated[bool | None, typer.Option(
    "--tax-exempt/--no-tax-exempt", help="Exempt from tax (its invoices say so).")]
LegalOption = Annotated[str | None, typer.Option("--legal-name", help="On its invoices.")]
AddressOption = Annotated[str | None, typer.Option(help="On its invoices (lines: \\n).")]
TaxIdOption = Annotated[str | None, typer.Option("--tax-id", help="Its VAT or tax number.")]
TermsOption = Annotated[int | None, typer.Option(
    "--net-terms", help="Days from issue to the due date.", min=0)]
LocaleOption = Annotated[str | None, typer.Option(help="The language of its documents.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the customer as JSON.")]


def _changes(entity: str | None, email: str | None, drafts: bool | None,
             tax: list[str] | None, tax_exempt: bool | None, legal_name: str | None,
             address: str | None, tax_id: str | None, net_terms: int | None,
             locale: str | None) -> dict[str, Any]:
    changes: dict[str, Any] = {
        "entity": entity, "email": email, "draft_invoices": drafts,
        "tax_exempt": tax_exempt, "legal_name": legal_name,
        "address": address.replace("\\n", "\n") if address else address,
        "tax_id": tax_id, "net_terms": net_terms, "locale": locale}
    changes = {k: v for k, v in changes.items() if v is not None}
    if tax is not None:
        changes["taxes"] = [t for t in tax if t] or []
    return changes


@app.command("create")
def create(
    customer: Annotated[str, typer.Argument(help="The new customer's id.")],
    entity: Annotated[str, typer.Option("--entity", help="Its billing entity.")],
    email: EmailOption = None, drafts: DraftsOption = None, tax: TaxOption = None,
    tax_exempt: ExemptOption = None, legal_name: LegalOption = None,
    address: AddressOption = None, tax_id: TaxIdOption = None, net_terms: TermsOption = None,
    locale: LocaleOption = None, as_json: JsonOption = False,
) -> None:
    """Create a customer of an entity (what PUT /v1/customers/{id} does for a new one)."""
    _write(customer, _changes(entity, email, drafts, tax, tax_exempt, legal_name, address,
                              tax_id, net_terms, locale), as_json, create=True)


@app.command("update")
def update(
    customer: Annotated[str, typer.Argument(help="The customer's id.")],
    entity: EntityOption = None,
    email: EmailOption = None, drafts: DraftsOption = None, tax: TaxOption = None,
    tax_exempt: ExemptOption = None, legal_name: LegalOption = None,
    address: AddressOption = None, tax_id: TaxIdOption = None, net_terms: TermsOption = None,
    locale: LocaleOption = None, as_json: JsonOption = False,
) -> None:
    """Change what is given of a customer — its e-mail, drafts, tax rates or exemption,
    legal details — and keep the rest. Invoices already issued keep what they carried."""
    changes = _changes(entity, email, drafts, tax, tax_exempt, legal_name, address, tax_id,
                       net_terms, locale)
    if not changes:
        fail("nothing to change: give at least one option (see `billing customers update "
             "--help`)")
    _write(customer, changes, as_json, create=False)
