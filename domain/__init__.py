"""The billing rules as pure functions and value objects.

Nothing in here reads a clock, opens a session or talks to a broker: every instant
that matters (`now`, a run instant, an ingestion instant) is a parameter.
"""
