"""Every actor of the engine, for ``dramatiq workers.actors`` and for applications that
enqueue messages::

    from workers.actors import record_usage
    record_usage.send([{"key": "evt-1", "customer": "c-1", "meter": "api-calls",
                        "quantity": "1", "timestamp": "2026-03-01T10:00:00Z"}])
"""

from workers.deliveries import deliver_invoice
from workers.invoicing import (
    bill_run,
    issue_invoice,
    issue_invoices,
    regenerate_invoice,
    release_invoice,
)
from workers.subscriptions import cancel, set_draft_invoices, subscribe, uncancel
from workers.usage import record_usage

__all__ = [
    "bill_run",
    "cancel",
    "deliver_invoice",
    "issue_invoice",
    "issue_invoices",
    "record_usage",
    "regenerate_invoice",
    "release_invoice",
    "set_draft_invoices",
    "subscribe",
    "uncancel",
]

from persistence import db as _db
from workers import logs as _logs
from workers.settings import settings as _settings

if not _db.is_configured():  # a worker process: configure it from the environment
    _db.configure(_settings().database_url)
    _logs.configure(_settings().log_format, _settings().log_level)
