"""The client-to-server stream acknowledges every read at once (``TCP_QUICKACK``).

Why: a server that keeps Nagle's algorithm on (Prosody's default) holds a small stanza back until
the previous one is acknowledged, and Linux delays that ACK by up to 40 ms; see
``tests/integration/test_prosody_latency.py`` for the effect through a real Prosody.
"""

from __future__ import annotations

import socket
from typing import Any, cast

import pytest
import trio

from jet_trio import open_client
from jet_trio._xmpp import connect as _connect
from jet_trio._xmpp.connect import QuickAckStream
from jet_trio.testing import make_tls, serve


class RecordingStream:
    """Stands in for the trio.SocketStream under the wrapper; records the socket options."""

    def __init__(self, chunks: list[bytes], fail: bool = False) -> None:
        self.chunks = chunks
        self.fail = fail
        self.options: list[tuple[int, int, int]] = []
        self.sent: list[bytes] = []
        self.closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return self.chunks.pop(0)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if self.fail:
            raise OSError("not a TCP socket")
        self.options.append((level, option, value))

    async def send_all(self, data: bytes) -> None:
        self.sent.append(data)

    async def aclose(self) -> None:
        self.closed = True


def wrap(inner: RecordingStream) -> QuickAckStream:
    return QuickAckStream(cast(trio.SocketStream, inner))


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux only")
async def test_every_read_is_acknowledged_at_once() -> None:
    inner = RecordingStream([b"<a/>", b"<b/>", b""])
    stream = wrap(inner)
    assert await stream.receive_some(100) == b"<a/>"
    assert await stream.receive_some(100) == b"<b/>"
    quick = (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    assert inner.options == [quick, quick]  # again after each read: Linux clears it
    assert await stream.receive_some(100) == b""
    assert inner.options == [quick, quick]  # nothing to acknowledge at the end
    await stream.send_all(b"<c/>")
    await stream.aclose()
    assert inner.sent == [b"<c/>"] and inner.closed


async def test_a_refused_option_never_fails_a_read() -> None:
    stream = wrap(RecordingStream([b"<a/>"], fail=True))
    assert await stream.receive_some(100) == b"<a/>"


async def test_without_the_option_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_connect, "_TCP_QUICKACK", None)  # not Linux
    inner = RecordingStream([b"<a/>"])
    assert await wrap(inner).receive_some(100) == b"<a/>"
    assert inner.options == []


async def test_the_client_connection_uses_it() -> None:
    tls = make_tls("localhost")
    async with (
        serve(tls=tls.server_context, accounts={"alice": "alice-pw"}) as srv,
        open_client(
            "alice@localhost/x",
            "alice-pw",
            host=srv.host,
            port=srv.port,
            ssl_context=tls.client_context,
        ) as client,
    ):
        stream: Any = client._stream
        assert isinstance(stream, trio.SSLStream)
        assert isinstance(stream.transport_stream, QuickAckStream)
        assert isinstance(stream.transport_stream.transport_stream, trio.SocketStream)
        await client.ping()  # the connection works through it
