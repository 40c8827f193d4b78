"""The reads and commands of operators — what ``billing`` (and later a console) shows and
does beside billing itself: the scheduler's claims and beats, the state of the stores,
dead letters, rejected events and conflicts, deliveries, the stored catalog.

Each function opens its own transaction, so that no entry point (``cli``, ``web``,
``workers``, ``scheduler``) opens one itself; the SQL stays in ``persistence``.
"""
