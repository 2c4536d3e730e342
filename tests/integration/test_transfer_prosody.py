"""End-to-end file transfers between two jet-trio clients through a real Prosody."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import jet_trio
from jet_trio import open_client
from jet_trio._transfer.service import FileTransfer, open_file_transfer
from jet_trio._xmpp.ns import JET_STUB

from ._servers import ServerInfo

pytestmark = pytest.mark.integration


@asynccontextmanager
async def pair(
    server: ServerInfo, **ft_kwargs: Any
) -> AsyncIterator[tuple[FileTransfer, FileTransfer]]:
    opts: dict[str, Any] = {"host": server.host, "port": server.port, "ca_file": server.ca_file}
    async with (
        open_client(server.jid("alice") + "/send", server.accounts["alice"], **opts) as a,
        open_client(server.jid("bob") + "/recv", server.accounts["bob"], **opts) as b,
        open_file_transfer(a, allow_stub_envelope=True, **ft_kwargs) as fa,
        open_file_transfer(b, allow_stub_envelope=True, **ft_kwargs) as fb,
    ):
        with trio.fail_after(5):
            await a.wait_available(b.jid)
        yield fa, fb


def make_file(tmp_path: Path, size: int) -> Path:
    src = tmp_path / "src" / "payload.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(size))
    return src


async def transfer(
    fa: FileTransfer, fb: FileTransfer, src: Path, dest: Path, **send_kwargs: Any
) -> tuple[jet_trio.TransferResult, jet_trio.TransferResult]:
    results: dict[str, jet_trio.TransferResult] = {}

    async def receive() -> None:
        offer = await fb.next_offer()
        results["recv"] = await offer.accept(dest)

    async with trio.open_nursery() as n:
        n.start_soon(receive)
        results["send"] = await fa.send_file(src, fb.client.jid, **send_kwargs)
    return results["send"], results["recv"]


@pytest.mark.parametrize(
    ("ft_kwargs", "send_kwargs", "transport"),
    [
        ({}, {}, "s5b-direct"),
        ({"direct_addresses": None}, {}, "s5b-proxy"),
        ({}, {"transport": "ibb"}, "ibb"),
        ({"direct_addresses": None, "use_proxies": False}, {}, "ibb"),  # S5B fails: fallback
    ],
    ids=["direct", "proxy", "ibb", "fallback"],
)
@pytest.mark.parametrize("encrypt", [JET_STUB, None], ids=["jet-stub", "plain"])
async def test_transfer(
    prosody: ServerInfo,
    tmp_path: Path,
    ft_kwargs: dict[str, Any],
    send_kwargs: dict[str, Any],
    transport: str,
    encrypt: str | None,
) -> None:
    src = make_file(tmp_path, 300_000)
    dest = tmp_path / "received.bin"
    with trio.fail_after(30):
        async with pair(prosody, **ft_kwargs) as (fa, fb):
            sent, got = await transfer(fa, fb, src, dest, encrypt=encrypt, **send_kwargs)
    assert dest.read_bytes() == src.read_bytes()
    assert sent.transport == got.transport == transport
    assert sent.sha256 == got.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert got.hash_verified
    assert got.envelope == sent.envelope == encrypt
    assert got.wire_bytes == 300_000 + (16 if encrypt else 0)
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))
