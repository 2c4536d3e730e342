"""DecryptingReceiveStream over a real TCP socket (loopback): the batched read path.

Over a :class:`trio.SocketStream` the stream reads ciphertext in batches straight into one
buffer (``SO_RCVLOWAT`` and a bounded wait). These tests check that it still verifies
everything, never waits for a batch that does not come, and does batch.
"""

from __future__ import annotations

import os
import socket

import pytest
import trio
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jet_trio._jet import stream as stream_mod
from jet_trio._jet.cipher import TagMismatch, TransportSecret
from jet_trio._jet.stream import (
    DecryptingReceiveStream,
    TruncatedStream,
    UnexpectedTrailingData,
)
from jet_trio._plugins.builtin_ciphers import AES256GCM
from tests._streams import tcp_pair

pytestmark = pytest.mark.skipif(not stream_mod._BATCHING, reason="batched reads need Linux")


def _wire(secret: TransportSecret, plaintext: bytes) -> bytes:
    return AESGCM(secret.key).encrypt(secret.iv, plaintext, None)


async def _read_all(stream: DecryptingReceiveStream, max_bytes: int | None = None) -> list[bytes]:
    chunks: list[bytes] = []
    while True:
        data = await stream.receive_some(max_bytes)
        if not data:
            return chunks
        chunks.append(bytes(data))


@pytest.mark.parametrize("size", [0, 1, 100, 65536, 1_000_003])
@pytest.mark.parametrize("known", [True, False])
async def test_socket_round_trip(size: int, known: bool) -> None:
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(size)
    wire = _wire(secret, plaintext)
    async with tcp_pair() as (a, b):
        dec = DecryptingReceiveStream(b, secret, expected_size=size if known else None)

        async def send() -> None:
            for i in range(0, len(wire), 5000):
                await a.send_all(wire[i : i + 5000])
            await a.send_eof()

        async with trio.open_nursery() as n:
            n.start_soon(send)
            got = b"".join(await _read_all(dec))
    assert got == plaintext
    assert dec.verified


@pytest.mark.parametrize("where", [0, 70_000, -1])
async def test_socket_tampered_byte(where: int) -> None:
    secret = TransportSecret.generate(AES256GCM)
    wire = bytearray(_wire(secret, os.urandom(100_000)))
    wire[where] ^= 1
    async with tcp_pair() as (a, b):
        dec = DecryptingReceiveStream(b, secret, expected_size=100_000)
        await a.send_all(wire)
        await a.send_eof()
        with pytest.raises(TagMismatch):
            await _read_all(dec)
        assert not dec.verified
        with pytest.raises(trio.BrokenResourceError):
            await dec.receive_some()


async def test_socket_truncated_and_trailing() -> None:
    secret = TransportSecret.generate(AES256GCM)
    wire = _wire(secret, os.urandom(50_000))
    async with tcp_pair() as (a, b):
        dec = DecryptingReceiveStream(b, secret, expected_size=50_000)
        await a.send_all(wire[:-1])
        await a.send_eof()
        with pytest.raises(TruncatedStream):
            await _read_all(dec)
    async with tcp_pair() as (a, b):
        dec = DecryptingReceiveStream(b, secret, expected_size=50_000)
        await a.send_all(wire + b"x")
        await a.send_eof()
        with pytest.raises(UnexpectedTrailingData):
            await _read_all(dec)


async def test_socket_open_peer_small_tail_is_not_held() -> None:
    """A sender that keeps the connection open and sends the end in small pieces, slowly:
    every piece arrives (no wait for a batch that never fills), the tag is verified and
    ``b""`` returned without an end of file (``require_eof=False``, as the driver uses it)."""
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(3000)
    wire = _wire(secret, plaintext)
    async with tcp_pair() as (a, b):
        dec = DecryptingReceiveStream(b, secret, expected_size=3000, require_eof=False)
        got = bytearray()
        with trio.fail_after(10):
            for i in range(0, len(wire), 1000):
                await a.send_all(wire[i : i + 1000])
                # Each piece is delivered on its own, well before the next one is sent.
                while len(got) < min(i + 1000, 3000):
                    got += await dec.receive_some()
            assert await dec.receive_some() == b""
        assert got == plaintext
        assert dec.verified


