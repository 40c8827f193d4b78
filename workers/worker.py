"""The worker process: ``dramatiq workers.worker`` (the Procfile's ``worker``).

Importing this module configures the process from the environment — the database, the
logs, the broker of ``BILLING_BROKER_URL`` — and declares every actor. Applications that
only send messages import ``workers.actors`` instead, which configures nothing.
"""

from __future__ import annotations

from persistence import db
from services import logs
from services.settings import settings
from workers import actors  # noqa: F401  (declares the actors on the broker)
from workers.broker import NoBroker, current_broker

config = settings()
logs.configure(config.log_format, config.log_level)
if isinstance(current_broker(), NoBroker):
    raise SystemExit(f"error: {NoBroker.REASON}")
db.configure(config.database_url)
