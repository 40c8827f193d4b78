"""Broker setup and thin actors: decode a message, open a transaction, call domain and
persistence, commit, then enqueue follow-up messages."""
