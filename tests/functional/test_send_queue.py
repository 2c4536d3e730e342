"""The sender's S5B data stream lets the kernel queue 4 MiB of unsent data instead of
trio's 16 KiB (``TCP_NOTSENT_LOWAT``): through a proxy that reads in small pieces, trio's
default made the sender write about three times and go through the event loop three times
per chunk (bench/README.md, "Against slixmpp through a proxy")."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import trio

import jet_trio._transfer.driver as driver
import jet_trio._transfer.service as service
from jet_trio._xmpp.ns import JET_STUB
from tests._streams import tcp_pair

from .conftest import Net, Outcome, make_file, run_transfer

SIZE = 3_000_000  # several chunks

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT on this platform"
)


def _unsent_limit(stream: trio.SocketStream) -> int:
    return stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)


@pytest.mark.parametrize("encrypt", [JET_STUB, None], ids=["jet-stub", "plain"])
@pytest.mark.parametrize("route", ["proxy", "direct"])
async def test_sender_data_stream_queues_4_mib(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    encrypt: str | None,
) -> None:
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "queued.bin"
    streams: list[trio.abc.Stream] = []
    limits: list[int] = []

    async def send_data(session: Any, established: driver.Established, *a: Any, **k: Any) -> int:
        streams.append(established.stream)
        return await driver.send_data(session, established, *a, **k)

    def seen(_out: Outcome, _done: int) -> None:  # called from inside the sender's data loop
        stream = streams[-1]
        assert isinstance(stream, trio.SocketStream)
        limits.append(_unsent_limit(stream))

    monkeypatch.setattr(service, "send_data", send_data)  # the name the facade calls
    opts: dict[str, Any] = {"direct_addresses": None} if route == "proxy" else {}
    async with net.pair(**opts) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=encrypt, on_send_progress=seen)
    assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
    assert out.send.result is not None
    assert out.send.result.transport == ("s5b-proxy" if route == "proxy" else "s5b-direct")
    assert dest.read_bytes() == src.read_bytes()
    assert limits, "no progress was reported during the data phase"
    assert set(limits) == {4 << 20}, set(limits)


def _write_until_full(stream: trio.SocketStream) -> int:
    """Bytes the kernel takes, without blocking, for a peer that reads nothing."""
    block = bytes(driver.CHUNK)
    total = 0
    while True:
        try:
            total += os.write(stream.socket.fileno(), block)
        except BlockingIOError:
            return total


async def test_kernel_takes_four_chunks_the_peer_has_not_read() -> None:
    """What the option does on a real TCP connection: a sender whose peer reads nothing can
    hand the kernel at least four chunks (trio's 16 KiB lets it hand over about the peer's
    receive buffer and 16 KiB more, 146 KB on Linux 6.1-6.18; the socket's send buffer, not
    the 4 MiB limit, bounds the rest)."""
    async with tcp_pair() as (client, _server):
        driver._queue_for_bulk(client)
        assert _unsent_limit(client) == 4 << 20
        assert _write_until_full(client) >= 4 * driver.CHUNK


async def test_a_stream_without_tcp_options_is_left_as_it_is() -> None:
    """A Unix socket has no TCP options: nothing is raised, and the stream still works."""
    a, b = socket.socketpair()
    left = trio.SocketStream(trio.socket.from_stdlib_socket(a))
    right = trio.SocketStream(trio.socket.from_stdlib_socket(b))
    async with left, right:
        driver._queue_for_bulk(left)
        await left.send_all(b"data")
        assert await right.receive_some(10) == b"data"
