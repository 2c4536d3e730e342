"""Fuzzing campaigns (hypothesis) against every parser of untrusted input.

Each test is decorated with :func:`fuzz`, which takes its number of inputs from the hypothesis
profile registered in ``tests/fuzz/conftest.py``: ``fuzz-ci`` by default (small, the whole
directory runs in well under 20 s), ``fuzz-local`` when ``JET_TRIO_FUZZ=large`` is set (about
100 times as many inputs per target). See ``docs/robustness.rst``.
"""

from __future__ import annotations

import os
from typing import Final

from hypothesis import settings

LARGE: Final = os.environ.get("JET_TRIO_FUZZ", "").strip().lower() == "large"
PROFILE: Final = "fuzz-local" if LARGE else "fuzz-ci"


def fuzz(ci: int, local: int | None = None) -> settings:
    """Settings for one fuzz target: ``ci`` inputs by default, ``local`` (100 * ci) when large."""
    count = (local if local is not None else 100 * ci) if LARGE else ci
    return settings(settings.get_profile(PROFILE), max_examples=count)
