"""The use cases of the engine, as functions over a unit of work: ingest a batch,
subscribe, cancel, issue a chunk of invoices, release, regenerate, preview, deliver.

Actors (``workers``), the HTTP API (``web``) and the CLI (``cli``) all call these; none of
them holds a business rule. Services take ``now`` (and a command's ``sent_at``) as
parameters and never enqueue messages: the caller does that after the commit.
"""
