"""JET-OMEMO (XEP-0396) file transfers between jet-trio clients through a real Prosody,
with the jet-trio-omemo plugin (python-omemo under trio)."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from jet_trio import JID, EncryptionFailed, SecurityError, TransferResult, open_client
from jet_trio._transfer.service import FileTransfer, open_file_transfer
from jet_trio._xmpp.client import Client
from jet_trio._xmpp.stanza import E
from jet_trio.plugin import Cipher, EnvelopeError, PluginManager, TransportSecret, hookimpl

from ._servers import ProsodyFactory, ServerInfo

if os.environ.get("CI") != "true":  # CI installs every plugin: there, a missing one must fail
    pytest.importorskip("jet_trio_omemo")

import oldmemo.etree
import oldmemo.oldmemo
import omemo
from jet_trio_omemo import (
    OLDMEMO,
    TWOMEMO,
    NoKeyForDevice,
    OmemoSession,
    PreparedOmemo,
    open_omemo,
    prepare_omemo,
)
from jet_trio_omemo import _prepared as prepared_module
from jet_trio_omemo._backends import et_to_lxml
from jet_trio_omemo._prepared import check_file_path, store_path

pytestmark = pytest.mark.integration


@pytest.fixture
def server(prosody_factory: ProsodyFactory) -> ServerInfo:
    """A fresh Prosody per test: OMEMO device lists and bundles start empty."""
    return prosody_factory().info


@dataclass
class Peer:
    client: Client
    omemo: OmemoSession
    ft: FileTransfer


def account_client(s: ServerInfo, user: str, resource: str) -> AbstractAsyncContextManager[Client]:
    """A client of ``user``'s account on the test server, with ``resource``."""
    return open_client(
        f"{s.jid(user)}/{resource}", s.accounts[user], host=s.host, port=s.port, ca_file=s.ca_file
    )


@asynccontextmanager
async def peer(
    stack_server: ServerInfo,
    user: str,
    resource: str,
    data_dir: Path,
    **omemo_kwargs: Any,
) -> AsyncIterator[Peer]:
    async with (
        account_client(stack_server, user, resource) as client,
        open_omemo(client, data_dir, **omemo_kwargs) as omemo,
        open_file_transfer(client) as ft,
    ):
        yield Peer(client, omemo, ft)


def make_file(tmp_path: Path, size: int, name: str = "payload.bin") -> Path:
    src = tmp_path / "src" / name
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(os.urandom(size))
    return src


async def transfer(
    a: Peer, b: Peer | PreparedPeer, src: Path, dest: Path, **send_kwargs: Any
) -> tuple[TransferResult, TransferResult]:
    results: dict[str, TransferResult] = {}

    async def receive() -> None:
        offer = await b.ft.next_offer()
        results["recv"] = await offer.accept(dest)

    async with trio.open_nursery() as n:
        n.start_soon(receive)
        results["send"] = await a.ft.send_file(src, b.client.jid, **send_kwargs)
    return results["send"], results["recv"]


async def test_oldmemo_both_directions_first_contact(server: ServerInfo, tmp_path: Path) -> None:
    src = make_file(tmp_path, 100_000)
    with trio.fail_after(60):
        async with (
            peer(server, "alice", "a", tmp_path / "alice") as a,
            peer(server, "bob", "b", tmp_path / "bob") as b,
        ):
            await a.client.wait_available(b.client.jid)
            await b.client.wait_available(a.client.jid)
            # Both support OMEMO 2 too ("auto" would pick it): legacy OMEMO in Dino's form.
            aes128 = "urn:xmpp:ciphers:aes-128-gcm-nopadding"
            sent, got = await transfer(
                a, b, src, tmp_path / "a2b.bin", encrypt=OLDMEMO, cipher=aes128
            )
            assert got.envelope == sent.envelope == OLDMEMO
            assert got.cipher == sent.cipher == aes128
            assert (tmp_path / "a2b.bin").read_bytes() == src.read_bytes()
            assert got.wire_bytes == 100_000 + 16
            # bob answered alice's pre-key message with an empty OMEMO message; once alice has
            # processed it her session is confirmed and her next key is a plain (non-prekey) one.
            bob_device = (await b.omemo.own_device()).device_id
            cipher = _cipher("urn:xmpp:ciphers:aes-128-gcm-nopadding")
            while True:
                envelope = await a.omemo.envelopes[0].encrypt(
                    TransportSecret.generate(cipher), b.client.jid
                )
                (key,) = envelope.iterfind(f"{{{OLDMEMO}}}header/{{{OLDMEMO}}}key")
                if key.get("prekey") is None:
                    break
                await trio.sleep(0.05)
            assert key.get("rid") == str(bob_device)
            # The Dino/Conversations key transport shape: header sid, key, 12-byte iv, no payload.
            assert envelope.find(f"{{{OLDMEMO}}}payload") is None
            header = envelope.find(f"{{{OLDMEMO}}}header")
            assert header is not None
            assert header.get("sid") == str((await a.omemo.own_device()).device_id)
            assert len(base64.b64decode(header.findtext(f"{{{OLDMEMO}}}iv") or "")) == 12
            opened = await b.omemo.envelopes[0].decrypt(envelope, a.client.jid, cipher)
            assert opened.detail.startswith("OMEMO device")
            # and back, on the sessions just built
            sent, got = await transfer(b, a, src, tmp_path / "b2a.bin", encrypt=OLDMEMO)
            assert got.envelope == OLDMEMO
            # to a jet-trio peer (it advertises AES-256-GCM), legacy OMEMO carries AES-256
            assert got.cipher == "urn:xmpp:ciphers:aes-256-gcm-nopadding"
            assert (tmp_path / "b2a.bin").read_bytes() == src.read_bytes()


