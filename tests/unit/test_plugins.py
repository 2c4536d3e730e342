"""The plugin manager with plugins passed in code: isolation, validation, lookups."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from lxml import etree

from jet_trio import JID
from jet_trio._jet.cipher import Cipher, TransportSecret, UnknownCipher
from jet_trio._jet.envelope import DecryptedEnvelope, EnvelopeMethod, Trust
from jet_trio._plugins.builtin_ciphers import AES128GCM, AES256GCM, AESGCMCipher
from jet_trio._plugins.hookspecs import PluginConfig, hookimpl
from jet_trio._plugins.manager import PluginManager, UnknownEnvelope
from jet_trio._xmpp import ns as _ns

TOY_NS = "urn:example:toy-envelope:0"


class ToyEnvelope(EnvelopeMethod):
    namespace = TOY_NS
    features = ("urn:example:toy-envelope:feature",)

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        return etree.Element(f"{{{TOY_NS}}}toy")

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        return DecryptedEnvelope(TransportSecret.generate(cipher), sender.bare, Trust.UNDECIDED)


class ToyPlugin:
    def __init__(self) -> None:
        self.seen: list[PluginConfig] = []

    @hookimpl
    def jet_register_ciphers(self) -> list[Cipher]:
        return [AESGCMCipher(24, "urn:example:aes-192-gcm")]

    @hookimpl
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:
        self.seen.append(config)
        return [ToyEnvelope()]


def test_builtins_only() -> None:
    pm = PluginManager(entry_points=False)
    assert pm.load_errors == []
    assert pm.plugin_names == ["builtin-ciphers", "stub-envelope"]
    assert pm.ciphers == [AES128GCM, AES256GCM]
    assert pm.cipher("urn:xmpp:ciphers:aes-128-gcm-nopadding") is AES128GCM
    assert pm.cipher("urn:xmpp:ciphers:aes-128-gcm-nopadding:0") is AES128GCM
    assert pm.cipher("urn:xmpp:ciphers:aes-256-gcm-nopadding:0") is AES256GCM
    with pytest.raises(UnknownCipher) as info:
        pm.cipher("urn:xmpp:ciphers:aes-512")
    assert info.value.urn == "urn:xmpp:ciphers:aes-512"


def test_plugin_in_code() -> None:
    plugin = ToyPlugin()
    config = PluginConfig(account=JID("romeo@montague.example"), options={"toy": {"a": "b"}})
    pm = PluginManager(config, plugins=[plugin], entry_points=False)
    assert pm.load_errors == []
    assert plugin.seen == [config]
    assert pm.cipher("urn:example:aes-192-gcm").key_size == 24
    assert [c.urn for c in pm.ciphers][:2] == [AES128GCM.urn, AES256GCM.urn]
    assert isinstance(pm.envelope(TOY_NS), ToyEnvelope)
    assert pm.disco_features() == sorted([_ns.JET, "urn:example:toy-envelope:feature"])
    with pytest.raises(UnknownEnvelope, match="supported: urn:example:toy-envelope:0"):
        pm.envelope("urn:example:nope")


def _one_error(pm: PluginManager) -> str:
    assert len(pm.load_errors) == 1, pm.load_errors
    return str(pm.load_errors[0])


class Misspelt:
    @hookimpl
    def jet_register_cipher(self) -> list[Cipher]:  # missing "s"
        return []


class AsyncHook:
    @hookimpl
    async def jet_register_ciphers(self) -> list[Cipher]:
        return []


class Unmarked:
    def jet_register_ciphers(self) -> list[Cipher]:
        return []


class WrongArg:
    @hookimpl
    def jet_register_envelopes(self, cfg: PluginConfig) -> list[EnvelopeMethod]:
        return []


class Raising:
    @hookimpl
    def jet_register_ciphers(self) -> list[Cipher]:
        raise RuntimeError("boom")


class Garbage:
    @hookimpl
    def jet_register_ciphers(self) -> object:
        return ["not a cipher"]


class Duplicate:
    @hookimpl
    def jet_register_ciphers(self) -> list[Cipher]:
        return [AESGCMCipher(16, "urn:example:mine"), AESGCMCipher(16, AES128GCM.urn + ":0")]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (Misspelt(), "unknown hook 'jet_register_cipher'"),
        (AsyncHook(), "is async"),
        (Unmarked(), "not marked with @hookimpl"),
        (WrongArg(), "cfg"),
        (Raising(), "RuntimeError: boom"),
        (Garbage(), "must return a list of Cipher"),
        (Duplicate(), "is provided by jet-trio itself (builtin-ciphers)"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_broken_plugin_is_isolated(
    bad: object, match: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = ToyPlugin()
    with caplog.at_level(logging.ERROR, logger="jet_trio.plugins"):
        pm = PluginManager(plugins=[bad, good], entry_points=False)
    assert match in _one_error(pm)
    assert any(match in r.getMessage() for r in caplog.records)
    # The good plugin and the built-ins still loaded.
    assert pm.cipher("urn:example:aes-192-gcm").key_size == 24
    assert pm.cipher(AES128GCM.urn) is AES128GCM
    assert isinstance(pm.envelope(TOY_NS), ToyEnvelope)


def test_duplicate_cipher_keeps_the_first_and_the_rest_of_the_plugin() -> None:
    pm = PluginManager(plugins=[Duplicate()], entry_points=False)
    assert "urn:xmpp:ciphers:aes-128-gcm-nopadding:0" in _one_error(pm)
    assert pm.cipher(AES128GCM.urn + ":0") is AES128GCM
    assert pm.cipher("urn:example:mine").urn == "urn:example:mine"


def test_duplicate_names_load_neither_copy() -> None:
    first, second = ToyPlugin(), ToyPlugin()
    pm = PluginManager(plugins={"first": first, "second": second}, entry_points=False)
    errors = [str(e) for e in pm.load_errors]
    # Each copy's cipher and envelope clash with the other's: none of the four is loaded, and
    # each error names both parties.
    assert errors == [
        "plugin 'first' skipped: cipher 'urn:example:aes-192-gcm' is provided by plugin "
        "'first' and by plugin 'second'; none of them is loaded",
        "plugin 'second' skipped: cipher 'urn:example:aes-192-gcm' is provided by plugin "
        "'second' and by plugin 'first'; none of them is loaded",
        f"plugin 'first' skipped: envelope {TOY_NS!r} is provided by plugin 'first' and by "
        "plugin 'second'; none of them is loaded",
        f"plugin 'second' skipped: envelope {TOY_NS!r} is provided by plugin 'second' and by "
        "plugin 'first'; none of them is loaded",
    ]
    with pytest.raises(UnknownCipher):
        pm.cipher("urn:example:aes-192-gcm")
    with pytest.raises(UnknownEnvelope):
        pm.envelope(TOY_NS)
    # Neither shows as loaded.
    assert pm.plugin_names == ["builtin-ciphers", "stub-envelope"]


def test_module_plugin() -> None:
    module = SimpleNamespace(__name__="toy_module")

    @hookimpl
    def jet_register_ciphers() -> list[Cipher]:
        return [AESGCMCipher(24, "urn:example:from-module")]

    module.jet_register_ciphers = jet_register_ciphers
    pm = PluginManager(plugins=[module], entry_points=False)
    assert pm.load_errors == []
    assert pm.plugin_names[-1] == "toy_module"
    assert pm.cipher("urn:example:from-module").key_size == 24


def test_the_same_object_twice() -> None:
    plugin = ToyPlugin()
    pm = PluginManager(plugins=[plugin, plugin], entry_points=False)
    assert "already registered" in _one_error(pm)
    assert pm.cipher("urn:example:aes-192-gcm").key_size == 24


def test_only_the_wanted_envelopes() -> None:
    """``PluginConfig.envelopes``: the other methods are dropped (never started or advertised)."""
    wanted = PluginConfig(allow_stub_envelope=True, envelopes=frozenset({TOY_NS}))
    pm = PluginManager(wanted, plugins=[ToyPlugin()], entry_points=False)
    assert [e.namespace for e in pm.envelopes] == [TOY_NS]
    assert pm.load_errors == []
    everything = PluginConfig(allow_stub_envelope=True)
    pm = PluginManager(everything, plugins=[ToyPlugin()], entry_points=False)
    assert {e.namespace for e in pm.envelopes} == {TOY_NS, _ns.JET_STUB}
    nothing = PluginConfig(allow_stub_envelope=True, envelopes=frozenset())
    pm = PluginManager(nothing, plugins=[ToyPlugin()], entry_points=False)
    assert pm.envelopes == [] and pm.disco_features() == []
    assert [c.urn for c in pm.ciphers][:2] == [AES128GCM.urn, AES256GCM.urn]  # ciphers stay


class _NoTagSizeCipher(AESGCMCipher):
    def __init__(self) -> None:
        super().__init__(32, "urn:example:no-tag-size")


class _IncompletePlugin:
    @hookimpl
    def jet_register_ciphers(self) -> list[Cipher]:
        cipher = _NoTagSizeCipher()
        cipher.tag_size = "16"  # type: ignore[assignment]  # malformed
        return [cipher, AESGCMCipher(24, "urn:example:fine")]

    @hookimpl
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:
        return [_BareEnvelope(), _RaisingFeatures(), ToyEnvelope()]


class _BareEnvelope(EnvelopeMethod):
    """Sets ``namespace`` only."""

    namespace = "urn:example:bare"

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        raise NotImplementedError

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        raise NotImplementedError


class _RaisingFeatures(_BareEnvelope):
    namespace = "urn:example:raising"

    @property
    def features(self) -> tuple[str, ...]:  # type: ignore[override]
        raise RuntimeError("no features today")


def test_incomplete_cipher_and_envelope_are_refused_alone() -> None:
    pm = PluginManager(plugins=[_IncompletePlugin()], entry_points=False)
    reasons = [e.reason for e in pm.load_errors]
    assert reasons == [
        "cipher _NoTagSizeCipher (urn:example:no-tag-size): tag_size must be a positive int, "
        "not '16'",
        "envelope _BareEnvelope has no attribute 'features'",
        "_RaisingFeatures: reading its attributes raised RuntimeError: no features today",
    ]
    assert [c.urn for c in pm.ciphers][-1] == "urn:example:fine"
    assert [e.namespace for e in pm.envelopes] == [TOY_NS]
    assert "urn:example:toy-envelope:feature" in pm.disco_features()
