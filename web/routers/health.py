"""``/healthz``: whether the web process, its database and its broker answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.operator import status as stores_status
from web import schemas
from workers import actors

router = APIRouter()


@router.get("/healthz", response_model=schemas.Health, tags=["health"])
def healthz() -> dict[str, str]:
    """Whether the web process, its database and its broker answer (no API key)."""
    database = "ok" if stores_status.database_answers() else "unreachable"
    broker = _broker_state()
    status = "ok" if database == "ok" and broker != "unreachable" else "degraded"
    return {"status": status, "database": database, "broker": broker}


def _broker_state() -> str:
    broker: Any = actors.record_usage.broker
    if not hasattr(broker, "client") and not hasattr(broker, "connection"):
        return "in-process"
    try:
        if hasattr(broker, "client"):
            broker.client.ping()
        else:
            broker.get_queue_message_counts("billing")
        return "ok"
    except Exception:
        return "unreachable"
