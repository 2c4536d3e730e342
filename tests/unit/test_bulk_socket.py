"""The sender's data socket queues a file's bytes as the system would, not trio's 16 KiB
(``TCP_NOTSENT_LOWAT``): jet_trio._transfer.driver._for_bulk_data."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from jet_trio._transfer.driver import _for_bulk_data

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT on this system"
)


def _lowat(stream: trio.SocketStream) -> int:
    return int(stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT))


async def test_a_tcp_stream_gets_the_system_setting_back() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with listeners[0]:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listeners[0].accept()
        async with client, server:
            assert _lowat(client) == 16384  # what trio sets on every SocketStream
            _for_bulk_data(client)
            assert _lowat(client) == 0  # the system's net.ipv4.tcp_notsent_lowat
            await client.send_all(b"x" * 100_000)
            got = 0
            while got < 100_000:
                got += len(await server.receive_some())


async def test_other_streams_are_left_alone() -> None:
    send, _receive = trio.testing.memory_stream_pair()
    _for_bulk_data(send)  # no socket, nothing to do, no error
    a, b = trio.socket.socketpair()
    with a, b:
        _for_bulk_data(trio.SocketStream(a))  # a Unix socket: no TCP option, no error
