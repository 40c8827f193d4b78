"""How the ``web`` process serves the app: uvicorn, configured in one place (``python -m
web`` and the tests that need a real server use the same settings)."""

from __future__ import annotations

from typing import Any

import uvicorn
from fastapi import FastAPI


def config(app: FastAPI, *, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for the app on ``host:port`` (``options`` override them)."""
    settings: dict[str, Any] = {"log_config": None, "proxy_headers": True}
    settings.update(options)
    return uvicorn.Config(app, host=host, port=port, **settings)


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Serve until the process is told to stop."""
    uvicorn.Server(config(app, host=host, port=port)).run()