async def refused_transfer(a: Peer, b: Peer, src: Path, dest: Path) -> tuple[str, str]:
    """A transfer both sides must end with an EncryptionFailed; returns (sender's, receiver's)
    messages."""
    errors: dict[str, str] = {}

    async def receive() -> None:
        offer = await b.ft.next_offer()
        with pytest.raises(EncryptionFailed) as exc:
            await offer.accept(dest)
        errors["recv"] = str(exc.value)

    async with trio.open_nursery() as n:
        n.start_soon(receive)
        with pytest.raises(EncryptionFailed) as exc:
            await a.ft.send_file(src, b.client.jid)
        errors["send"] = str(exc.value)
    assert not dest.exists()
    return errors["send"], errors["recv"]


async def both_available(a: Peer, b: Peer) -> None:
    await a.client.wait_available(b.client.jid)
    await b.client.wait_available(a.client.jid)


async def test_twomemo_transfer(server: ServerInfo, tmp_path: Path) -> None:
    src = make_file(tmp_path, 50_000)
    with trio.fail_after(60):
        async with (
            peer(server, "alice", "a", tmp_path / "alice") as a,
            peer(server, "bob", "b", tmp_path / "bob") as b,
        ):
            await both_available(a, b)
            sent, got = await transfer(a, b, src, tmp_path / "a2b.bin", encrypt=TWOMEMO)
            assert got.envelope == sent.envelope == TWOMEMO
            assert (tmp_path / "a2b.bin").read_bytes() == src.read_bytes()
            sent, got = await transfer(b, a, src, tmp_path / "b2a.bin", encrypt=TWOMEMO)
            assert (tmp_path / "b2a.bin").read_bytes() == src.read_bytes()


async def test_state_persists_and_warm_sessions_are_reused(
    server: ServerInfo, tmp_path: Path
) -> None:
    src = make_file(tmp_path, 10_000)
    with trio.fail_after(60):
        async with peer(server, "bob", "b", tmp_path / "bob") as b:
            async with peer(server, "alice", "a", tmp_path / "alice") as a:
                await both_available(a, b)
                first_id = (await a.omemo.own_device()).device_id
                await transfer(a, b, src, tmp_path / "1.bin")
            # alice comes back with the same data directory: same device, same sessions
            async with peer(server, "alice", "a", tmp_path / "alice") as a:
                await both_available(a, b)
                assert (await a.omemo.own_device()).device_id == first_id
                ids = [d.device_id for d in await a.omemo.devices(a.client.jid)]
                assert ids == [first_id]  # not a second device of alice
                await transfer(a, b, src, tmp_path / "2.bin")
                await transfer(b, a, src, tmp_path / "3.bin")
    for name in ("1.bin", "2.bin", "3.bin"):
        assert (tmp_path / name).read_bytes() == src.read_bytes()
    assert list((tmp_path / "alice" / "omemo").glob("*.sqlite3"))


async def test_manual_trust_refuses_until_verified(server: ServerInfo, tmp_path: Path) -> None:
    src = make_file(tmp_path, 10_000)
    with trio.fail_after(60):
        async with (
            peer(server, "alice", "a", tmp_path / "alice", trust="manual") as a,
            peer(server, "bob", "b", tmp_path / "bob", trust="manual") as b,
        ):
            await both_available(a, b)
            bob_fp = (await b.omemo.own_device()).fingerprint
            alice_fp = (await a.omemo.own_device()).fingerprint
            # Sending: bob's device is undecided under manual trust -> refused, naming it.
            with pytest.raises(SecurityError) as sending:
                await a.ft.send_file(src, b.client.jid)
            assert bob_fp in str(sending.value)
            # alice verifies bob's device; bob has not verified alice's yet: he refuses.
            (bob_dev,) = await a.omemo.devices(b.client.jid)
            assert bob_dev.fingerprint == bob_fp and bob_dev.trust == "undecided"
            await a.omemo.set_trust(b.client.jid, bob_fp, True)
            sent, got = await refused_transfer(a, b, src, tmp_path / "refused.bin")
            assert alice_fp in got and "not trusted" in got
            assert "security-error" in sent
            # bob verifies alice's device by id: the transfer goes through.
            alice_dev = (await a.omemo.own_device()).device_id
            await b.omemo.devices(a.client.jid)
            await b.omemo.set_trust(a.client.jid, alice_dev, True)
            await transfer(a, b, src, tmp_path / "ok.bin")
            assert (tmp_path / "ok.bin").read_bytes() == src.read_bytes()


