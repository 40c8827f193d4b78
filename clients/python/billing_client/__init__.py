"""Python client for the usage-billing HTTP API."""

from billing_client.client import Batch, BillingClient, BillingError, UsageBatcher, __version__

__all__ = ["Batch", "BillingClient", "BillingError", "UsageBatcher", "__version__"]
