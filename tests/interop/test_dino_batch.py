"""A folder sent by jet-trio to a live Dino 0.4.2: separate files under flat names (Dino does
not advertise jet-trio's folder extension, so no relative path is offered)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from jet_trio import flat_items, send_files, walk_tree

from ._lab import DINO_ENCRYPTION_NONE, Lab
from ._peer import jet_peer, make_file, say_hello, sha256

pytestmark = pytest.mark.interop
PEER = "bob@localhost"


async def test_dino_receives_a_folder_as_separate_files(dino_lab: Lab, tmp_path: Path) -> None:
    tag = os.urandom(3).hex()
    top = tmp_path / "src" / f"folder-{tag}"
    sources = [
        make_file(top, f"a-{tag}.bin", 50_000),
        make_file(top / "sub", f"b-{tag}.bin", 60_000),
        make_file(top / "sub" / "deeper", f"c-{tag}.bin", 70_000),
    ]
    dino = dino_lab.dino
    await trio.to_thread.run_sync(dino_lab.set_conversation_encryption, PEER, DINO_ENCRYPTION_NONE)
    with trio.fail_after(120):
        async with jet_peer(dino_lab, "jet-batch") as (client, ft, _):
            await say_hello(client, dino.account.bare_jid)
            await trio.to_thread.run_sync(dino.wait_conversation, PEER)
            assert not await ft.rebuilds_folders(dino_lab.dino_jid)
            batch = await send_files(
                ft,
                flat_items(walk_tree(top)),
                dino_lab.dino_jid,
                encrypt=None,
                transport="s5b",
                max_concurrent=2,
            )
            assert batch.ok and batch.sent == 3, batch.errors
            names = {o.item.path: o.item.offered_name for o in batch.outcomes}
            assert sorted(names.values()) == sorted(
                [f"a-{tag}.bin", f"sub__b-{tag}.bin", f"sub__deeper__c-{tag}.bin"]
            )
            for src in sources:
                stored = await trio.to_thread.run_sync(
                    dino.wait_received, names[src], src.stat().st_size
                )
                assert sha256(stored) == sha256(src)
