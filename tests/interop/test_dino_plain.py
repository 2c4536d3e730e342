"""Unencrypted Jingle file transfer (XEP-0234 over XEP-0260 SOCKS5) between jet-trio and a live
Dino 0.4.2, both directions."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from ._lab import DINO_ENCRYPTION_NONE, Lab
from ._peer import SIZE, jet_peer, make_file, say_hello, sha256

pytestmark = pytest.mark.interop
PEER = "bob@localhost"


async def _plain_conversation(lab: Lab) -> None:
    """Dino's conversation with bob (if any) is unencrypted (an OMEMO test may have set it)."""
    await trio.to_thread.run_sync(lab.set_conversation_encryption, PEER, DINO_ENCRYPTION_NONE)


async def test_dino_receives_s5b(dino_lab: Lab, tmp_path: Path) -> None:
    """A: jet-trio -> Dino, unencrypted, S5B. Dino auto-accepts (roster contact, conversation
    open, < 5 MB) and stores the file under ~/.local/share/dino/files/<id>_<name>."""
    name = f"jet-to-dino-{os.urandom(4).hex()}.bin"
    src = make_file(tmp_path, name)
    dino = dino_lab.dino
    await _plain_conversation(dino_lab)
    started = time.monotonic()
    with trio.fail_after(60):
        async with jet_peer(dino_lab, "jet-a") as (client, ft, _):
            await say_hello(client, dino.account.bare_jid)
            await trio.to_thread.run_sync(dino.wait_conversation, PEER)
            result = await ft.send_file(src, dino_lab.dino_jid, encrypt=None, transport="s5b")
            # Dino sends session-terminate(success) once it has the bytes; give it a moment
            # to have the file complete on disk.
            stored = await trio.to_thread.run_sync(dino.wait_received, name, SIZE)
    elapsed = time.monotonic() - started
    assert result.transport in ("s5b-direct", "s5b-proxy")
    assert result.envelope is None
    assert sha256(stored) == sha256(src)
    print(
        f"\njet-trio -> Dino: {result.transport}, {result.seconds:.2f} s transfer, "
        f"{elapsed:.2f} s with login"
    )


@pytest.mark.parametrize(
    ("options", "size"),
    [({}, SIZE), ({"direct_addresses": None, "stall_timeout": 15.0}, 1 << 20)],
    ids=["any", "proxy"],
)
async def test_dino_sends_s5b(
    dino_lab: Lab, tmp_path: Path, options: dict[str, Any], size: int
) -> None:
    """B: Dino -> jet-trio, unencrypted, S5B: Dino's UI is driven to send a file to bob;
    jet-trio accepts the offer and checks the bytes. ``proxy``: jet-trio offers no direct
    candidate (as behind a NAT), so the 1 MiB go through Prosody's proxy, which may hold back
    the last bytes until Dino closes its connection (docs/protocol.rst)."""
    name = f"dino-to-jet-{os.urandom(4).hex()}.bin"
    src = make_file(tmp_path / "out", name, size)
    dest = tmp_path / "in"
    dest.mkdir()
    dino = dino_lab.dino
    await _plain_conversation(dino_lab)
    started = time.monotonic()
    with trio.fail_after(90):
        async with jet_peer(dino_lab, "jet-b", **options) as (client, ft, _):
            await say_hello(client, dino.account.bare_jid)
            await trio.to_thread.run_sync(dino.wait_conversation, PEER)
            await trio.sleep(2)  # Dino fetches our caps (file-transfer:5 + transports)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, dino.ui_send_file, src, PEER)
                with trio.fail_after(45):
                    offer = await ft.next_offer()
                assert offer.name == name
                assert offer.size == size
                assert not offer.encrypted
                result = await offer.accept(dest)
    elapsed = time.monotonic() - started
    assert result.path.read_bytes() == src.read_bytes()
    assert result.transport in (("s5b-proxy",) if options else ("s5b-direct", "s5b-proxy"))
    assert result.hash_verified or result.sha256 == sha256(src)
    print(
        f"\nDino -> jet-trio: {result.transport}, {result.seconds:.2f} s transfer, "
        f"{elapsed:.2f} s with login and UI"
    )
