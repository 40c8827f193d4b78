"""Unit tests of the pure domain rules (SPEC.md): no database, no broker, no clock."""

from __future__ import annotations

from tests.conftest import SHARED

SCENARIOS = SHARED / "scenarios"
