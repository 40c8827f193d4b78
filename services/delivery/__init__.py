"""Invoice delivery: a readable invoice (HTML and text) and the channels that send it.

- :mod:`services.delivery.render`: ``render_html`` / ``render_text`` / ``email_subject``.
- :mod:`services.delivery.channels`: ``send_webhook`` (Standard Webhooks signatures),
  ``send_email`` (SMTP, text + HTML), ``write_outbox`` (files in a directory), each returning
  a :class:`Result` that says whether a failure is worth retrying.

Nothing here touches the database or the broker: the caller decides when to deliver, keeps
the attempts, and retries while ``Result.retry`` is true.
"""

from services.delivery.channels import (
    Result,
    SmtpSettings,
    send_email,
    send_webhook,
    sign,
    webhook_body,
    webhook_id_for,
    write_outbox,
)
from services.delivery.render import email_subject, format_amount, render_html, render_text

__all__ = [
    "Result",
    "SmtpSettings",
    "email_subject",
    "format_amount",
    "render_html",
    "render_text",
    "send_email",
    "send_webhook",
    "sign",
    "webhook_body",
    "webhook_id_for",
    "write_outbox",
]
