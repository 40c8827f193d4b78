"""The web process: the HTTP API (``/v1``) and the customer portal, on FastAPI."""
