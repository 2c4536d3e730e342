"""Load: many concurrent JET (stub envelope) transfers between one pair of clients.

``COUNT`` files of ``SIZE`` random bytes are offered at once by one client and accepted at once by
the other, through jet_trio.testing's in-process server (direct S5B, and IBB) and through a real
Prosody. Every received file is compared with its source by SHA-256 and no temporary file may be
left; the open file descriptors of the process must be back to where they started.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from jet_trio import TransferResult, open_client
from jet_trio._transfer.service import FileTransfer, open_file_transfer
from jet_trio._xmpp.ns import JET_STUB
from jet_trio.testing import make_tls, serve

from ._servers import ServerInfo

pytestmark = pytest.mark.integration

COUNT = 50
#: One peer sends all COUNT files at once: lift the per-peer quotas for it.
_ONE_PEER_LOAD: dict[str, Any] = {
    "max_pending_offers": COUNT,
    "max_offers_per_peer": COUNT,
    "max_transfers_per_peer": COUNT,
}
SIZE = 256 * 1024
TIMEOUT = 120


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_files(tmp_path: Path, count: int) -> dict[str, tuple[Path, str]]:
    src = tmp_path / "src"
    src.mkdir()
    files = {}
    for i in range(count):
        path = src / f"load-{i:03d}.bin"
        path.write_bytes(os.urandom(SIZE))
        files[path.name] = (path, _sha256(path))
    return files


async def run_load(
    fa: FileTransfer, fb: FileTransfer, tmp_path: Path, count: int = COUNT, **send_kwargs: Any
) -> tuple[list[TransferResult], list[TransferResult], int]:
    """Run ``count`` concurrent transfers; return both sides' results and the change in open
    file descriptors of this process (both clients and the in-process server live in it)."""
    files = _make_files(tmp_path, count)
    dest = tmp_path / "dest"
    dest.mkdir()
    sent: list[TransferResult] = []
    received: list[TransferResult] = []

    async def send_one(path: Path) -> None:
        sent.append(await fa.send_file(path, fb.client.jid, encrypt=JET_STUB, **send_kwargs))

    async def accept_all(nursery: trio.Nursery) -> None:
        for _ in range(count):
            offer = await fb.next_offer()
            nursery.start_soon(accept_one, offer)

    async def accept_one(offer: Any) -> None:
        received.append(await offer.accept(dest))

    fds_before = _open_fds()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_all, nursery)
            for path, _ in files.values():
                nursery.start_soon(send_one, path)
    assert len(sent) == len(received) == count
    for result in received:
        assert result.cipher is not None and result.envelope == JET_STUB
        assert result.hash_verified
        _, digest = files[result.name]
        assert result.sha256 == digest
        assert _sha256(result.path) == digest, result.name
    assert sorted(p.name for p in dest.iterdir()) == sorted(files)  # no temporary files left
    await trio.sleep(0.2)  # let closed transports go
    return sent, received, _open_fds() - fds_before


@asynccontextmanager
async def inprocess_pair(**ft_kwargs: Any) -> AsyncIterator[tuple[FileTransfer, FileTransfer]]:
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
        a = await stack.enter_async_context(open_client("a@localhost/load", "pw", **opts))
        b = await stack.enter_async_context(open_client("b@localhost/load", "pw", **opts))
        fa = await stack.enter_async_context(
            open_file_transfer(a, allow_stub_envelope=True, **ft_kwargs)
        )
        fb = await stack.enter_async_context(
            open_file_transfer(b, allow_stub_envelope=True, **_ONE_PEER_LOAD, **ft_kwargs)
        )
        with trio.fail_after(10):
            await a.wait_available(b.jid)
        yield fa, fb


async def test_concurrent_transfers_inprocess_s5b(tmp_path: Path) -> None:
    async with inprocess_pair() as (fa, fb):
        sent, _, _ = await run_load(fa, fb, tmp_path)
    assert {r.transport for r in sent} == {"s5b-direct"}


async def test_concurrent_transfers_inprocess_ibb(tmp_path: Path) -> None:
    async with inprocess_pair() as (fa, fb):
        sent, _, fds = await run_load(fa, fb, tmp_path, count=20, transport="ibb")
    assert {r.transport for r in sent} == {"ibb"}
    assert fds <= 0


async def test_s5b_transfers_release_their_sockets(tmp_path: Path) -> None:
    async with inprocess_pair() as (fa, fb):
        _, _, fds = await run_load(fa, fb, tmp_path, count=10)
    assert fds <= 0


async def test_concurrent_transfers_prosody(prosody: ServerInfo, tmp_path: Path) -> None:
    opts: dict[str, Any] = {"host": prosody.host, "port": prosody.port, "ca_file": prosody.ca_file}
    async with (
        open_client(prosody.jid("alice") + "/load", prosody.accounts["alice"], **opts) as a,
        open_client(prosody.jid("bob") + "/load", prosody.accounts["bob"], **opts) as b,
        open_file_transfer(a, allow_stub_envelope=True) as fa,
        open_file_transfer(b, allow_stub_envelope=True, **_ONE_PEER_LOAD) as fb,
    ):
        with trio.fail_after(10):
            await a.wait_available(b.jid)
        sent, _, _ = await run_load(fa, fb, tmp_path)
    assert {r.transport for r in sent} == {"s5b-direct"}
