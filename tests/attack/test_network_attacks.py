"""Attacks from the network, run as an attacker would: DNS answered by the attacker's server,
rogue XMPP servers as separate processes, ``jet-trio`` run as a user runs it. Each case asserts
what the attacker saw: no ``<auth>``, no credential bytes, not even the account name."""

from __future__ import annotations

import pytest

from .conftest import ACCOUNT, DOMAIN, HOST, PASSWORD, Netns, secrets_in

CLIENT = f"_xmpp-client._tcp.{DOMAIN}"
CLIENT_TLS = f"_xmpps-client._tcp.{DOMAIN}"
ENV = {"JET_TRIO_ACCOUNT": ACCOUNT, "JET_TRIO_PASSWORD": PASSWORD}


def assert_saw_nothing(log: bytes) -> None:
    assert secrets_in(log) == [], log


def test_direct_tls_with_only_plain_srv_records_sends_no_credential(
    attacker_net: Netns,
) -> None:
    """The domain publishes only ``_xmpp-client``; the attacker's server there offers SCRAM
    and PLAIN without STARTTLS. ``--direct-tls`` must then require STARTTLS, not log in."""
    attacker_net.dns({CLIENT: [(10, 0, 5222, HOST + ".")]})
    log = attacker_net.rogue(5222, "plain-scram")
    ran = attacker_net.jet_trio(
        "plugins", "--direct-tls", "--login-timeout", "20", "--json", env=ENV
    )
    assert ran.returncode == 4, ran.stderr  # TLS
    assert "STARTTLS" in ran.one_json()["message"]
    seen = log.read_bytes()
    assert b"<stream:stream" in seen  # the attacker was contacted ...
    assert_saw_nothing(seen)  # ... and learnt nothing


def test_direct_tls_port_reset_falls_back_only_to_starttls(attacker_net: Netns) -> None:
    """The attacker resets the direct-TLS port so that the client falls back to the plain
    record, where it waits with SCRAM: the fallback still requires STARTTLS."""
    attacker_net.dns({CLIENT_TLS: [(10, 0, 5223, HOST + ".")], CLIENT: [(10, 0, 5222, HOST + ".")]})
    reset = attacker_net.rogue(5223, "reset")
    log = attacker_net.rogue(5222, "plain-scram")
    ran = attacker_net.jet_trio(
        "plugins", "--direct-tls", "--login-timeout", "20", "--json", env=ENV
    )
    assert ran.returncode == 4, ran.stderr
    assert b"connection" in reset.read_bytes()  # the direct-TLS target was tried first
    message = ran.one_json()["message"]
    assert f"{HOST}:5223" in message and "STARTTLS" in message
    assert_saw_nothing(log.read_bytes())


def test_starttls_default_with_a_stripping_server_sends_no_credential(
    attacker_net: Netns,
) -> None:
    attacker_net.dns({CLIENT: [(10, 0, 5222, HOST + ".")]})
    log = attacker_net.rogue(5222, "plain-scram")
    ran = attacker_net.jet_trio("plugins", "--json", env=ENV)
    assert ran.returncode == 4, ran.stderr
    assert_saw_nothing(log.read_bytes())


@pytest.mark.parametrize("behaviour", ["silent", "pre-header-silent", "trickle"])
def test_stalling_server_is_left_in_bounded_time_for_the_next_target(
    attacker_net: Netns, behaviour: str
) -> None:
    """Two SRV targets that stall: each attempt ends after its stage bound (a third of the
    login timeout), the second target is tried, and the whole login stays within the bound."""
    attacker_net.dns({CLIENT: [(10, 0, 5222, HOST + "."), (20, 0, 5224, HOST + ".")]})
    first = attacker_net.rogue(5222, behaviour)
    second = attacker_net.rogue(5224, behaviour)
    ran = attacker_net.jet_trio("plugins", "--login-timeout", "9", "--json", env=ENV)
    assert ran.returncode == 3, ran.stderr  # connection
    error = ran.one_json()
    assert error["reason"] == "connection"
    message = error["message"]
    stage = "stream features" if behaviour == "trickle" else "stream header"
    assert f"{HOST}:5222 did not complete the {stage}" in message, message
    assert f"{HOST}:5224 did not complete the {stage}" in message, message
    assert b"connection" in first.read_bytes() and b"connection" in second.read_bytes()
    assert ran.seconds < 9 + 20  # the bound, plus starting Python twice on a loaded machine
    assert_saw_nothing(first.read_bytes() + second.read_bytes())


@pytest.mark.parametrize("direct", [False, True], ids=["starttls", "direct-tls"])
def test_server_option_to_a_rogue_plain_server_sends_no_credential(
    attacker_net: Netns, direct: bool
) -> None:
    """``--server`` skips the SRV lookup, not the rule."""
    attacker_net.dns({})  # only the address of the host
    log = attacker_net.rogue(5222, "plain-scram")
    flags = ["--direct-tls"] if direct else []
    ran = attacker_net.jet_trio("plugins", "--server", f"{HOST}:5222", *flags, "--json", env=ENV)
    assert ran.returncode == 4, ran.stderr
    assert_saw_nothing(log.read_bytes())