async def test_btbv_distrusted_device_is_refused(server: ServerInfo, tmp_path: Path) -> None:
    src = make_file(tmp_path, 10_000)
    with trio.fail_after(60):
        async with (
            peer(server, "alice", "a", tmp_path / "alice") as a,
            peer(server, "bob", "b", tmp_path / "bob") as b,
        ):
            await both_available(a, b)
            assert b.omemo.trust_policy.value == "btbv"
            await transfer(a, b, src, tmp_path / "ok.bin")  # blind trust
            alice_fp = (await a.omemo.own_device()).fingerprint
            await b.omemo.set_trust(a.client.jid, alice_fp, False)
            sent, got = await refused_transfer(a, b, src, tmp_path / "refused.bin")
            assert alice_fp in got and "untrusted" in got
            assert alice_fp in sent  # the reason text reaches the sender


def _cipher(urn: str) -> Cipher:
    return PluginManager(entry_points=False).cipher(urn)


async def test_tampered_key_is_refused(server: ServerInfo, tmp_path: Path) -> None:
    cipher = _cipher("urn:xmpp:ciphers:aes-128-gcm-nopadding")
    with trio.fail_after(60):
        async with (
            peer(server, "alice", "a", tmp_path / "alice") as a,
            peer(server, "bob", "b", tmp_path / "bob") as b,
        ):
            await both_available(a, b)
            secret = TransportSecret.generate(cipher)
            envelope = await a.omemo.envelopes[0].encrypt(secret, b.client.jid)
            key = envelope.find(f"{{{OLDMEMO}}}header/{{{OLDMEMO}}}key")
            assert key is not None and key.text and key.get("prekey") == "true"
            raw = bytearray(base64.b64decode(key.text))
            raw[-12] ^= 0x01  # inside the encrypted key, under the MAC
            key.text = base64.b64encode(bytes(raw)).decode()
            with pytest.raises(EnvelopeError, match="cannot decrypt"):
                await b.omemo.envelopes[0].decrypt(envelope, a.client.jid, cipher)
            # The untouched envelope still opens (the failed attempt changed nothing).
            envelope = await a.omemo.envelopes[0].encrypt(secret, b.client.jid)
            opened = await b.omemo.envelopes[0].decrypt(envelope, a.client.jid, cipher)
            assert opened.secret.key == secret.key and opened.secret.iv == secret.iv
            assert opened.sender_identity == a.client.jid.bare


async def test_key_from_another_jid_is_refused(server: ServerInfo, tmp_path: Path) -> None:
    """carol's envelope for bob, replayed in a transfer from alice: not a device of alice."""
    cipher = _cipher("urn:xmpp:ciphers:aes-128-gcm-nopadding")
    with trio.fail_after(60):
        async with (
            peer(server, "alice", "a", tmp_path / "alice") as a,
            peer(server, "bob", "b", tmp_path / "bob") as b,
            peer(server, "carol", "c", tmp_path / "carol") as c,
        ):
            await both_available(a, b)
            await both_available(c, b)
            secret = TransportSecret.generate(cipher)
            from_carol = await c.omemo.envelopes[0].encrypt(secret, b.client.jid)
            with pytest.raises(EnvelopeError, match="not a device of alice@"):
                await b.omemo.envelopes[0].decrypt(from_carol, a.client.jid, cipher)
            # As carol's own, it opens, and is bound to carol.
            opened = await b.omemo.envelopes[0].decrypt(from_carol, c.client.jid, cipher)
            assert opened.sender_identity == c.client.jid.bare


async def test_envelope_without_key_for_our_device(server: ServerInfo, tmp_path: Path) -> None:
    """What Dino sends before any OMEMO exchange: an envelope with no key for the receiver."""
    cipher = _cipher("urn:xmpp:ciphers:aes-128-gcm-nopadding")
    with trio.fail_after(60):
        async with (
            peer(server, "alice", "a", tmp_path / "alice") as a,
            peer(server, "bob", "b", tmp_path / "bob") as b,
        ):
            await both_available(a, b)
            envelope = await a.omemo.envelopes[0].encrypt(
                TransportSecret.generate(cipher), b.client.jid
            )
            # bob's second device appears after alice encrypted: nothing in it for that device.
            async with peer(server, "bob", "b2", tmp_path / "bob2") as b2:
                own = (await b2.omemo.own_device()).device_id
                with pytest.raises(NoKeyForDevice, match=f"no key for this device \\(id {own}\\)"):
                    await b2.omemo.envelopes[0].decrypt(envelope, a.client.jid, cipher)


async def test_smack_form_with_payload_is_accepted(server: ServerInfo, tmp_path: Path) -> None:
    """Smack/aTalk: a full OMEMO message whose payload is base64(key ‖ IV), AES-256-GCM."""
    cipher = _cipher("urn:xmpp:ciphers:aes-256-gcm-nopadding")
    with trio.fail_after(60):
        async with (
            peer(server, "alice", "a", tmp_path / "alice") as a,
            peer(server, "bob", "b", tmp_path / "bob") as b,
        ):
            await both_available(a, b)
            secret = TransportSecret.generate(cipher)
            text = base64.b64encode(secret.to_bytes())
            await a.omemo.refresh_devices(b.client.jid)
            messages, _ = await a.omemo.manager.encrypt(
                frozenset({str(b.client.jid.bare)}),
                {OLDMEMO: text, TWOMEMO: text},
                backend_priority_order=[OLDMEMO],
            )
            (message,) = messages
            element = et_to_lxml(oldmemo.etree.serialize_message(message))
            assert element.find(f"{{{OLDMEMO}}}payload") is not None
            opened = await b.omemo.envelopes[0].decrypt(element, a.client.jid, cipher)
            assert opened.secret.to_bytes() == secret.to_bytes()


