"""The HTTP API (``/v1``) on FastAPI: one router per resource (``web/routers/``), the
customer portal (``web/portal.py``), one error shape (``web/errors.py``). Handlers parse,
authorize, call the service layer (or enqueue usage for the ingest workers), and render.
No SQL, no pricing here.

Every endpoint but ``/healthz`` needs ``Authorization: Bearer <API key>``. Errors have one
shape: ``{"error": {"code", "message", "field"}}``. A command (subscribe, cancel, …) is
applied once however often it is retried with the same ``Idempotency-Key``; a retry gets
the first answer again, and another request with that key is refused (422
``idempotency_key_reused``; services/idempotency.py).
"""

from __future__ import annotations

from fastapi import FastAPI

from web import errors, schemas
from web.portal import router as portal
from web.routers import (
    alerts,
    billruns,
    credits,
    customers,
    health,
    invoices,
    payments,
    portal_links,
    subscriptions,
    usage,
)

ROUTERS = (health, usage, customers, invoices, subscriptions, billruns, credits, alerts,
           payments, portal_links)


def create_app() -> FastAPI:
    app = FastAPI(
        title="usage-billing", version=_version(),
        description="Send usage, manage customers and subscriptions, read invoices and "
                    "estimated charges. Every endpoint but /healthz needs an API key "
                    "(`Authorization: Bearer …`, from `billing api-keys create NAME`).",
        responses=schemas.ERRORS,
    )
    errors.install(app)
    for module in ROUTERS:
        app.include_router(module.router)
    app.include_router(portal)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("usage-billing")
    except PackageNotFoundError:
        return "0"
