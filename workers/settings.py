"""The one settings object, read from environment variables with safe defaults."""

from __future__ import annotations

from functools import cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting is an environment variable ``BILLING_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore")

    # SQLite file by default; e.g. postgresql://user@127.0.0.1:5432/billing for production.
    database_url: str = "sqlite:///billing.db"
    # Redis URL for the production broker; unset means an in-process broker.
    redis_url: str | None = None
    # Redis key namespace of the broker's queues.
    queue_namespace: str = "billing"
    # Retries for infrastructure errors (a business error is stored, never retried).
    max_retries: int = 8
    min_backoff_ms: int = 1_000
    max_backoff_ms: int = 300_000
    # A message that runs longer than this is interrupted (and retried).
    time_limit_ms: int = 600_000
    # "console" (readable) or "json" (one object per line, for workers).
    log_format: str = "console"
    log_level: str = "INFO"
    # Seconds between scheduler ticks.
    tick_seconds: float = 30.0
    # The Procfile's worker: dramatiq processes × threads.
    worker_processes: int = 2
    worker_threads: int = 8


@cache
def settings() -> Settings:
    return Settings()