async def test_rotation_runs_in_trio_and_shutdown_is_clean(
    server: ServerInfo, tmp_path: Path
) -> None:
    s = server
    with trio.fail_after(60):
        async with account_client(s, "alice", "a") as client:
            omemo = await OmemoSession.start(
                client, tmp_path / "alice", namespaces=[OLDMEMO], rotation_period=1.0
            )
            device = (await omemo.own_device()).device_id
            node = f"{OLDMEMO}.bundles:{device}"

            async def published_spk_id() -> str:
                (item,) = await client.get_items(client.jid.bare, node)
                assert item.payload is not None
                spk = item.payload.find(f"{{{OLDMEMO}}}signedPreKeyPublic")
                assert spk is not None
                return spk.get("signedPreKeyId", "")

            before = await published_spk_id()
            assert omemo.rotation_running
            await omemo.wait_rotation()
            await omemo.wait_rotation()
            assert omemo.rotations >= 2
            assert await published_spk_id() != before
            await omemo.aclose()
            assert not omemo.rotation_running
            rotations = omemo.rotations
            await trio.sleep(2.5)
            assert omemo.rotations == rotations  # stopped
            assert await client.ping() >= 0  # the client lives on
            await omemo.aclose()  # idempotent


async def test_device_list_followed_through_pep(server: ServerInfo, tmp_path: Path) -> None:
    """bob's new device reaches alice by PEP notification (no fetch), and gets the next key."""
    cipher = _cipher("urn:xmpp:ciphers:aes-128-gcm-nopadding")
    with trio.fail_after(60):
        async with (
            peer(server, "alice", "a", tmp_path / "alice") as a,
            peer(server, "bob", "b", tmp_path / "bob") as b,
        ):
            await both_available(a, b)
            assert len(await a.omemo.devices(b.client.jid)) == 1
            async with peer(server, "bob", "b2", tmp_path / "bob2") as b2:
                new_id = (await b2.omemo.own_device()).device_id
                for _ in range(200):  # PEP pushes the new list; no fetch here (refresh=False)
                    listed = await a.omemo.devices(b.client.jid, refresh=False)
                    if new_id in [d.device_id for d in listed]:
                        break
                    await trio.sleep(0.05)
                else:
                    pytest.fail("bob's new device never reached alice through PEP")
                envelope = await a.omemo.envelopes[0].encrypt(
                    TransportSecret.generate(cipher), b.client.jid
                )
                rids = {k.get("rid") for k in envelope.iter(f"{{{OLDMEMO}}}key")}
                assert rids == {str(new_id), str((await b.omemo.own_device()).device_id)}
                await b2.omemo.envelopes[0].decrypt(envelope, a.client.jid, cipher)


async def test_concurrent_first_contact_transfers(server: ServerInfo, tmp_path: Path) -> None:
    """Two offers to a new contact at once: one session is built, both transfers succeed."""
    srcs = [make_file(tmp_path, 20_000, f"f{i}.bin") for i in range(2)]
    with trio.fail_after(60):
        async with (
            peer(server, "alice", "a", tmp_path / "alice") as a,
            peer(server, "bob", "b", tmp_path / "bob") as b,
        ):
            await both_available(a, b)
            received: list[Path] = []

            async def receive_two() -> None:
                async with trio.open_nursery() as n:
                    for _ in range(2):
                        offer = await b.ft.next_offer()
                        dest = tmp_path / f"got-{offer.name}"
                        received.append(dest)
                        n.start_soon(offer.accept, dest)

            async with trio.open_nursery() as n:
                n.start_soon(receive_two)
                for src in srcs:
                    n.start_soon(a.ft.send_file, src, b.client.jid)
            assert sorted(p.name for p in received) == ["got-f0.bin", "got-f1.bin"]
            for src in srcs:
                assert (tmp_path / f"got-{src.name}").read_bytes() == src.read_bytes()


async def test_bundle_published_under_another_item_id(server: ServerInfo, tmp_path: Path) -> None:
    """Dino 0.4 publishes its legacy bundle as item '1', not 'current': still found."""
    src = make_file(tmp_path, 10_000)
    with trio.fail_after(60):
        async with (
            peer(server, "alice", "a", tmp_path / "alice") as a,
            peer(server, "bob", "b", tmp_path / "bob") as b,
        ):
            await both_available(a, b)
            node = f"{OLDMEMO}.bundles:{(await b.omemo.own_device()).device_id}"
            (item,) = await b.client.get_items(b.client.jid.bare, node)
            assert item.id == "current" and item.payload is not None
            await b.client.publish(
                node, item.payload, item_id="1", options={"pubsub#access_model": "open"}
            )
            assert [i.id for i in await a.client.get_items(b.client.jid.bare, node)] == ["1"]
            sent, _ = await transfer(a, b, src, tmp_path / "got.bin", encrypt=OLDMEMO)
            assert sent.envelope == OLDMEMO
            assert (tmp_path / "got.bin").read_bytes() == src.read_bytes()


