"""JET-OMEMO (XEP-0396 with legacy OMEMO, ``eu.siacs.conversations.axolotl``) between jet-trio
(with the jet-trio-omemo plugin) and a live Dino 0.4.2 whose conversation with bob is set to OMEMO.

C runs before D (conftest orders this module after the unencrypted tests): D needs the OMEMO
session that C leaves in Dino, since Dino encrypts a transfer key only to devices it already has
a session with. Both use one OMEMO device for bob (its state is kept in the lab directory).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from ._lab import DINO_ENCRYPTION_OMEMO, Lab
from ._peer import SIZE, jet_peer, make_file, say_hello, sha256

pytest.importorskip("jet_trio_omemo", reason="the jet-trio-omemo plugin is not installed")

OLDMEMO = "eu.siacs.conversations.axolotl"
AES128_GCM = "urn:xmpp:ciphers:aes-128-gcm-nopadding"
PEER = "bob@localhost"

#: Known failure (jet-trio-omemo, not Dino): the plugin fetches a contact's legacy OMEMO bundle
#: by item id ``current`` (``<items node='eu.siacs.conversations.axolotl.bundles:ID'><item
#: id='current'/></items>``), but Dino 0.4.2 publishes its bundle as item ``1``: Prosody answers
#: ``item-not-found``, jet-trio finds no device of Dino to encrypt to (C), so Dino never gets a
#: session with jet-trio's device and sends D's envelope without a key for it. Fetching the node
#: without an item id (``max_items=1``), as Dino does, makes C and D pass (tried in the lab).
pytestmark = pytest.mark.interop


async def _omemo_conversation(lab: Lab) -> None:
    """Dino's conversation with bob exists and is set to OMEMO (Dino restarts if needed)."""
    dino = lab.dino
    if dino.conversation_id(PEER) is None:
        async with jet_peer(lab, "hello") as (client, _, _):
            await say_hello(client, dino.account.bare_jid)
            await trio.to_thread.run_sync(dino.wait_conversation, PEER)
    await trio.to_thread.run_sync(lab.set_conversation_encryption, PEER, DINO_ENCRYPTION_OMEMO)


def _omemo_dir(lab: Lab) -> Path:
    return lab.base / "jet-omemo"


async def test_dino_receives_jet_omemo(dino_lab: Lab, tmp_path: Path) -> None:
    """C: jet-trio -> Dino, JET-OMEMO (legacy OMEMO key transport, AES-128-GCM), S5B; Dino
    auto-accepts and stores the decrypted file."""
    await _omemo_conversation(dino_lab)
    name = f"jet-omemo-to-dino-{os.urandom(4).hex()}.bin"
    src = make_file(tmp_path, name)
    dino = dino_lab.dino
    started = time.monotonic()
    with trio.fail_after(90):
        async with jet_peer(dino_lab, "jet-c", omemo_dir=_omemo_dir(dino_lab)) as (
            client,
            ft,
            _,
        ):
            await say_hello(client, dino.account.bare_jid)
            await trio.sleep(2)  # Dino learns our device list (PEP) and caps
            result = await ft.send_file(src, dino_lab.dino_jid, encrypt=OLDMEMO, transport="s5b")
            stored = await trio.to_thread.run_sync(dino.wait_received, name, SIZE)
    elapsed = time.monotonic() - started
    assert result.envelope == OLDMEMO
    assert result.cipher == AES128_GCM
    assert result.wire_bytes == SIZE + 16
    assert sha256(stored) == sha256(src)
    print(
        f"\njet-trio -> Dino (JET-OMEMO): {result.transport}, {result.seconds:.2f} s transfer, "
        f"{elapsed:.2f} s with login"
    )


@pytest.mark.parametrize(
    ("options", "size"),
    [
        ({}, SIZE),
        ({"direct_addresses": None, "stall_timeout": 15.0}, 1 << 20),
        ({"prepared": True}, SIZE),
    ],
    ids=["any", "proxy", "prepared"],
)
async def test_dino_sends_jet_omemo(
    dino_lab: Lab, tmp_path: Path, options: dict[str, Any], size: int
) -> None:
    """D: Dino -> jet-trio, JET-OMEMO: Dino's UI sends a file in its OMEMO conversation;
    jet-trio decrypts (GCM tag checked) and compares the bytes. ``proxy``: jet-trio offers no
    direct candidate (as behind a NAT): 1 MiB through Prosody's proxy, which holds back the
    last bytes, the tag among them, until Dino closes its connection (docs/protocol.rst).
    ``prepared``: jet-trio runs OMEMO as ``jet-trio receive`` does, without the OMEMO libraries
    until Dino's offer comes (its device and bundles found published, the session started by
    the offer)."""
    await _omemo_conversation(dino_lab)
    name = f"dino-omemo-to-jet-{os.urandom(4).hex()}.bin"
    src = make_file(tmp_path / "out", name, size)
    dest = tmp_path / "in"
    dest.mkdir()
    dino = dino_lab.dino
    started = time.monotonic()
    with trio.fail_after(90):
        if options.get("prepared") and not (_omemo_dir(dino_lab) / "omemo").exists():
            async with jet_peer(dino_lab, "jet-first", omemo_dir=_omemo_dir(dino_lab)):
                pass  # our OMEMO identity made and published (as a first receive does)
        async with jet_peer(dino_lab, "jet-d", omemo_dir=_omemo_dir(dino_lab), **options) as (
            client,
            ft,
            omemo,
        ):
            if options.get("prepared"):
                assert not omemo.started, omemo.start_reason  # published by an earlier test
            await say_hello(client, dino.account.bare_jid)
            await trio.sleep(2)  # Dino fetches our caps (file-transfer:5, jet-omemo)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, dino.ui_send_file, src, PEER)
                with trio.fail_after(45):
                    offer = await ft.next_offer()
                assert offer.name == name
                assert offer.size == size
                assert offer.envelope == OLDMEMO, "Dino offered the file unencrypted"
                assert offer.cipher == AES128_GCM
                result = await offer.accept(dest)
            if options.get("prepared"):
                assert omemo.started and omemo.start_reason == "an envelope method is used"
    elapsed = time.monotonic() - started
    assert result.path.read_bytes() == src.read_bytes()
    assert result.envelope == OLDMEMO
    assert result.wire_bytes == size + 16
    if "direct_addresses" in options:
        assert result.transport == "s5b-proxy"
    print(
        f"\nDino -> jet-trio (JET-OMEMO): {result.transport}, {result.seconds:.2f} s transfer, "
        f"{elapsed:.2f} s with login and UI"
    )
