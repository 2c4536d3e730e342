"""JET with the OpenPGP envelope (plugins/jet-trio-openpgp) between jet-trio clients on Prosody.

Keys are published to and fetched from Prosody's PEP for real. The attacks are played by a
sender whose envelope method misbehaves (wrong signer, wrong recipient, replay, tampering); the
receiver must refuse each with a clear reason and never write the file.
"""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
from lxml import etree

import jet_trio
from jet_trio import JID, Client, open_client
from jet_trio._plugins.builtin_ciphers import AES256GCM
from jet_trio._transfer.service import FileTransfer, open_file_transfer
from jet_trio.plugin import (
    Cipher,
    DecryptedEnvelope,
    EnvelopeMethod,
    PluginConfig,
    TransportSecret,
    hookimpl,
)

from ._servers import ProsodyFactory, ServerInfo, on_ci

if not on_ci():  # CI installs every plugins/*/ distribution: there, a missing one fails
    pytest.importorskip("jet_trio_openpgp", reason="plugins/jet-trio-openpgp is not installed")

from jet_trio_openpgp import (
    FEATURE,
    NS,
    PUBLIC_KEYS_NODE,
    KeyState,
    NoPublicKey,
    OpenPGP,
    PeerNotSupported,
    ReplayedEnvelope,
    UndecryptableEnvelope,
    WrongRecipient,
    WrongSigner,
    key_node,
    open_openpgp,
)
from jet_trio_openpgp._pep import (
    PUBLISH_OPTIONS,
    build_key_list,
    build_pubkey,
    parse_key_list,
    parse_pubkey,
)
from jet_trio_openpgp._prepared import PreparedOpenPGPEnvelope
from jet_trio_openpgp._signcrypt import build_openpgp, build_signcrypt, seal_message

pytestmark = pytest.mark.integration

SIZE = 200_000
_resources = itertools.count()


@dataclass
class Peer:
    client: Client
    pgp: OpenPGP | None
    ft: FileTransfer


class _Plugin:
    """A jet-trio plugin object offering one given envelope method."""

    def __init__(self, method: EnvelopeMethod) -> None:
        self.method = method

    @hookimpl
    def jet_register_envelopes(self, config: PluginConfig) -> list[EnvelopeMethod]:
        return [self.method]


class EvilEnvelope(EnvelopeMethod):
    """Claims to be the OpenPGP method; ``make`` builds whatever envelope the attack needs."""

    namespace = NS
    features = (FEATURE,)

    def __init__(self, make: Callable[[TransportSecret, JID], Awaitable[etree._Element]]) -> None:
        self.make = make

    async def encrypt(self, secret: TransportSecret, peer: JID) -> etree._Element:
        return await self.make(secret, peer)

    async def decrypt(
        self, element: etree._Element, sender: JID, cipher: Cipher
    ) -> DecryptedEnvelope:
        raise AssertionError("the evil sender never receives")


@asynccontextmanager
async def peer(
    server: ServerInfo,
    user: str,
    data: Path,
    *,
    openpgp: bool = True,
    publish: bool = True,
    envelope: EnvelopeMethod | None = None,
) -> AsyncIterator[Peer]:
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            open_client(
                f"{server.jid(user)}/{user}-{next(_resources)}",
                server.accounts[user],
                host=server.host,
                port=server.port,
                ca_file=server.ca_file,
            )
        )
        pgp = None
        plugins: list[object] = []
        if openpgp:
            pgp = await stack.enter_async_context(
                open_openpgp(client, data / user, publish=publish)
            )
            plugins.append(pgp)
        if envelope is not None:
            plugins = [_Plugin(envelope)]
        ft = await stack.enter_async_context(open_file_transfer(client, extra_plugins=plugins))
        yield Peer(client, pgp, ft)


async def meet(*peers: Peer) -> None:
    with trio.fail_after(10):
        for p in peers:
            for q in peers:
                if p is not q:
                    await p.client.wait_available(q.client.jid)