async def test_socket_cancel_while_waiting_consumes_nothing() -> None:
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(10_000)
    wire = _wire(secret, plaintext)
    async with tcp_pair() as (a, b):
        dec = DecryptingReceiveStream(b, secret, expected_size=10_000)
        with trio.move_on_after(0.05) as scope:
            await dec.receive_some()
        assert scope.cancelled_caught
        await a.send_all(wire)
        await a.send_eof()
        assert b"".join(await _read_all(dec)) == plaintext


async def test_socket_reads_are_batched() -> None:
    """A sender writing 4 KiB pieces one scheduler turn apart (as a proxy relays a stream)
    is read in batches of several pieces, not one read per piece."""
    secret = TransportSecret.generate(AES256GCM)
    pieces = 64
    plaintext = os.urandom(pieces * 4096)
    wire = _wire(secret, plaintext)
    async with tcp_pair() as (a, b):
        a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        dec = DecryptingReceiveStream(b, secret, expected_size=len(plaintext))

        async def send() -> None:
            for i in range(0, len(wire), 4096):
                await a.send_all(wire[i : i + 4096])
                await trio.lowlevel.checkpoint()
            await a.send_eof()

        async with trio.open_nursery() as n:
            n.start_soon(send)
            chunks = await _read_all(dec, 256 * 1024)
    assert b"".join(chunks) == plaintext
    sizes = [len(c) for c in chunks]
    # One read per piece would be 64; batches of 8 or more pieces are usual here. Generous
    # bound: a loaded machine may let a few bounded waits end early.
    assert len(sizes) <= pieces // 2, sizes


async def test_socket_closed_stream() -> None:
    secret = TransportSecret.generate(AES256GCM)
    async with tcp_pair() as (_a, b):
        dec = DecryptingReceiveStream(b, secret, expected_size=10)
        await dec.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await dec.receive_some()


async def test_socket_cancel_while_waiting_for_a_batch_loses_nothing() -> None:
    """Cancelled while waiting for a batch with a piece already queued: the piece is either
    returned or left in the socket, never dropped, so the stream stays whole."""
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(10_000)
    wire = _wire(secret, plaintext)
    async with tcp_pair() as (a, b):
        dec = DecryptingReceiveStream(b, secret, expected_size=10_000)
        await a.send_all(wire[:1000])
        await trio.sleep(0.05)  # the piece is queued at b before the read starts
        got = bytearray()
        with trio.move_on_after(stream_mod._BATCH_WAIT / 4):
            got += await dec.receive_some()
        assert len(got) in (0, 1000)
        await a.send_all(wire[1000:])
        await a.send_eof()
        got += b"".join(await _read_all(dec))
    assert got == plaintext


@pytest.mark.parametrize("over_socket", [True, False])
async def test_on_wire_sees_every_transport_byte(over_socket: bool) -> None:
    """``on_wire`` gets the ciphertext and the tag exactly as they came, in order (for a hash
    of the wire bytes), and the socket path still reads in batches with it."""
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(300_000)
    wire = _wire(secret, plaintext)
    seen = bytearray()
    async with tcp_pair() as (a, b):
        transport: trio.abc.ReceiveStream = b if over_socket else _Wrapped(b)
        dec = DecryptingReceiveStream(
            transport, secret, expected_size=len(plaintext), on_wire=seen.extend
        )
        assert (dec._batch is not None) == over_socket

        async def send() -> None:
            await a.send_all(wire)
            await a.send_eof()

        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                n.start_soon(send)
                assert b"".join(await _read_all(dec)) == plaintext
    assert seen == wire


async def test_on_wire_error_breaks_the_stream() -> None:
    secret = TransportSecret.generate(AES256GCM)
    wire = _wire(secret, b"x" * 100)

    def fail(_data: object) -> None:
        raise OSError("disk full")

    async with tcp_pair() as (a, b):
        dec = DecryptingReceiveStream(b, secret, expected_size=100, on_wire=fail)
        await a.send_all(wire)
        with pytest.raises(OSError, match="disk full"):
            await dec.receive_some()
        with pytest.raises(trio.BrokenResourceError):
            await dec.receive_some()


class _Wrapped(trio.abc.ReceiveStream):
    def __init__(self, inner: trio.abc.ReceiveStream) -> None:
        self.inner = inner

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()
