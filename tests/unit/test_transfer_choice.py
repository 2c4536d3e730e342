"""The envelope and cipher choice as pure functions of what the peer advertises (no I/O)."""

from __future__ import annotations

import warnings

import pytest
from lxml import etree

import jet_trio
from jet_trio import EncryptionFailed, JetError, SecurityError
from jet_trio._jet.cipher import Cipher, TransportSecret
from jet_trio._jet.envelope import DecryptedEnvelope, EnvelopeMethod, Trust
from jet_trio._plugins.hookspecs import PluginConfig, hookimpl
from jet_trio._plugins.manager import PluginManager
from jet_trio._transfer.choice import choose_cipher, choose_envelope, envelope_strength
from jet_trio._xmpp import ns as _ns
from jet_trio._xmpp.disco import DiscoInfo
from jet_trio._xmpp.jid import JID

PEER = JID("bob@example.org/phone")
OMEMO2 = "urn:xmpp:omemo:2"
LEGACY = "eu.siacs.conversations.axolotl"


class Method(EnvelopeMethod):
    def __init__(self, namespace: str, strength: int | None = None, cipher: str = "") -> None:
        self.namespace = namespace
        self.features = (namespace,)
        self.strength = strength
        if cipher:
            self.preferred_cipher = cipher

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        raise NotImplementedError

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        return DecryptedEnvelope(TransportSecret.generate(cipher), sender.bare, Trust.NONE)


def peer_with(*features: str) -> DiscoInfo:
    return DiscoInfo(features=frozenset(features))


def test_the_strongest_common_method_wins_the_first_on_a_tie() -> None:
    omemo2, legacy, other = Method(OMEMO2), Method(LEGACY), Method("urn:x:a")
    twin = Method("urn:x:b")
    chosen, why = choose_envelope([legacy, other, omemo2], peer_with(LEGACY, "urn:x:a"), PEER)
    assert chosen is legacy and "also common: urn:x:a" in why
    assert choose_envelope([other, twin], peer_with("urn:x:a", "urn:x:b"), PEER)[0] is other
    # A method's own strength is read as the interface attribute it is.
    strong = Method("urn:x:b", strength=99)
    assert choose_envelope([omemo2, strong], peer_with(OMEMO2, "urn:x:b"), PEER)[0] is strong
    assert envelope_strength(strong) == 99 and envelope_strength(omemo2) == 30


def test_no_common_method_is_an_encryption_failure() -> None:
    with pytest.raises(EncryptionFailed, match="supports none of our JET envelope methods") as e:
        choose_envelope([Method(OMEMO2)], peer_with(LEGACY), PEER)
    assert e.value.reason == "unsupported-applications"


class _Methods:
    @hookimpl
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:
        return []


def test_cipher_choice_reads_preferred_cipher_as_an_attribute() -> None:
    plugins = PluginManager(PluginConfig(), plugins=[_Methods()], entry_points=False)
    legacy = Method(LEGACY, cipher=_ns.CIPHER_AES128_GCM)
    chosen, why = choose_cipher(plugins, legacy, None, peer_with(LEGACY), PEER)
    assert chosen.urn == _ns.CIPHER_AES128_GCM and "prefers" in why
    chosen, _ = choose_cipher(plugins, legacy, None, peer_with(LEGACY, _ns.CIPHER_AES256_GCM), PEER)
    assert chosen.urn == _ns.CIPHER_AES256_GCM
    chosen, why = choose_cipher(plugins, Method("urn:x:a"), None, peer_with(), PEER)
    assert chosen.urn == _ns.CIPHER_AES256_GCM and why == "the strongest standard cipher"
    with pytest.raises(SecurityError, match="urn:x:unknown"):  # we lack it ourselves
        choose_cipher(plugins, legacy, "urn:x:unknown", peer_with(), PEER)


def test_jet_error_is_one_name_the_old_one_a_deprecated_alias() -> None:
    assert "JETError" not in jet_trio.__all__ and "EncryptionFailed" in jet_trio.__all__
    assert issubclass(EncryptionFailed, JetError)
    with pytest.warns(DeprecationWarning, match="use jet_trio.EncryptionFailed"):
        old = jet_trio.JETError  # type: ignore[attr-defined]
    assert old is EncryptionFailed
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        from jet_trio import JETError  # type: ignore[attr-defined]  # noqa: F401
    assert seen and {w.category for w in seen} == {DeprecationWarning}