async def test_used_pre_key_is_replaced_in_the_published_bundle(
    server: ServerInfo, tmp_path: Path
) -> None:
    cipher = _cipher("urn:xmpp:ciphers:aes-128-gcm-nopadding")
    with trio.fail_after(60):
        async with (
            peer(server, "alice", "a", tmp_path / "alice") as a,
            peer(server, "bob", "b", tmp_path / "bob") as b,
        ):
            await both_available(a, b)
            node = f"{OLDMEMO}.bundles:{(await b.omemo.own_device()).device_id}"

            async def published_pre_keys() -> set[str]:
                (item,) = await a.client.get_items(b.client.jid.bare, node)
                assert item.payload is not None
                return {
                    pk.get("preKeyId", "") for pk in item.payload.iter(f"{{{OLDMEMO}}}preKeyPublic")
                }

            before = await published_pre_keys()
            assert len(before) == 100
            envelope = await a.omemo.envelopes[0].encrypt(
                TransportSecret.generate(cipher), b.client.jid
            )
            (key,) = envelope.iter(f"{{{OLDMEMO}}}key")
            kex, _ = oldmemo.oldmemo.KeyExchangeImpl.parse(base64.b64decode(key.text or ""), False)
            used = str(kex.pre_key_id)
            assert used in before
            await b.omemo.envelopes[0].decrypt(envelope, a.client.jid, cipher)
            after = await published_pre_keys()
            assert used not in after and len(after) == 100  # replaced and refilled


# A process that does OMEMO transfers both ways (legacy OMEMO first contact, OMEMO 2) and then
# lists the modules it loaded: the OMEMO elements go through the plugin's own lxml codecs, so
# neither the backends' ElementTree codecs nor xmlschema (~0.5 s CPU, ~14 MiB) are imported.
_TRANSFER_PROCESS = """
import json, os, sys
from pathlib import Path
import trio
from jet_trio import open_client, open_file_transfer
from jet_trio_omemo import OLDMEMO, TWOMEMO, open_omemo

cfg = json.loads(sys.argv[1])
work = Path(cfg["work"])

async def transfers():
    opts = dict(host=cfg["host"], port=cfg["port"], ca_file=cfg["ca_file"])
    async with (
        open_client(cfg["alice"] + "/a", cfg["alice_pw"], **opts) as a,
        open_client(cfg["bob"] + "/b", cfg["bob_pw"], **opts) as b,
        open_omemo(a, work / "a"), open_omemo(b, work / "b"),
        open_file_transfer(a) as fa, open_file_transfer(b) as fb,
    ):
        await a.wait_available(b.jid)
        await b.wait_available(a.jid)
        src = work / "src.bin"
        src.write_bytes(os.urandom(1024))
        envelopes = []
        for n, (one, two, ns) in enumerate([(fa, fb, OLDMEMO), (fb, fa, TWOMEMO)]):
            async with trio.open_nursery() as nursery:
                async def receive(two=two, n=n):
                    offer = await two.next_offer()
                    result = await offer.accept(work / f"got{n}.bin")
                    envelopes.append(result.envelope)
                nursery.start_soon(receive)
                await one.send_file(src, (b if one is fa else a).jid, encrypt=ns)
            assert (work / f"got{n}.bin").read_bytes() == src.read_bytes()
    heavy = sorted(
        m for m in sys.modules
        if m.split(".")[0] in ("xmlschema", "elementpath")
        or m in ("oldmemo.etree", "twomemo.etree")
    )
    print(json.dumps({"envelopes": envelopes, "heavy": heavy,
                      "codecs": "jet_trio_omemo._codecs" in sys.modules}))

async def main():
    with trio.fail_after(90):
        await transfers()

trio.run(main)
"""


