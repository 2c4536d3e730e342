"""Shared test configuration (kept minimal: fixtures live next to the tests that use them)."""

from __future__ import annotations

import os

from hypothesis import settings

# CI machines are slower and noisier than a developer's: no per-example deadline there.
settings.register_profile("ci", deadline=None, print_blob=True)
settings.register_profile("dev", deadline=1000)
settings.load_profile("ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev")
