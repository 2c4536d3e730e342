"""The options of an OMEMO session, checked in one place for the prepared and the full session
(jet_trio_omemo._prepared.check_options)."""

from __future__ import annotations

import math

import pytest

from jet_trio_omemo._manager import TrustPolicy
from jet_trio_omemo._prepared import OmemoError, check_options
from jet_trio_omemo._xmlbase import OLDMEMO, TWOMEMO


@pytest.mark.parametrize("trust", ["btbv", "manual", TrustPolicy.BTBV, TrustPolicy.MANUAL])
def test_trust_policies_by_name_or_member(trust: object) -> None:
    assert check_options(trust, (OLDMEMO,), 60.0) == str(getattr(trust, "value", trust))


@pytest.mark.parametrize(
    ("trust", "namespaces", "period", "message"),
    [
        ("tofu", (OLDMEMO,), 60.0, "unknown trust policy"),
        (5, (OLDMEMO,), 60.0, "unknown trust policy"),
        ("btbv", (), 60.0, "non-empty subset"),
        ("btbv", (OLDMEMO, "urn:other"), 60.0, "non-empty subset"),
        ("btbv", (TWOMEMO,), 0.0, "positive number"),
        ("btbv", (TWOMEMO,), -1.0, "positive number"),
        ("btbv", (TWOMEMO,), math.inf, "positive number"),
        ("btbv", (TWOMEMO,), math.nan, "positive number"),
    ],
)
def test_bad_options_are_refused(
    trust: object, namespaces: tuple[str, ...], period: float, message: str
) -> None:
    with pytest.raises(OmemoError, match=message):
        check_options(trust, namespaces, period)
