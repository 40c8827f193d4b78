"""Unit tests of the pure domain rules (SPEC.md): no database, no broker, no clock."""

from __future__ import annotations

import sys
from pathlib import Path

# `.venv/bin/pytest` does not put the project root on sys.path; the domain package lives there.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCENARIOS = Path("/work/shared/scenarios")
