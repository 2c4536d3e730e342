"""Real jet-trio clients on the in-process test server: the entry-point (lazy) path end to end."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from pathlib import Path

import trio
from jet_trio import open_client, open_file_transfer
from jet_trio.plugin import PluginConfig, PluginManager
from jet_trio.testing import make_tls, serve

from jet_trio_openpgp import FEATURE, NS, PreparedOpenPGPEnvelope


async def test_entry_point_envelope_transfers(tmp_path: Path) -> None:
    tls = make_tls()
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(50_000))
    dest = tmp_path / "received.bin"
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            server = await stack.enter_async_context(
                serve("localhost", tls=tls.server_context, accounts={"alice": "pw", "bob": "pw"})
            )
            opts = {"host": server.host, "port": server.port, "ssl_context": tls.client_context}
            a = await stack.enter_async_context(
                open_client("alice@localhost/a", "pw", **opts)  # type: ignore[arg-type]
            )
            b = await stack.enter_async_context(
                open_client("bob@localhost/b", "pw", **opts)  # type: ignore[arg-type]
            )
            # Loaded through the installed entry point, from the configuration alone.
            pa = PluginManager(PluginConfig(account=a.jid, data_dir=tmp_path / "a", client=a))
            pb = PluginManager(PluginConfig(account=b.jid, data_dir=tmp_path / "b", client=b))
            mb = pb.envelope(NS)
            assert isinstance(mb, PreparedOpenPGPEnvelope)
            assert FEATURE in pb.disco_features()
            # Its start (open_file_transfer's) finds no key of Bob's: it makes and publishes one.
            await mb.start()
            assert mb.started and mb.start_reason == "no OpenPGP key of ours is stored yet"
            assert (tmp_path / "b" / "openpgp" / "secret-key.asc").exists()
            fa = await stack.enter_async_context(
                open_file_transfer(a, plugins=pa, direct_addresses=["127.0.0.1"])
            )
            fb = await stack.enter_async_context(
                open_file_transfer(b, plugins=pb, direct_addresses=["127.0.0.1"])
            )
            await a.wait_available(b.jid)

            async def receive() -> None:
                offer = await fb.next_offer()
                assert offer.envelope == NS
                await offer.accept(dest)

            async with trio.open_nursery() as n:
                n.start_soon(receive)
                sent = await fa.send_file(src, b.jid)
    assert sent.envelope == NS
    assert dest.read_bytes() == src.read_bytes()