def make_file(tmp_path: Path, name: str = "payload.bin") -> Path:
    src = tmp_path / "src" / name
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(os.urandom(SIZE))
    return src


async def transfer(
    sender: Peer, receiver: Peer, src: Path, dest: Path, **kwargs: object
) -> tuple[jet_trio.TransferResult, jet_trio.TransferResult]:
    results: dict[str, jet_trio.TransferResult] = {}

    async def receive() -> None:
        offer = await receiver.ft.next_offer()
        results["recv"] = await offer.accept(dest)

    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(receive)
            results["send"] = await sender.ft.send_file(src, receiver.client.jid, **kwargs)  # type: ignore[arg-type]
    return results["send"], results["recv"]


async def refused(sender: Peer, receiver: Peer, src: Path, dest: Path) -> str:
    """Run a transfer the receiver must refuse; return the receiver's error text."""
    errors: dict[str, BaseException] = {}

    async def receive() -> None:
        offer = await receiver.ft.next_offer()
        assert offer.envelope == NS
        with pytest.raises(jet_trio.EncryptionFailed) as info:
            await offer.accept(dest)
        errors["recv"] = info.value

    async def send() -> None:
        with pytest.raises(jet_trio.TransferError) as info:
            await sender.ft.send_file(src, receiver.client.jid, encrypt=NS)
        errors["send"] = info.value

    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(receive)
            n.start_soon(send)
    assert not dest.exists()
    assert not list(dest.parent.glob("*.part")) and not list(dest.parent.glob(".*.part"))
    return str(errors["recv"])


# -- working transfers ----------------------------------------------------------------------------


async def test_transfer_both_directions(xmpp_server: ServerInfo, tmp_path: Path) -> None:
    """On Prosody, and on ejabberd too (its PEP with publish-options)."""
    async with (
        peer(xmpp_server, "alice", tmp_path / "keys") as alice,
        peer(xmpp_server, "bob", tmp_path / "keys") as bob,
    ):
        await meet(alice, bob)
        # Both advertise the feature; "auto" picks OpenPGP (the only method loaded).
        assert (await alice.client.features_of(bob.client.jid)).has(FEATURE)
        for sender, receiver, name in ((alice, bob, "a2b.bin"), (bob, alice, "b2a.bin")):
            src = make_file(tmp_path, name)
            dest = tmp_path / f"got-{name}"
            sent, got = await transfer(sender, receiver, src, dest)
            assert dest.read_bytes() == src.read_bytes()
            assert sent.envelope == got.envelope == NS
            assert got.wire_bytes == SIZE + 16
        assert alice.pgp is not None and bob.pgp is not None
        assert bob.pgp.trust_of(alice.client.jid, alice.pgp.fingerprint) is KeyState.TOFU
        assert alice.pgp.trust_of(bob.client.jid, bob.pgp.fingerprint) is KeyState.TOFU


async def test_keys_published_with_open_access(prosody: ServerInfo, tmp_path: Path) -> None:
    async with (
        peer(prosody, "alice", tmp_path) as alice,
        peer(prosody, "carol", tmp_path, openpgp=False) as carol,
    ):
        assert alice.pgp is not None
        own = alice.client.jid.bare
        # Anyone can read both nodes (carol has no OpenPGP of her own here).
        items = await carol.client.get_items(own, PUBLIC_KEYS_NODE, max_items=1)
        assert items and items[-1].payload is not None
        listed = [m.get("v4-fingerprint") for m in items[-1].payload]
        assert alice.pgp.fingerprint in listed
        key_items = await carol.client.get_items(own, key_node(alice.pgp.fingerprint))
        assert len(key_items) == 1 and key_items[0].payload is not None
        infos = await alice.pgp.fingerprints(own)
        assert infos[0].fingerprint == alice.pgp.fingerprint and infos[0].published