async def test_omemo_transfer_process_imports_no_schema_codec(
    server: ServerInfo, tmp_path: Path
) -> None:
    cfg = {
        "work": str(tmp_path),
        "host": server.host,
        "port": server.port,
        "ca_file": server.ca_file,
        "alice": server.jid("alice"),
        "alice_pw": server.password("alice"),
        "bob": server.jid("bob"),
        "bob_pw": server.password("bob"),
    }
    proc = await trio.run_process(
        [sys.executable, "-P", "-c", _TRANSFER_PROCESS, json.dumps(cfg)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    result = json.loads(proc.stdout.decode().splitlines()[-1])
    assert result == {"envelopes": [OLDMEMO, TWOMEMO], "heavy": [], "codecs": True}


async def test_hostile_device_list_and_bundle_are_refused(
    server: ServerInfo, tmp_path: Path
) -> None:
    """What a contact publishes goes through the plugin's bounded codecs: a device list of 300
    devices and a bundle that is not base64 are refused with typed errors naming what was
    wrong; with them fixed, the transfer works."""
    from lxml import etree

    src = make_file(tmp_path, 1_000)
    aes128 = _cipher("urn:xmpp:ciphers:aes-128-gcm-nopadding")
    opts = {"pubsub#access_model": "open"}
    with trio.fail_after(90):
        async with (
            peer(server, "alice", "a", tmp_path / "alice") as a,
            peer(server, "bob", "b", tmp_path / "bob") as b,
        ):
            await both_available(a, b)
            bob = b.client.jid.bare
            bob_device = (await b.omemo.own_device()).device_id
            devices_node = f"{OLDMEMO}.devicelist"
            (good_list,) = await b.client.get_items(bob, devices_node)
            assert good_list.payload is not None
            huge = etree.Element(f"{{{OLDMEMO}}}list", nsmap={None: OLDMEMO})  # type: ignore[dict-item]
            for i in range(1, 301):
                etree.SubElement(huge, f"{{{OLDMEMO}}}device", id=str(i))
            await b.client.publish(devices_node, huge, item_id="current", options=opts)
            # Fetched on purpose: refused with the reason. As a PEP notification it is dropped
            # (logged) and the devices known before stay.
            with pytest.raises(omemo.DeviceListDownloadFailed, match="more than 256 entries"):
                await a.omemo.refresh_devices(bob)
            known = await a.omemo.devices(bob, refresh=False)
            assert [d.device_id for d in known] == [bob_device]
            await b.client.publish(devices_node, good_list.payload, item_id="current", options=opts)

            bundle_node = f"{OLDMEMO}.bundles:{bob_device}"
            (good_bundle,) = await b.client.get_items(bob, bundle_node)
            assert good_bundle.payload is not None
            broken = etree.fromstring(etree.tostring(good_bundle.payload))
            key = broken.find(f"{{{OLDMEMO}}}identityKey")
            assert key is not None
            key.text = "not base64!"
            await b.client.publish(bundle_node, broken, item_id="current", options=opts)
            with pytest.raises(omemo.BundleDownloadFailed, match="<identityKey>: not valid base64"):
                await a.omemo.manager._download_bundle(OLDMEMO, str(bob), bob_device)
            with pytest.raises(EnvelopeError):  # no device left to encrypt to
                await a.omemo.envelopes[0].encrypt(TransportSecret.generate(aes128), b.client.jid)
            await b.client.publish(
                bundle_node, good_bundle.payload, item_id="current", options=opts
            )
            sent, _ = await transfer(a, b, src, tmp_path / "got.bin", encrypt=OLDMEMO)
            assert sent.envelope == OLDMEMO
            assert (tmp_path / "got.bin").read_bytes() == src.read_bytes()


# -- a receiver that prepares OMEMO and starts it on first need (jet_trio_omemo._prepared) -----


@dataclass
class PreparedPeer:
    client: Client
    omemo: PreparedOmemo
    ft: FileTransfer


@asynccontextmanager
async def prepared_peer(
    s: ServerInfo, user: str, resource: str, data_dir: Path, **omemo_kwargs: Any
) -> AsyncIterator[PreparedPeer]:
    async with (
        account_client(s, user, resource) as client,
        prepare_omemo(client, data_dir, **omemo_kwargs) as prepared,
        open_file_transfer(client, plugins=PluginManager(plugins=[_Envelopes(prepared)])) as ft,
    ):
        await client.send_presence()
        yield PreparedPeer(client, prepared, ft)


class _Envelopes:
    """A plugin object offering a prepared OMEMO's envelope methods."""

    def __init__(self, prepared: PreparedOmemo) -> None:
        self._prepared = prepared

    @hookimpl
    def jet_register_envelopes(self, config: object) -> list[Any]:
        return list(self._prepared.envelopes)


async def published_ids(client: Client, owner: Client, ns: str) -> set[int]:
    node = f"{OLDMEMO}.devicelist" if ns == OLDMEMO else f"{TWOMEMO}:devices"
    items = await client.get_items(owner.jid.bare, node, max_items=1)
    payload = next(i.payload for i in items if i.payload is not None)
    return {int(d.get("id") or 0) for d in payload}


async def make_identity(s: ServerInfo, user: str, data_dir: Path) -> int:
    """Run the full session once (identity made and published); returns the device id."""
    async with peer(s, user, "first", data_dir) as p:
        return (await p.omemo.own_device()).device_id


async def test_prepared_receiver_starts_omemo_on_the_first_offer(
    server: ServerInfo, tmp_path: Path
) -> None:
    src = make_file(tmp_path, 10_000)
    with trio.fail_after(60):
        await make_identity(server, "bob", tmp_path / "bob")
        async with prepared_peer(server, "bob", "b", tmp_path / "bob") as b:
            assert not b.omemo.started  # the device and bundles are published: nothing to do
            # what peers rely on is advertised without the session
            features = b.client.disco_info.features
            assert "urn:xmpp:jingle:jet-omemo:0" in features
            assert f"{OLDMEMO}.devicelist+notify" in features
            async with peer(server, "alice", "a", tmp_path / "alice") as a:
                await a.client.wait_available(b.client.jid)
                sent, got = await transfer(a, b, src, tmp_path / "got.bin", encrypt=OLDMEMO)
            assert got.envelope == sent.envelope == OLDMEMO
            assert (tmp_path / "got.bin").read_bytes() == src.read_bytes()
            assert b.omemo.started and b.omemo.start_reason == "an envelope method is used"


@pytest.mark.parametrize("missing", ["device list", "legacy bundle", "OMEMO 2 bundle"])
async def test_prepared_omemo_publishes_a_missing_device_or_bundle_again(
    server: ServerInfo, tmp_path: Path, missing: str
) -> None:
    with trio.fail_after(60):
        device = await make_identity(server, "bob", tmp_path / "bob")
        # Another client of bob's account changes what is published.
        async with account_client(server, "bob", "other") as other:
            if missing == "device list":
                other_list = et_to_lxml(oldmemo.etree.serialize_device_list({12345: None}))
                await other.publish(f"{OLDMEMO}.devicelist", other_list, item_id="current")
            elif missing == "legacy bundle":
                await other.retract(f"{OLDMEMO}.bundles:{device}", "current")
            else:
                await other.retract(f"{TWOMEMO}:bundles", str(device))
            async with prepared_peer(server, "bob", "b", tmp_path / "bob") as b:
                assert b.omemo.started, "the prepared OMEMO did not notice"
                # (a device list notification may come before the check reads the list)
                said = {
                    "device list": f"published {OLDMEMO} device list",
                    "legacy bundle": f"our {OLDMEMO} bundle is not published",
                    "OMEMO 2 bundle": f"our {TWOMEMO} bundle is not published",
                }[missing]
                assert said in (b.omemo.start_reason or ""), b.omemo.start_reason
                assert device in await published_ids(other, b.client, OLDMEMO)
                assert device in await published_ids(other, b.client, TWOMEMO)
                legacy = await other.get_items(b.client.jid.bare, f"{OLDMEMO}.bundles:{device}")
                assert any(i.payload is not None for i in legacy)
                two = await other.get_items(
                    b.client.jid.bare, f"{TWOMEMO}:bundles", item_ids=[str(device)]
                )
                assert any(i.payload is not None for i in two)
            # and the next start finds everything in place
            async with prepared_peer(server, "bob", "b", tmp_path / "bob") as b:
                assert not b.omemo.started, b.omemo.start_reason


async def test_own_device_list_without_us_before_any_offer(
    server: ServerInfo, tmp_path: Path
) -> None:
    """Another client of ours publishes a device list without this device while OMEMO is only
    prepared: the session starts and publishes the list again with our device."""
    with trio.fail_after(60):
        device = await make_identity(server, "bob", tmp_path / "bob")
        async with prepared_peer(server, "bob", "b", tmp_path / "bob") as b:
            assert not b.omemo.started
            other_list = et_to_lxml(oldmemo.etree.serialize_device_list({12345: None}))
            await b.client.publish(f"{OLDMEMO}.devicelist", other_list, item_id="current")
            for _ in range(400):
                if device in await published_ids(b.client, b.client, OLDMEMO):
                    break
                await trio.sleep(0.05)
            else:
                pytest.fail("our device was never published again")
            assert b.omemo.started
            assert "no longer has our device" in (b.omemo.start_reason or "")


async def test_contact_device_lists_before_the_session_starts_are_kept(
    server: ServerInfo, tmp_path: Path
) -> None:
    """A contact's device list notification that comes while OMEMO is only prepared is kept and
    applied when the session starts (as the running session would have on arrival); an OMEMO
    chat message (with payload) starts nothing."""
    with trio.fail_after(60):
        await make_identity(server, "bob", tmp_path / "bob")
        async with prepared_peer(server, "bob", "b", tmp_path / "bob") as b:
            async with (
                peer(server, "alice", "a", tmp_path / "alice") as a,
                peer(server, "alice", "a2", tmp_path / "alice2") as a2,
            ):
                await b.client.wait_available(a.client.jid)
                devices = {(await p.omemo.own_device()).device_id for p in (a, a2)}
                chat = E(
                    "{jabber:client}message",
                    {"to": str(b.client.jid.bare), "type": "chat"},
                    E(f"{{{OLDMEMO}}}encrypted", None, E(f"{{{OLDMEMO}}}payload", text="AAAA")),
                )
                await a.client.send(chat)
                await a.client.ping()  # the server handled what alice sent before
                await trio.sleep(0.5)  # and pushed it to bob
            assert not b.omemo.started
            session = await b.omemo.session()
            for _ in range(100):  # the session's worker applies the kept events in order
                known = {d.device_id for d in await session.devices(a.client.jid, refresh=False)}
                if devices <= known:
                    break
                await trio.sleep(0.05)
            assert devices <= known  # learnt from the kept notification, not fetched


async def test_omemo_message_before_the_first_offer_starts_the_session(
    server: ServerInfo, tmp_path: Path
) -> None:
    """An OMEMO message without payload (here a key exchange) for a prepared OMEMO starts the
    session, which processes it: it answers alice's key exchange, so her session with us is
    confirmed and her next key is no longer a pre-key message."""
    cipher = _cipher("urn:xmpp:ciphers:aes-128-gcm-nopadding")
    with trio.fail_after(60):
        await make_identity(server, "bob", tmp_path / "bob")
        async with (
            prepared_peer(server, "bob", "b", tmp_path / "bob") as b,
            peer(server, "alice", "a", tmp_path / "alice") as a,
        ):
            await a.client.wait_available(b.client.jid)
            envelope = await a.omemo.envelopes[0].encrypt(
                TransportSecret.generate(cipher), b.client.jid
            )
            key = envelope.find(f".//{{{OLDMEMO}}}key")
            assert key is not None and key.get("prekey") == "true"
            message = E(
                "{jabber:client}message", {"to": str(b.client.jid.bare), "type": "chat"}, envelope
            )
            await a.client.send(message)
            while True:
                envelope = await a.omemo.envelopes[0].encrypt(
                    TransportSecret.generate(cipher), b.client.jid
                )
                key = envelope.find(f".//{{{OLDMEMO}}}key")
                if key is not None and key.get("prekey") is None:
                    break
                await trio.sleep(0.05)
            assert b.omemo.started
            assert "an OMEMO message" in (b.omemo.start_reason or "")


async def test_prepared_omemo_starts_when_the_signed_pre_key_is_due(
    server: ServerInfo, tmp_path: Path
) -> None:
    """The signed pre key rotation needs the session: a prepared OMEMO starts it when the key is
    due, at start or later while it waits (then the session rotates it)."""
    with trio.fail_after(60):
        await make_identity(server, "bob", tmp_path / "bob")
        async with prepared_peer(server, "bob", "b", tmp_path / "bob", rotation_period=4.0) as b:
            assert not b.omemo.started, b.omemo.start_reason
            session = await _started(b.omemo)
            assert b.omemo.start_reason == "a signed pre key is due for rotation"
            if session.rotations == 0:
                await session.wait_rotation()
        await trio.sleep(0.5)
        async with prepared_peer(
            server, "bob", "b", tmp_path / "bob", rotation_period=0.2
        ) as b:  # due already
            assert b.omemo.started
            assert b.omemo.start_reason == "a signed pre key is due for rotation"


async def _started(prepared: PreparedOmemo) -> OmemoSession:
    for _ in range(300):
        if prepared.started:
            return await prepared.session()
        await trio.sleep(0.05)
    pytest.fail("the session never started")


def _check_file(s: ServerInfo, data_dir: Path) -> Path:
    return check_file_path(store_path(data_dir, JID(s.jid("bob"))))


@pytest.fixture
def store_reads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Each read of an OMEMO store with sqlite3 by the prepared check or the check file."""
    calls: list[object] = []
    real = prepared_module._read_sqlite

    def spy(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(prepared_module, "_read_sqlite", spy)
    return calls


async def test_prepared_omemo_reads_the_check_file_not_the_store(
    server: ServerInfo, tmp_path: Path, store_reads: list[object]
) -> None:
    with trio.fail_after(60):
        device = await make_identity(server, "bob", tmp_path / "bob")
        data = json.loads(_check_file(server, tmp_path / "bob").read_text())
        assert data["device_id"] == device
        store_reads.clear()
        async with prepared_peer(server, "bob", "b", tmp_path / "bob") as b:
            assert not b.omemo.started, b.omemo.start_reason
        assert store_reads == []


@pytest.mark.parametrize(
    "stale", ["corrupt", "identity key", "device id", "rotation time", "store digest"]
)
async def test_a_bad_or_stale_check_file_never_skips_a_start(
    server: ServerInfo, tmp_path: Path, store_reads: list[object], stale: str
) -> None:
    """A check file that is unreadable or was made for other store contents makes the check read
    the store (as without a check file); one whose values differ from what is published or say
    the signed pre key is due starts the full session."""
    with trio.fail_after(60):
        device = await make_identity(server, "bob", tmp_path / "bob")
        path = _check_file(server, tmp_path / "bob")
        data = json.loads(path.read_text())
        if stale == "corrupt":
            path.write_text('{"version": 1, "device_id": ')
        elif stale == "identity key":
            data["identity_key"] = base64.b64encode(bytes(range(32))).decode()
        elif stale == "device id":
            data["device_id"] = device ^ 0x5A5A5A
        elif stale == "rotation time":
            data["signed_pre_key_times"] = dict.fromkeys(data["signed_pre_key_times"], 0)
        else:  # the store changed since: its values are read, the file's are not used
            data["store_sha256"] = "0" * 64
            data["signed_pre_key_times"] = dict.fromkeys(data["signed_pre_key_times"], 0)
        if stale != "corrupt":
            path.write_text(json.dumps(data))
        store_reads.clear()
        async with prepared_peer(server, "bob", "b", tmp_path / "bob") as b:
            reason = b.omemo.start_reason or ""
            if stale in ("corrupt", "store digest"):
                assert not b.omemo.started, reason
                assert store_reads  # read as without a check file...
                assert json.loads(path.read_text())["device_id"] == device  # ...and written anew
            else:
                assert b.omemo.started
                said = {
                    "identity key": "bundle is not published (or is not ours)",
                    "device id": "device list",
                    "rotation time": "due for rotation",
                }[stale]
                assert said in reason, reason


async def test_check_file_of_a_replaced_store_is_not_used(
    server: ServerInfo, tmp_path: Path
) -> None:
    """The store is replaced (a new identity) and the check file left is the old identity's,
    whose device and bundles are still published while the new device is not in our legacy
    list: the check must not take the old values, it starts the session, which publishes the
    new device again."""
    with trio.fail_after(90):
        first = await make_identity(server, "bob", tmp_path / "bob")
        path = _check_file(server, tmp_path / "bob")
        old = path.read_bytes()
        store = store_path(tmp_path / "bob", JID(server.jid("bob")))
        for f in store.parent.iterdir():
            f.unlink()
        second = await make_identity(server, "bob", tmp_path / "bob")
        assert second != first
        path.write_bytes(old)
        async with account_client(server, "bob", "other") as other:
            only_first = et_to_lxml(oldmemo.etree.serialize_device_list({first: None}))
            await other.publish(f"{OLDMEMO}.devicelist", only_first, item_id="current")
            async with prepared_peer(server, "bob", "b", tmp_path / "bob") as b:
                assert b.omemo.started, "the old identity's check file was used"
                assert f"our device {second}" in (b.omemo.start_reason or "")
                assert second in await published_ids(other, b.client, OLDMEMO)
