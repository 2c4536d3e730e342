"""Shared test configuration (kept minimal: fixtures live next to the tests that use them)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# CI machines are slower and noisier than a developer's: no per-example deadline there.
settings.register_profile("ci", deadline=None, print_blob=True)
settings.register_profile("dev", deadline=1000)
settings.load_profile("ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev")


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """jet-trio's state (the key of partial-download records) in a directory of the test run,
    never in the user's home; command-line runs inherit it."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-state"))