async def test_key_change_followed_through_pep(prosody: ServerInfo, tmp_path: Path) -> None:
    """Bob learns Alice's new key from the PEP notification and refuses it until verified."""
    async with peer(prosody, "bob", tmp_path) as bob:
        async with peer(prosody, "alice", tmp_path / "one") as alice:
            await meet(alice, bob)
            src = make_file(tmp_path)
            await transfer(alice, bob, src, tmp_path / "first.bin")
        async with peer(prosody, "alice", tmp_path / "two") as alice2:
            await meet(alice2, bob)
            assert alice2.pgp is not None and bob.pgp is not None
            # No re-read of the list: Bob's cache is updated by the PEP notification alone.
            for _ in range(100):
                if alice2.pgp.fingerprint in await bob.pgp.published_keys(alice2.client.jid):
                    break
                await trio.sleep(0.05)
            else:
                pytest.fail("Bob never learnt Alice's new key from a PEP notification")
            text = await refused(alice2, bob, src, tmp_path / "second.bin")
            assert "not verified" in text
            bob.pgp.verify(alice2.client.jid, alice2.pgp.fingerprint)
            await transfer(alice2, bob, src, tmp_path / "third.bin")
            assert (tmp_path / "third.bin").read_bytes() == src.read_bytes()


# -- attacks --------------------------------------------------------------------------------------


async def test_wrong_signer(prosody: ServerInfo, tmp_path: Path) -> None:
    """Alice's transfer carries an envelope made and signed by Carol."""
    async with AsyncExitStack() as stack:
        carol = await stack.enter_async_context(peer(prosody, "carol", tmp_path))
        assert carol.pgp is not None
        carol_pgp = carol.pgp
        alice = await stack.enter_async_context(
            peer(prosody, "alice", tmp_path, envelope=EvilEnvelope(carol_pgp.seal))
        )
        bob = await stack.enter_async_context(peer(prosody, "bob", tmp_path))
        await meet(alice, bob)
        text = await refused(alice, bob, make_file(tmp_path), tmp_path / "got.bin")
        assert "not signed by any key alice@localhost published" in text

        # The same check, called directly: the typed error.
        assert bob.pgp is not None
        el = await carol_pgp.seal(TransportSecret.generate(AES256GCM), bob.client.jid)
        with pytest.raises(WrongSigner):
            await bob.pgp.envelope.decrypt(el, alice.client.jid, AES256GCM)


async def test_addressed_to_someone_else(prosody: ServerInfo, tmp_path: Path) -> None:
    """Alice's signed signcrypt says <to jid='carol'>, but reaches Bob, encrypted to him."""
    async with AsyncExitStack() as stack:
        signer = await stack.enter_async_context(peer(prosody, "alice", tmp_path, openpgp=True))
        assert signer.pgp is not None
        pgp = signer.pgp
        carol_jid = JID(prosody.jid("carol"))

        async def to_carol(secret: TransportSecret, to: JID) -> etree._Element:
            certs = list((await pgp.published_keys(to)).values())
            plaintext = build_signcrypt(secret, carol_jid, datetime.now(UTC))
            return build_openpgp(seal_message(plaintext, certs, pgp.key.secret))

        # A second connection of Alice sends with the misaddressed envelope.
        alice = await stack.enter_async_context(
            peer(
                prosody, "alice", tmp_path / "evil", openpgp=False, envelope=EvilEnvelope(to_carol)
            )
        )
        bob = await stack.enter_async_context(peer(prosody, "bob", tmp_path))
        await meet(alice, bob)
        text = await refused(alice, bob, make_file(tmp_path), tmp_path / "got.bin")
        assert "addressed to carol@localhost, not to bob@localhost" in text

        assert bob.pgp is not None
        el = await to_carol(TransportSecret.generate(AES256GCM), bob.client.jid)
        with pytest.raises(WrongRecipient):
            await bob.pgp.envelope.decrypt(el, alice.client.jid, AES256GCM)


