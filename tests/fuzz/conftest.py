"""Hypothesis profiles of the fuzzing campaigns (see ``tests/fuzz/__init__.py``).

They are not *loaded* here (that would change every other test of the session too): each fuzz
target builds its settings from one of them with :func:`tests.fuzz.fuzz`.

``fuzz-ci``
    The default: small example counts, no deadline (CI machines are noisy), the example database
    kept so that a failure found once is replayed first next time.
``fuzz-local``
    Selected with ``JET_TRIO_FUZZ=large``: the large campaign (about 100 times the CI counts), with
    a generous per-example deadline so that a hang shows up as a failure.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("fuzz-ci", deadline=None, print_blob=True, suppress_health_check=_SLOW_OK)
settings.register_profile(
    "fuzz-local",
    deadline=timedelta(seconds=10),
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)
