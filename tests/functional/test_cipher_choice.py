"""Cipher choice: a third-party cipher (the ChaCha20 example plugin) only if both sides have it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import jet_trio
from jet_trio import FileTransfer, open_client, open_file_transfer
from jet_trio._xmpp.ns import CIPHER_AES256_GCM, JET_STUB
from jet_trio.plugin import PluginConfig, PluginManager
from jet_trio.testing import make_tls, serve

chacha = pytest.importorskip("jet_trio_chacha20", reason="plugins/jet-trio-chacha20 not installed")
CHACHA = chacha.URN


@asynccontextmanager
async def pair(
    *, receiver_has_chacha: bool, preference: tuple[str, ...] = ()
) -> AsyncIterator[tuple[FileTransfer, FileTransfer]]:
    tls = make_tls("localhost")
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(
            serve("localhost", tls=tls.server_context, accounts={"a": "pw", "b": "pw"})
        )
        opts: dict[str, Any] = {
            "host": server.host,
            "port": server.port,
            "ssl_context": tls.client_context,
        }
        a = await stack.enter_async_context(open_client("a@localhost/s", "pw", **opts))
        b = await stack.enter_async_context(open_client("b@localhost/r", "pw", **opts))
        fa = await stack.enter_async_context(
            open_file_transfer(a, allow_stub_envelope=True, cipher_preference=preference)
        )
        if receiver_has_chacha:
            fb = await stack.enter_async_context(open_file_transfer(b, allow_stub_envelope=True))
        else:
            # Only the built-in ciphers and envelopes: no entry points, so no ChaCha20.
            pm = PluginManager(PluginConfig(allow_stub_envelope=True), entry_points=False)
            assert not pm.load_errors
            fb = await stack.enter_async_context(open_file_transfer(b, plugins=pm))
        await a.wait_available(b.jid)
        yield fa, fb


async def send(fa: FileTransfer, fb: FileTransfer, tmp: Path, **kw: Any) -> jet_trio.TransferResult:
    src = tmp / "f.bin"
    src.write_bytes(os.urandom(100_000))
    offered: list[str | None] = []

    async def receive() -> None:
        offer = await fb.next_offer()
        offered.append(offer.cipher)
        await offer.accept(tmp / "out.bin", overwrite=True)

    async with trio.open_nursery() as n:
        n.start_soon(receive)
        result = await fa.send_file(src, fb.client.jid, encrypt=JET_STUB, **kw)
    assert (tmp / "out.bin").read_bytes() == src.read_bytes()
    assert offered == [result.cipher]
    return result


async def test_preferred_third_party_cipher_used_when_both_support_it(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with pair(receiver_has_chacha=True, preference=(CHACHA,)) as (fa, fb):
            assert CHACHA in fb.features
            result = await send(fa, fb, tmp_path)
    assert result.cipher == CHACHA and result.wire_bytes == 100_016


async def test_preference_falls_back_when_peer_lacks_the_cipher(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with pair(receiver_has_chacha=False, preference=(CHACHA,)) as (fa, fb):
            assert CHACHA not in fb.features
            result = await send(fa, fb, tmp_path)
    assert result.cipher == CIPHER_AES256_GCM


async def test_explicit_cipher_the_peer_lacks_is_refused(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with pair(receiver_has_chacha=False) as (fa, fb):
            src = tmp_path / "f.bin"
            src.write_bytes(b"data")
            with pytest.raises(jet_trio.EncryptionFailed, match="does not support the cipher"):
                await fa.send_file(src, fb.client.jid, encrypt=JET_STUB, cipher=CHACHA)