async def test_replayed_envelope(prosody: ServerInfo, tmp_path: Path) -> None:
    """A second transfer re-uses the envelope of the first one."""
    recorded: list[etree._Element] = []
    holder: dict[str, OpenPGP] = {}

    async def record_then_replay(secret: TransportSecret, to: JID) -> etree._Element:
        if not recorded:
            recorded.append(await holder["pgp"].seal(secret, to))
        return recorded[0]

    async with AsyncExitStack() as stack:
        real = await stack.enter_async_context(peer(prosody, "alice", tmp_path))
        assert real.pgp is not None
        holder["pgp"] = real.pgp
        alice = await stack.enter_async_context(
            peer(
                prosody, "alice", tmp_path, openpgp=False, envelope=EvilEnvelope(record_then_replay)
            )
        )
        bob = await stack.enter_async_context(peer(prosody, "bob", tmp_path))
        await meet(alice, bob)
        src = make_file(tmp_path)
        await transfer(alice, bob, src, tmp_path / "first.bin")
        assert (tmp_path / "first.bin").read_bytes() == src.read_bytes()
        text = await refused(alice, bob, src, tmp_path / "second.bin")
        assert "already used for another transfer" in text

        assert bob.pgp is not None
        with pytest.raises(ReplayedEnvelope):
            await bob.pgp.envelope.decrypt(recorded[0], alice.client.jid, AES256GCM)


async def test_tampered_envelope(prosody: ServerInfo, tmp_path: Path) -> None:
    holder: dict[str, OpenPGP] = {}

    async def tamper(secret: TransportSecret, to: JID) -> etree._Element:
        el = await holder["pgp"].seal(secret, to)
        # Flip one bit of the encrypted data packet (the last packet; a flip in a key packet
        # for another of the recipient's keys would go unnoticed, rightly).
        raw = bytearray(base64.b64decode(el.text or ""))
        raw[-20] ^= 0x01
        el.text = base64.b64encode(bytes(raw)).decode()
        return el

    async with AsyncExitStack() as stack:
        real = await stack.enter_async_context(peer(prosody, "alice", tmp_path))
        assert real.pgp is not None
        holder["pgp"] = real.pgp
        alice = await stack.enter_async_context(
            peer(prosody, "alice", tmp_path, openpgp=False, envelope=EvilEnvelope(tamper))
        )
        bob = await stack.enter_async_context(peer(prosody, "bob", tmp_path))
        await meet(alice, bob)
        text = await refused(alice, bob, make_file(tmp_path), tmp_path / "got.bin")
        assert "cannot be decrypted" in text or "not signed" in text

        assert bob.pgp is not None
        with pytest.raises((UndecryptableEnvelope, WrongSigner)):
            await bob.pgp.envelope.decrypt(
                await tamper(TransportSecret.generate(AES256GCM), bob.client.jid),
                alice.client.jid,
                AES256GCM,
            )


# -- a peer without OpenPGP -----------------------------------------------------------------------


async def test_peer_without_published_key(prosody_factory: ProsodyFactory, tmp_path: Path) -> None:
    """On a fresh server Bob runs OpenPGP but never published a key: a clear error each way."""
    server = prosody_factory().info
    async with (
        peer(server, "alice", tmp_path) as alice,
        peer(server, "bob", tmp_path, publish=False) as bob,
    ):
        await meet(alice, bob)
        src = make_file(tmp_path)
        assert (await alice.client.features_of(bob.client.jid)).has(FEATURE)
        with pytest.raises(NoPublicKey, match=r"bob@localhost has published no OpenPGP key"):
            await alice.ft.send_file(src, bob.client.jid)
        # An envelope claiming to come from Bob cannot be authenticated.
        assert alice.pgp is not None
        el = build_openpgp(b"\x00" * 10)
        with pytest.raises(NoPublicKey, match="cannot be authenticated"):
            await alice.pgp.envelope.decrypt(el, bob.client.jid, AES256GCM)


