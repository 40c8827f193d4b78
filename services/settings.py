"""The one settings object, read from environment variables with safe defaults."""

from __future__ import annotations

from functools import cache

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting is an environment variable ``BILLING_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore")

    # SQLite file by default; e.g. postgresql://user@127.0.0.1:5432/billing for production.
    database_url: str = "sqlite:///billing.db"
    # The production broker: redis://… or amqp://… (RabbitMQ). BILLING_REDIS_URL is read
    # when BILLING_BROKER_URL is unset. Without either, sending a message fails loudly.
    broker_url: str | None = None
    redis_url: str | None = None
    # Redis key namespace of the broker's queues.
    queue_namespace: str = "billing"
    # A worker silent this long is dead: its unacknowledged messages are requeued by the
    # next broker call that runs maintenance, which each call does with this chance (per
    # million). dramatiq's defaults (60 s, 1,000 = 0.1%) took from 70 s to over 25 minutes
    # to bring back a killed worker's messages; these bring it to seconds (see README).
    redis_heartbeat_timeout_ms: int = 15_000
    redis_maintenance_chance: int = 100_000
    # Retries for infrastructure errors (a business error is stored, never retried).
    max_retries: int = 8
    min_backoff_ms: int = 1_000
    max_backoff_ms: int = 300_000
    # A message that runs longer than this is interrupted (and retried).
    time_limit_ms: int = 600_000
    # Export dramatiq metrics for Prometheus from worker processes (port 9191).
    prometheus: bool = True
    # "console" (readable) or "json" (one object per line, for workers).
    log_format: str = "console"
    log_level: str = "INFO"
    # Delivery of sent invoices, for entities that set no channel of their own:
    # "outbox" (files in outbox_dir), "webhook", "email" or "none".
    delivery_channel: str = "outbox"
    outbox_dir: str = "outbox"
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_timeout_s: float = 10.0
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    email_from: str = "billing@localhost"
    # The customer portal: the key its links are signed with (HMAC-SHA256), the address
    # links start with (where the web process is reached), and how long a link lasts.
    portal_secret: str | None = None
    portal_url: str = "http://127.0.0.1:8000"
    portal_link_ttl: str = "12h"
    # The web process closes a connection whose request line and headers are not all in
    # this many seconds after it opened (or after a next request's first byte), and one
    # whose body is not all in this many seconds after its headers: half-sent requests
    # cannot hold its file descriptors (408 when part of a request came).
    http_header_timeout_s: float = 10.0
    http_body_timeout_s: float = 30.0
    # The scheduler sleeps until the next run is due, but at most this many seconds: then
    # it looks whether the catalog changed (a new entity), resends what is lost, beats.
    tick_seconds: float = 30.0
    # The scheduler's Prometheus metrics (0: none).
    scheduler_metrics_port: int = 9192
    # A bill run sent but not done (its bill_run message not processed) is sent again after
    # this many seconds: its message may have been lost.
    bill_run_resend_seconds: float = 300.0
    # The scheduler process folds new usage into the hourly rollups the estimate and the
    # portal read, every this many seconds (0: never; the estimate stays exact, only slower).
    fold_seconds: float = 1.0
    # After a fold, it evaluates the alerts of the customers folded since the last
    # evaluation — at most this often: an alert fires within about this plus a fold turn of
    # the usage's ingest. Lower is quicker, at more of the database's time while usage flows.
    alert_seconds: float = 3.0

    @model_validator(mode="after")
    def _redis_url_names_the_broker(self) -> Settings:
        if not self.broker_url and self.redis_url:
            self.broker_url = self.redis_url
        return self


@cache
def settings() -> Settings:
    return Settings()
