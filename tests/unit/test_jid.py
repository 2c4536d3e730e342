from __future__ import annotations

import pytest

from jet_trio import JID, InvalidJID


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("alice@example.com./Res", "alice@example.com/Res"),
        ("example.com", "example.com"),
        ("example.com/res/with/slash", "example.com/res/with/slash"),
        ("ÄLICE@exämple.com/ø", "älice@exämple.com/ø"),
        ("a@[::1]/r", "a@[::1]/r"),
        ("a@b/r@s", "a@b/r@s"),
    ],
)
def test_normalisation(raw: str, expected: str) -> None:
    assert str(JID(raw)) == expected


def test_parts_bare_and_equality() -> None:
    j = JID("Bob@Example.org/Phone")
    assert (j.local, j.domain, j.resource) == ("bob", "example.org", "Phone")
    assert j.bare == JID("bob@example.org") and j.bare.is_bare and not j.is_bare
    assert j == JID("bob@EXAMPLE.org/Phone") and hash(j) == hash(JID("bob@example.org/Phone"))
    assert j != JID("bob@example.org/phone")  # resources are case-sensitive
    assert j.bare.with_resource("x") == JID("bob@example.org/x")
    assert JID.from_parts("bob", "example.org", "r") == JID("bob@example.org/r")
    assert JID(j) == j and repr(j) == "JID('bob@example.org/Phone')"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "domainpart is empty"),
        ("@example.com", "localpart is empty"),
        ("a@", "domainpart is empty"),
        ("a@b/", "resourcepart is empty"),
        ("a b@example.com", "localpart"),
        ('a"b@example.com', "localpart"),
        ("a@exa mple.com", "domainpart"),
        ("a@[not-ipv6]", "IPv6"),
        ("a@" + "x" * 64 + ".com", "63"),
        ("x" * 1024 + "@example.com", "1023"),
        ("a@example..com", "empty label"),
    ],
)
def test_invalid(raw: str, why: str) -> None:
    with pytest.raises(InvalidJID, match=why):
        JID(raw)


def test_invalid_is_a_value_error_with_the_input() -> None:
    with pytest.raises(ValueError, match="'a@b/'"):
        JID("a@b/")
    with pytest.raises(InvalidJID, match="must be a string"):
        JID(42)  # type: ignore[arg-type]
