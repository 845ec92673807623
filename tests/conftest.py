"""Shared test configuration."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

REPO_ROOT = Path(__file__).resolve().parent.parent
# Third-party vectors copied from ../shared/vectors (see tests/vectors/README.md).
VECTORS_DIR = Path(os.environ.get("PERPBFT_VECTORS", REPO_ROOT / "tests" / "vectors"))

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")
