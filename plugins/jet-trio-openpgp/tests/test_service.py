"""The OpenPGP service and envelope method over an in-memory PEP (no sockets)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jet_trio import JID, Client
from jet_trio._plugins.builtin_ciphers import AES128GCM, AES256GCM
from jet_trio.plugin import (
    EnvelopeSenderMismatch,
    PluginConfig,
    PluginManager,
    TransportSecret,
    Trust,
    UntrustedEnvelope,
)
from lxml import etree

import jet_trio_openpgp
from jet_trio_openpgp import (
    FEATURE,
    NS,
    PUBLIC_KEYS_NODE,
    KeyState,
    MalformedEnvelope,
    NoPublicKey,
    OpenPGP,
    PeerNotSupported,
    ReplayedEnvelope,
    StaleEnvelope,
    TrustPolicy,
    UndecryptableEnvelope,
    UntrustedKey,
    WrongRecipient,
    WrongSigner,
    key_node,
)
from jet_trio_openpgp._hooks import jet_register_envelopes
from jet_trio_openpgp._signcrypt import build_openpgp, build_signcrypt, seal_message

from .fakes import FakePEP

A_FULL = JID("alice@example.org/phone")
B_FULL = JID("bob@example.org/laptop")
C_FULL = JID("carol@example.org/desk")


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def make(
    pep: FakePEP,
    jid: JID,
    tmp_path: Path,
    *,
    directory: str | None = None,
    clock: Callable[[], datetime] | None = None,
    **kwargs: object,
) -> OpenPGP:
    client = pep.client(str(jid))
    pgp = OpenPGP(
        client.as_client(),
        tmp_path / (directory or str(jid.bare)),
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )
    await pgp.start()
    return pgp


async def trio_of(tmp_path: Path, **kwargs: object) -> tuple[FakePEP, OpenPGP, OpenPGP, OpenPGP]:
    pep = FakePEP()
    a = await make(pep, A_FULL, tmp_path, **kwargs)  # type: ignore[arg-type]
    b = await make(pep, B_FULL, tmp_path, **kwargs)  # type: ignore[arg-type]
    c = await make(pep, C_FULL, tmp_path, **kwargs)  # type: ignore[arg-type]
    return pep, a, b, c


async def test_publishes_key_and_list(tmp_path: Path) -> None:
    pep, a, _, _ = await trio_of(tmp_path)
    alice = A_FULL.bare
    node = key_node(a.fingerprint)
    assert (alice, node) in pep.nodes
    assert pep.options[(alice, node)] == {"pubsub#access_model": "open"}
    assert pep.options[(alice, PUBLIC_KEYS_NODE)] == {"pubsub#access_model": "open"}
    listed = pep.nodes[(alice, PUBLIC_KEYS_NODE)]["current"]
    assert [m.get("v4-fingerprint") for m in listed] == [a.fingerprint]
    infos = await a.fingerprints(alice)
    assert [(i.fingerprint, i.state, i.published) for i in infos] == [
        (a.fingerprint, KeyState.VERIFIED, True)
    ]


async def test_round_trip_both_ways(tmp_path: Path) -> None:
    _, a, b, _ = await trio_of(tmp_path)
    for sender, receiver, s_jid, r_jid in ((a, b, A_FULL, B_FULL), (b, a, B_FULL, A_FULL)):
        s = TransportSecret.generate(AES256GCM)
        el = await sender.envelope.encrypt(s, r_jid)
        assert el.tag == f"{{{NS}}}openpgp"
        opened = await receiver.envelope.decrypt(el, s_jid, AES256GCM)
        assert opened.secret.to_bytes() == s.to_bytes()
        assert opened.sender_identity == s_jid.bare
        assert opened.trust is Trust.UNDECIDED
        assert sender.fingerprint.upper()[:4] in opened.detail
        # Trust on first use was recorded on both sides.
        assert receiver.trust_of(s_jid, sender.fingerprint) is KeyState.TOFU
        assert sender.trust_of(r_jid, receiver.fingerprint) is KeyState.TOFU


async def test_key_survives_restart(tmp_path: Path) -> None:
    pep = FakePEP()
    a1 = await make(pep, A_FULL, tmp_path)
    a2 = await make(pep, A_FULL, tmp_path)
    assert a1.fingerprint == a2.fingerprint
    assert len(pep.nodes[(A_FULL.bare, PUBLIC_KEYS_NODE)]["current"]) == 1


async def test_other_devices_keys_kept_in_list(tmp_path: Path) -> None:
    pep = FakePEP()
    a1 = await make(pep, A_FULL, tmp_path, directory="one")
    a2 = await make(pep, A_FULL, tmp_path, directory="two")
    listed = pep.nodes[(A_FULL.bare, PUBLIC_KEYS_NODE)]["current"]
    assert [m.get("v4-fingerprint") for m in listed] == [a2.fingerprint, a1.fingerprint]


async def test_peer_without_key(tmp_path: Path) -> None:
    pep = FakePEP()
    a = await make(pep, A_FULL, tmp_path)
    b = await make(pep, B_FULL, tmp_path, publish=False)
    with pytest.raises(NoPublicKey, match=r"bob@example\.org has published no OpenPGP key"):
        await a.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    # An envelope claiming to come from bob, who published nothing, cannot be authenticated.
    el = build_openpgp(seal_message(b"x", [a.key.cert], b.key.secret))
    with pytest.raises(NoPublicKey, match="cannot be authenticated"):
        await a.envelope.decrypt(el, B_FULL, AES256GCM)


async def test_peer_without_feature(tmp_path: Path) -> None:
    pep, a, _, _ = await trio_of(tmp_path)
    pep.without_feature.add(B_FULL.bare)
    with pytest.raises(PeerNotSupported, match="does not advertise JET with OpenPGP"):
        await a.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)


async def test_wrong_signer(tmp_path: Path) -> None:
    """Carol makes a perfect envelope for Bob, but the transfer comes from Alice."""
    _, _, b, c = await trio_of(tmp_path)
    el = await c.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    with pytest.raises(WrongSigner, match=r"not signed by any key alice@example\.org published"):
        await b.envelope.decrypt(el, A_FULL, AES256GCM)
    assert issubclass(WrongSigner, EnvelopeSenderMismatch)


async def test_wrong_recipient(tmp_path: Path) -> None:
    """Alice signs a signcrypt addressed to Carol; it reaches Bob encrypted to him."""
    _, a, b, c = await trio_of(tmp_path)
    await a.published_keys(B_FULL)
    plaintext = build_signcrypt(TransportSecret.generate(AES256GCM), C_FULL, datetime.now(UTC))
    el = build_openpgp(seal_message(plaintext, [b.key.cert], a.key.secret))
    with pytest.raises(WrongRecipient, match=r"addressed to carol@example\.org"):
        await b.envelope.decrypt(el, A_FULL, AES256GCM)
    assert c.fingerprint


@pytest.mark.parametrize("minutes", [-6, 6])
async def test_stale_envelope(tmp_path: Path, minutes: int) -> None:
    pep = FakePEP()
    clock = Clock()
    a = await make(pep, A_FULL, tmp_path, clock=clock)
    b = await make(pep, B_FULL, tmp_path)
    clock.offset = timedelta(minutes=minutes)
    el = await a.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    with pytest.raises(StaleEnvelope, match="possible replay"):
        await b.envelope.decrypt(el, A_FULL, AES256GCM)


async def test_configurable_window(tmp_path: Path) -> None:
    pep = FakePEP()
    clock = Clock()
    a = await make(pep, A_FULL, tmp_path, clock=clock)
    b = await make(pep, B_FULL, tmp_path, max_clock_skew=timedelta(minutes=30))
    clock.offset = -timedelta(minutes=20)
    el = await a.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    await b.envelope.decrypt(el, A_FULL, AES256GCM)


async def test_replayed_envelope(tmp_path: Path) -> None:
    _, a, b, _ = await trio_of(tmp_path)
    el = await a.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    await b.envelope.decrypt(el, A_FULL, AES256GCM)
    with pytest.raises(ReplayedEnvelope):
        await b.envelope.decrypt(el, A_FULL, AES256GCM)


async def test_tampered_envelope(tmp_path: Path) -> None:
    _, a, b, _ = await trio_of(tmp_path)
    el = await a.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    # Flip one bit of the encrypted data packet (the last packet; a flip in a key packet
    # for another of the recipient's keys would go unnoticed, rightly).
    raw = bytearray(base64.b64decode(el.text or ""))
    raw[-20] ^= 0x01
    el.text = base64.b64encode(bytes(raw)).decode()
    with pytest.raises((UndecryptableEnvelope, WrongSigner)):
        await b.envelope.decrypt(el, A_FULL, AES256GCM)
    el.text = "%%%"
    with pytest.raises(MalformedEnvelope):
        await b.envelope.decrypt(el, A_FULL, AES256GCM)


async def test_cipher_mismatch(tmp_path: Path) -> None:
    _, a, b, _ = await trio_of(tmp_path)
    el = await a.envelope.encrypt(TransportSecret.generate(AES128GCM), B_FULL)
    with pytest.raises(MalformedEnvelope, match="binds the secret to cipher"):
        await b.envelope.decrypt(el, A_FULL, AES256GCM)


async def test_tofu_refuses_new_key_until_verified(tmp_path: Path) -> None:
    pep = FakePEP()
    a = await make(pep, A_FULL, tmp_path)
    b = await make(pep, B_FULL, tmp_path)
    first = await a.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    await b.envelope.decrypt(first, A_FULL, AES256GCM)
    # Alice starts over with a new key (a new device, or an attacker controlling her account).
    a2 = await make(pep, A_FULL, tmp_path, directory="alice-new")
    el = await a2.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    with pytest.raises(UntrustedKey, match="not verified") as info:
        await b.envelope.decrypt(el, A_FULL, AES256GCM)
    assert info.value.fingerprint == a2.fingerprint
    assert isinstance(info.value, UntrustedEnvelope)
    keys = {k.fingerprint: k.state for k in await b.fingerprints(A_FULL)}
    assert keys == {a.fingerprint: KeyState.TOFU, a2.fingerprint: None}
    with pytest.raises(ValueError, match="40 hex digits"):
        b.verify(A_FULL, a2.fingerprint[:-1])
    b.verify(A_FULL, " ".join(a2.fingerprint[i : i + 4] for i in range(0, 40, 4)))
    el = await a2.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    opened = await b.envelope.decrypt(el, A_FULL, AES256GCM)
    assert opened.trust is Trust.VERIFIED


async def test_manual_policy(tmp_path: Path) -> None:
    pep = FakePEP()
    a = await make(pep, A_FULL, tmp_path, policy=TrustPolicy.MANUAL)
    b = await make(pep, B_FULL, tmp_path, policy=TrustPolicy.MANUAL)
    with pytest.raises(UntrustedKey, match=r"no trusted OpenPGP key of bob@example\.org"):
        await a.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    a.verify(B_FULL, b.fingerprint)
    el = await a.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    with pytest.raises(UntrustedKey, match="not verified"):
        await b.envelope.decrypt(el, A_FULL, AES256GCM)
    b.verify(A_FULL, a.fingerprint)
    el = await a.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    assert (await b.envelope.decrypt(el, A_FULL, AES256GCM)).trust is Trust.VERIFIED


async def test_distrusted_key(tmp_path: Path) -> None:
    _, a, b, _ = await trio_of(tmp_path)
    b.distrust(A_FULL, a.fingerprint)
    el = await a.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    with pytest.raises(UntrustedKey, match="distrusted"):
        await b.envelope.decrypt(el, A_FULL, AES256GCM)
    with pytest.raises(UntrustedKey, match="no trusted OpenPGP key of alice"):
        await b.envelope.encrypt(TransportSecret.generate(AES256GCM), A_FULL)


async def test_key_list_followed_through_notifications(tmp_path: Path) -> None:
    pep = FakePEP()
    a = await make(pep, A_FULL, tmp_path)
    b = await make(pep, B_FULL, tmp_path)
    assert list(await b.published_keys(A_FULL)) == [a.fingerprint]
    a2 = await make(pep, A_FULL, tmp_path, directory="alice-new")
    # The notification of the new list reached Bob: no re-read of the list needed.
    gets = pep.followers[1].gets
    assert set(await b.published_keys(A_FULL)) == {a.fingerprint, a2.fingerprint}
    assert pep.followers[1].gets == gets + 1  # only the new key's node was fetched


async def test_published_key_must_match_its_node(tmp_path: Path) -> None:
    pep = FakePEP()
    a = await make(pep, A_FULL, tmp_path)
    c = await make(pep, C_FULL, tmp_path)
    b = await make(pep, B_FULL, tmp_path)
    # Alice's key node is replaced by Carol's key: ignored, so Alice has no usable key.
    pep.nodes[(A_FULL.bare, key_node(a.fingerprint))] = {
        "x": pep.nodes[(C_FULL.bare, key_node(c.fingerprint))][
            next(iter(pep.nodes[(C_FULL.bare, key_node(c.fingerprint))]))
        ]
    }
    with pytest.raises(NoPublicKey):
        await b.envelope.encrypt(TransportSecret.generate(AES256GCM), A_FULL)


async def test_registered_as_plugin(tmp_path: Path) -> None:
    _, a, _, _ = await trio_of(tmp_path)
    pm = PluginManager(plugins=[a], entry_points=False)
    assert pm.load_errors == []
    # The manager uses a third-party method through a guard (a bug is pinned on the plugin).
    envelope = pm.envelope(NS)
    assert isinstance(envelope, type(a.envelope)) and envelope.namespace == NS
    assert FEATURE in pm.disco_features()


def test_entry_point_hook_needs_data_dir_and_client(tmp_path: Path) -> None:
    assert jet_register_envelopes(PluginConfig()) == []
    not_a_client: Any = object()  # what an application might wrongly pass: refused
    assert jet_register_envelopes(PluginConfig(data_dir=tmp_path, client=not_a_client)) == []


def test_entry_point_hook_skips_an_unwanted_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that knows it uses another method: no OpenPGP object, no key, no publishing."""
    fake = FakePEP().client("alice@example.org/x")
    monkeypatch.setattr(jet_trio_openpgp._hooks, "Client", type(fake))  # the hook's check
    client = fake.as_client()
    stub_only = PluginConfig(
        data_dir=tmp_path, client=client, envelopes=frozenset({"urn:xmpp:encryption:stub:0"})
    )
    assert jet_register_envelopes(stub_only) == []
    wanted = PluginConfig(data_dir=tmp_path, client=client, envelopes=frozenset({NS}))
    (envelope,) = jet_register_envelopes(wanted)
    assert envelope.namespace == NS == jet_trio_openpgp._hooks.NS
    assert not (tmp_path / "openpgp").exists()  # made, not started


def test_entry_point_loads(tmp_path: Path) -> None:
    pm = PluginManager()
    assert not [e for e in pm.load_errors if "openpgp" in e.name]
    assert "openpgp" in pm.plugin_names
    with pytest.raises(Exception, match="unsupported JET envelope"):
        pm.envelope(NS)


async def test_not_started(tmp_path: Path) -> None:
    pgp = OpenPGP(FakePEP().client("alice@example.org/x").as_client(), tmp_path)
    with pytest.raises(jet_trio_openpgp.OpenPGPError, match="not started"):
        assert pgp.fingerprint
    with pytest.raises(jet_trio_openpgp.OpenPGPError, match="not started"):
        pgp.verify(B_FULL, "AB" * 20)
    # Lazy start on first use.
    with pytest.raises(NoPublicKey):
        await pgp.envelope.encrypt(TransportSecret.generate(AES256GCM), B_FULL)
    assert pgp.fingerprint


def test_element_namespaces() -> None:
    el = build_openpgp(b"x")
    assert etree.tostring(el) == b'<openpgp xmlns="urn:xmpp:openpgp:0">eA==</openpgp>'
    assert isinstance(Client, type)
