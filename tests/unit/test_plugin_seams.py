"""The optional plugin interfaces: short names, envelope sessions, declarations, defaults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from lxml import etree

from jet_trio import envelope_strength
from jet_trio._jet.cipher import Cipher, TransportSecret
from jet_trio._jet.envelope import (
    DecryptedEnvelope,
    EnvelopeInfo,
    EnvelopeMethod,
    EnvelopeSession,
    KeyRecord,
    KeyStore,
    KeyTrust,
    Trust,
)
from jet_trio._plugins.hookspecs import PluginConfig, hookimpl
from jet_trio._plugins.manager import PluginManager
from jet_trio._xmpp import ns as _ns
from jet_trio._xmpp.jid import JID

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


class Named(ToyEnvelope):
    short_name = "toy"


class NamedPlugin:
    @hookimpl
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:
        return [Named()]


def test_defaults_keep_behaviour_for_plugins_without_the_new_attributes() -> None:
    env = ToyEnvelope()
    assert env.short_name is None and env.key_store is None
    assert env.testing_only is False and env.install_hint == ""
    assert env.preferred_cipher == _ns.CIPHER_AES256_GCM
    # strength None: ranked by the table of known namespaces (10 for one it does not know).
    assert env.strength is None and envelope_strength(env) == 10


def test_short_name_selects_the_method() -> None:
    config = PluginConfig(envelopes=frozenset({"toy"}))
    pm = PluginManager(config, plugins=[NamedPlugin()], entry_points=False)
    assert [e.namespace for e in pm.envelopes] == [TOY_NS]
    pm = PluginManager(
        PluginConfig(envelopes=frozenset({"other"})), plugins=[NamedPlugin()], entry_points=False
    )
    assert pm.envelopes == []
    assert config.wants(TOY_NS) is False and config.wants(TOY_NS, "toy") is True
    assert PluginConfig().wants("anything") is True


def test_stub_has_its_short_name_and_is_testing_only() -> None:
    pm = PluginManager(
        PluginConfig(allow_stub_envelope=True, envelopes=frozenset({"stub"})), entry_points=False
    )
    (stub,) = pm.envelopes
    assert (stub.namespace, stub.short_name, stub.testing_only) == (_ns.JET_STUB, "stub", True)
    assert pm.owner(stub) == "stub-envelope"


class BadShortName(ToyEnvelope):
    short_name = " two words "


class BadKeys(ToyEnvelope):
    key_store = "not a key store"  # type: ignore[assignment]


class BadStrength(ToyEnvelope):
    namespace = "urn:example:bad-strength:0"
    strength = "strong"  # type: ignore[assignment]


class BoolStrength(ToyEnvelope):
    namespace = "urn:example:bool-strength:0"
    strength = True


class BadPlugin:
    @hookimpl
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:
        return [BadShortName(), BadKeys(), BadStrength(), BoolStrength()]


def test_malformed_new_attributes_are_refused_naming_them() -> None:
    pm = PluginManager(plugins=[BadPlugin()], entry_points=False)
    assert pm.envelopes == []
    reasons = " | ".join(e.reason for e in pm.load_errors)
    assert "short_name must be None or a word" in reasons
    assert "key_store must be None or a KeyStore" in reasons
    assert "strength must be None or an int, not 'strong'" in reasons
    assert "strength must be None or an int, not True" in reasons


class Session(EnvelopeSession):
    label = "toy"
    methods = frozenset({"toy"})

    def __init__(self) -> None:
        self.opened = False

    def open(self) -> AbstractAsyncContextManager[object]:
        @asynccontextmanager
        async def run() -> AsyncIterator[None]:
            self.opened = True
            yield

        return run()


class SessionPlugin:
    def __init__(self) -> None:
        self.session = Session()

    @hookimpl
    def jet_envelope_sessions(self, config: PluginConfig) -> list[EnvelopeSession]:
        return [self.session] if config.wants(TOY_NS, "toy") else []

    @hookimpl
    def jet_describe_envelopes(self) -> list[EnvelopeInfo]:
        return [EnvelopeInfo(TOY_NS, "toy", "pip install toy", options={"k": "what k does"})]


class BrokenSessions:
    @hookimpl
    def jet_envelope_sessions(self, config: PluginConfig) -> list[EnvelopeSession]:
        raise RuntimeError("boom")

    @hookimpl
    def jet_describe_envelopes(self) -> list[EnvelopeInfo]:
        return ["not an EnvelopeInfo"]  # type: ignore[list-item]


async def test_sessions_and_declarations_are_isolated() -> None:
    good = SessionPlugin()
    pm = PluginManager(plugins=[BrokenSessions(), good], entry_points=False)
    sessions = pm.envelope_sessions()
    assert [s for _, s in sessions] == [good.session]
    (declared,) = [i for _, i in pm.describe_envelopes() if i.namespace == TOY_NS]
    assert declared.short_name == "toy" and declared.options == {"k": "what k does"}
    reasons = " | ".join(e.reason for e in pm.load_errors)
    assert "RuntimeError: boom" in reasons
    async with good.session.open():
        assert good.session.opened
    # A plugin implementing none of the new hooks is simply absent from their results.
    plain = PluginManager(plugins=[NamedPlugin()], entry_points=False)
    assert plain.envelope_sessions() == []
    assert [i.short_name for _, i in plain.describe_envelopes()] == ["stub"]  # the built-in


class Store(KeyStore):
    name = "toy"
    title = "Toy keys"

    async def list_keys(self, jid: JID) -> list[KeyRecord]:
        return [KeyRecord(jid, "AB:cd 12", KeyTrust.UNDECIDED, 7)]

    async def set_trust(self, key: KeyRecord, trusted: bool) -> KeyRecord:
        return key


async def test_key_store_find_by_fingerprint_or_device_id() -> None:
    store = Store()
    keys = await store.list_keys(JID("bob@example.org"))
    assert store.find(keys, "abcd12") == keys
    assert store.find(keys, "ab cd:12") == keys
    assert store.find(keys, "7") == keys
    assert store.find(keys, "8") == []
    assert keys[0].compact == "abcd12" and not keys[0].own
