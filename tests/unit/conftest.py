"""Unit tests of the pure domain rules (docs/billing-rules.md): no database, no broker, no
clock."""
