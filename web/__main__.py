"""``python -m web``: the Procfile's ``web`` process — the HTTP API (and the portal) with
uvicorn on ``$PORT`` (default 8000).

With ``BILLING_BROKER_URL`` set, usage goes to that broker for the ``worker`` processes.
Without it (the embedded default, for a local try-out) the web process works alone: an
in-process broker and worker ingest usage, a scheduler thread runs the bill runs, and the
SQLite file of ``BILLING_DATABASE_URL`` is created if needed.
"""

from __future__ import annotations

import os
import threading

from dramatiq import Worker

from persistence import db, migrate
from services import logs
from services.settings import settings
from web.app import create_app
from web.server import serve
from workers.broker import stub_broker, use


def main() -> None:
    config = settings()
    logs.configure(config.log_format, config.log_level)
    db.configure(config.database_url)
    migrate.upgrade()
    if not config.broker_url:  # embedded: this process ingests and bills by itself
        broker = use(stub_broker(max_retries=3))
        Worker(broker, worker_threads=2).start()
        from scheduler.loop import loop

        threading.Thread(target=loop, name="scheduler", daemon=True).start()
    else:
        from workers import broker as broker_module

        use(broker_module.build_broker(config))
    serve(create_app(), host=os.environ.get("HOST", "0.0.0.0"),
          port=int(os.environ.get("PORT", "8000")))


if __name__ == "__main__":
    main()
