"""``encrypt="auto"`` uses the strongest envelope and cipher both sides advertise, and says so.

Two stand-ins for the OMEMO envelope methods (the key in clear, like the test envelope, but
registered under the legacy OMEMO and OMEMO 2 namespaces and features, legacy first as the
OMEMO plugin registers them): the choice logic only looks at namespaces, features and the
method's preferred cipher.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from lxml import etree

import jet_trio
from jet_trio import JID, FileTransfer, IncomingOffer, envelope_strength
from jet_trio._xmpp.ns import CIPHER_AES128_GCM, CIPHER_AES256_GCM, JET_STUB
from jet_trio.plugin import (
    Cipher,
    DecryptedEnvelope,
    EnvelopeMethod,
    PluginConfig,
    PluginManager,
    TransportSecret,
    hookimpl,
)

from .conftest import Net, TestEnvelope

OLDMEMO = "eu.siacs.conversations.axolotl"
OMEMO2 = "urn:xmpp:omemo:2"
JET_OMEMO = "urn:xmpp:jingle:jet-omemo:0"


class FakeOmemo(TestEnvelope):
    __test__ = False
    features: tuple[str, ...]  # type: ignore[assignment]  # two features here

    def __init__(self, namespace: str) -> None:
        super().__init__()
        self.namespace = namespace
        node = f"{OLDMEMO}.devicelist" if namespace == OLDMEMO else "urn:xmpp:omemo:2:devices"
        self.features = (JET_OMEMO, f"{node}+notify")
        if namespace == OLDMEMO:
            self.preferred_cipher = CIPHER_AES128_GCM

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        outer = etree.Element(f"{{{self.namespace}}}encrypted")
        outer.append(await super().encrypt(secret, peer))
        return outer

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        return await super().decrypt(element[0], sender, cipher)


class Plugin:
    def __init__(self, *namespaces: str) -> None:
        self.namespaces = namespaces

    @hookimpl
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:
        envs = [FakeOmemo(ns) for ns in self.namespaces]
        for e in envs:
            e.me = config.account
        return list(envs)


@asynccontextmanager
async def pair(
    net: Net, sender: tuple[str, ...], receiver: tuple[str, ...]
) -> AsyncIterator[tuple[FileTransfer, FileTransfer]]:
    async with net.client("alice", "send") as a, net.client("bob", "recv") as b:
        pa = PluginManager(
            PluginConfig(account=a.jid, allow_stub_envelope=True),
            plugins=[Plugin(*sender)],
            entry_points=False,
        )
        pb = PluginManager(
            PluginConfig(account=b.jid, allow_stub_envelope=True),
            plugins=[Plugin(*receiver)],
            entry_points=False,
        )
        async with (
            jet_trio.open_file_transfer(a, plugins=pa) as fa,
            jet_trio.open_file_transfer(b, plugins=pb) as fb,
        ):
            with trio.fail_after(5):
                await a.wait_available(b.jid)
            yield fa, fb


async def send(fa: FileTransfer, fb: FileTransfer, tmp: Path, **kw: Any) -> Any:
    src = tmp / "f.bin"
    src.write_bytes(os.urandom(20_000))
    got: list[jet_trio.TransferResult] = []

    async def receive() -> None:
        offer: IncomingOffer = await fb.next_offer()
        got.append(await offer.accept(tmp / "out.bin", overwrite=True))

    with trio.fail_after(15):
        async with trio.open_nursery() as n:
            n.start_soon(receive)
            sent = await fa.send_file(src, fb.client.jid, **kw)
    assert (tmp / "out.bin").read_bytes() == src.read_bytes()
    return sent, got[0]


async def test_omemo2_over_legacy_with_aes256(net: Net, tmp_path: Path) -> None:
    async with pair(net, (OLDMEMO, OMEMO2), (OLDMEMO, OMEMO2)) as (fa, fb):
        # The (built-in) stub and legacy OMEMO come first: "first installed" would pick them.
        assert [e.namespace for e in fa.plugins.envelopes] == [JET_STUB, OLDMEMO, OMEMO2]
        sent, received = await send(fa, fb, tmp_path)
    assert sent.envelope == OMEMO2 and sent.cipher == CIPHER_AES256_GCM
    assert received.envelope == OMEMO2 and received.cipher == CIPHER_AES256_GCM
    assert "strongest envelope" in sent.choice and OLDMEMO in sent.choice
    assert "strongest standard cipher" in sent.choice
    assert "chosen by the sender" in received.choice


async def test_legacy_omemo_with_aes256_to_a_peer_advertising_it(net: Net, tmp_path: Path) -> None:
    """A jet-trio peer with legacy OMEMO only advertises AES-256-GCM: it is used."""
    async with pair(net, (OLDMEMO, OMEMO2), (OLDMEMO,)) as (fa, fb):
        sent, _ = await send(fa, fb, tmp_path)
    assert sent.envelope == OLDMEMO and sent.cipher == CIPHER_AES256_GCM
    assert "advertised by" in sent.choice


async def test_legacy_omemo_keeps_aes128_for_dino_like_peers(net: Net, tmp_path: Path) -> None:
    """A peer that advertises legacy OMEMO but no cipher URNs (Dino, Conversations) gets the
    form it accepts: AES-128-GCM."""
    async with pair(net, (OLDMEMO, OMEMO2), (OLDMEMO,)) as (fa, fb):
        b = fb.client
        b._features.difference_update(c.urn for c in fb.plugins.ciphers)
        await b.send_presence()  # new caps without the cipher URNs
        with trio.fail_after(5):
            while (await fa.client.features_of(b.jid)).has(CIPHER_AES256_GCM):  # noqa: ASYNC110
                await trio.sleep(0.05)
        sent, received = await send(fa, fb, tmp_path)
    assert sent.envelope == OLDMEMO and sent.cipher == CIPHER_AES128_GCM
    assert received.cipher == CIPHER_AES128_GCM
    assert "does not advertise AES-256-GCM" in sent.choice


async def test_explicit_envelope_and_cipher_are_reported(net: Net, tmp_path: Path) -> None:
    async with pair(net, (OLDMEMO, OMEMO2), (OLDMEMO, OMEMO2)) as (fa, fb):
        sent, _ = await send(fa, fb, tmp_path, encrypt=OLDMEMO, cipher=CIPHER_AES128_GCM)
    assert sent.envelope == OLDMEMO and sent.cipher == CIPHER_AES128_GCM
    assert "envelope asked for" in sent.choice and "cipher asked for" in sent.choice


def test_strength_order() -> None:
    ranks = {ns: envelope_strength(FakeOmemo(ns)) for ns in (OLDMEMO, OMEMO2)}
    assert ranks[OMEMO2] > ranks[OLDMEMO]
    stub = FakeOmemo(OLDMEMO)
    stub.namespace = JET_STUB
    other = FakeOmemo(OLDMEMO)
    other.namespace = "urn:example:psk"
    assert envelope_strength(stub) < envelope_strength(other) < ranks[OLDMEMO]
    other.strength = 99
    assert envelope_strength(other) == 99