async def test_peer_without_openpgp(prosody: ServerInfo, tmp_path: Path) -> None:
    """Carol does not advertise JET with OpenPGP: never used with her, clear errors."""
    async with (
        peer(prosody, "alice", tmp_path) as alice,
        peer(prosody, "carol", tmp_path, openpgp=False) as carol,
    ):
        await meet(alice, carol)
        src = make_file(tmp_path)
        with pytest.raises(
            jet_trio.EncryptionFailed, match="supports none of our JET envelope methods"
        ):
            await alice.ft.send_file(src, carol.client.jid)
        with pytest.raises(PeerNotSupported, match="does not advertise JET with OpenPGP"):
            await alice.ft.send_file(src, carol.client.jid, encrypt=NS)


# -- a receiver that checks its published key cheaply (the entry point's envelope) ---------------


@asynccontextmanager
async def prepared_peer(
    server: ServerInfo, user: str, data: Path
) -> AsyncIterator[tuple[Peer, PreparedOpenPGPEnvelope]]:
    """``user`` with the OpenPGP envelope the entry point offers (keys in ``data / user``, as
    :func:`peer` keeps them)."""
    async with open_client(
        f"{server.jid(user)}/{user}-{next(_resources)}",
        server.accounts[user],
        host=server.host,
        port=server.port,
        ca_file=server.ca_file,
    ) as client:
        method = PreparedOpenPGPEnvelope(client, data / user / "openpgp")
        async with open_file_transfer(client, extra_plugins=[_Plugin(method)]) as ft:
            yield Peer(client, None, ft), method
            await method.aclose()


async def test_prepared_receiver_decrypts_an_openpgp_offer(
    prosody: ServerInfo, tmp_path: Path
) -> None:
    async with peer(prosody, "bob", tmp_path):  # bob's key is made and published
        pass
    async with prepared_peer(prosody, "bob", tmp_path) as (bob, method):
        assert not method.started, method.start_reason  # all in place: only checked
        assert (await bob.client.features_of(bob.client.jid)).has(FEATURE)
        async with peer(prosody, "alice", tmp_path) as alice:
            await meet(alice, bob)
            src = make_file(tmp_path)
            sent, got = await transfer(alice, bob, src, tmp_path / "got.bin", encrypt=NS)
        assert (tmp_path / "got.bin").read_bytes() == src.read_bytes()
        assert sent.envelope == got.envelope == NS
        assert method.started and method.start_reason == "an OpenPGP offer"


@pytest.mark.parametrize("damage", ["key list", "key", "foreign key"])
async def test_prepared_receiver_publishes_a_missing_key_again(
    prosody: ServerInfo, tmp_path: Path, damage: str
) -> None:
    import pysequoia

    async with peer(prosody, "bob", tmp_path) as first:
        assert first.pgp is not None
        key = first.pgp.key
        own = first.client.jid.bare
        # Another client of bob's account changes what is published.
        other = first.client
        if damage == "key list":
            await other.publish(
                PUBLIC_KEYS_NODE, build_key_list([]), item_id="current", options=PUBLISH_OPTIONS
            )
        elif damage == "key":
            await other.retract(key_node(key.fingerprint), key.created)
        else:
            foreign = pysequoia.Tsk.generate(f"xmpp:{own}").extract_certificate()
            await other.publish(
                key_node(key.fingerprint),
                build_pubkey(bytes(foreign)),
                item_id=key.created,
                options=PUBLISH_OPTIONS,
            )
    with trio.fail_after(30):
        async with prepared_peer(prosody, "bob", tmp_path) as (bob, method):
            assert method.started, "the prepared OpenPGP did not notice"
            said = {
                "key list": "not in our published key list",
                "key": "our OpenPGP key is not published",
                "foreign key": "another one is in its node",
            }[damage]
            assert said in (method.start_reason or ""), method.start_reason
            lists = await bob.client.get_items(own, PUBLIC_KEYS_NODE, max_items=1)
            assert key.fingerprint in [k.fingerprint for k in parse_key_list(lists[-1].payload)]
            items = await bob.client.get_items(own, key_node(key.fingerprint), max_items=1)
            assert parse_pubkey(items[-1].payload, str(own)) == bytes(key.cert)
        # and the next start finds everything in place
        async with prepared_peer(prosody, "bob", tmp_path) as (bob, method):
            assert not method.started, method.start_reason
