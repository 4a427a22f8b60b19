"""What some tests need that `make test` builds first: skipped when missing, unless strict.

Run by hand without the set-up, a test whose prerequisite is missing is skipped
with the command that builds it. Under `make test` (and so CI) FRUGAL_STRICT=1
is set: nothing is skipped, and a missing prerequisite fails the test that needs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "models" / "tiny"
ENGINE_PY = REPO / ".venv-engine" / "bin" / "python"
AWQ_PY = REPO / ".venv-awq" / "bin" / "python"


def strict() -> bool:
    return os.environ.get("FRUGAL_STRICT") == "1"


def needs(present: bool, reason: str) -> pytest.MarkDecorator:
    """skipif(not present), except under FRUGAL_STRICT=1, where the test runs (and fails if it is missing)."""
    return pytest.mark.skipif(not present and not strict(), reason=reason)


needs_tiny = needs((TINY / "manifest.json").is_file(), "models/tiny not built (make models)")
needs_engine_venv = needs(ENGINE_PY.exists(), "engine venv (.venv-engine) not installed (make setup)")
needs_awq = needs(AWQ_PY.is_file(), "AWQ venv not built (make .venv-awq/.stamp)")
