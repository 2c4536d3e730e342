"""The receiver's in-place path: ciphertext read into the caller's buffer and decrypted there.

``StreamOpener.receive_data_into`` / ``DecryptingReceiveStream.receive_into`` /
``IntoReader`` (jet_trio._jet.stream), the ciphers' ``update_into``, and the receive loop's
buffer pool (jet_trio._transfer.driver): the same checks as the copying path (tag, size,
trailing bytes), a read that holds the end of the ciphertext and the tag, and no buffer used
again while a write still needs it.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jet_trio._jet import stream as stream_mod
from jet_trio._jet.cipher import TagMismatch, TransportSecret, decrypt_into
from jet_trio._jet.stream import (
    SLACK,
    DecryptingReceiveStream,
    IntoReader,
    StreamOpener,
    UnexpectedTrailingData,
)
from jet_trio._plugins.builtin_ciphers import AES256GCM
from jet_trio._transfer.driver import _BufferPool, _open_store
from tests._streams import SlowFile, tcp_pair


def _wire(secret: TransportSecret, plaintext: bytes) -> bytes:
    return AESGCM(secret.key).encrypt(secret.iv, plaintext, None)


def _feed_into(opener: StreamOpener, wire: bytes, cuts: list[int]) -> bytes:
    """Feed ``wire`` cut at ``cuts``, each piece decrypted into a buffer of its own."""
    out = bytearray()
    bounds = [0, *cuts, len(wire)]
    for start, end in itertools.pairwise(bounds):
        buf = bytearray(end - start + SLACK)
        n = opener.receive_data_into(memoryview(wire)[start:end], memoryview(buf))
        out += buf[:n]
    return bytes(out)


@pytest.mark.parametrize(
    "cuts",
    [
        [],  # ciphertext and tag in one read
        [1000],  # the end of the ciphertext and the whole tag in the second read
        [999, 1010],  # the tag split over two reads, the first with ciphertext
        [1000, 1008],  # the tag alone, in two reads
        [1, 2, 3],
    ],
)
def test_decryption_into_over_record_boundaries(cuts: list[int]) -> None:
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(1000)
    opener = StreamOpener(secret, expected_size=len(plaintext))
    assert _feed_into(opener, _wire(secret, plaintext), cuts) == plaintext
    assert opener.verified


def test_decryption_into_tampered_tag_and_trailing_bytes() -> None:
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(500)
    wire = bytearray(_wire(secret, plaintext))
    wire[-1] ^= 1
    with pytest.raises(TagMismatch):
        _feed_into(StreamOpener(secret, expected_size=500), bytes(wire), [400])
    wire[-1] ^= 1
    with pytest.raises(UnexpectedTrailingData):
        # the last ciphertext, the tag and one byte more in one read
        _feed_into(StreamOpener(secret, expected_size=500), bytes(wire) + b"x", [400])


def test_decryption_into_without_a_known_size_holds_the_tail_back() -> None:
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(3000)
    opener = StreamOpener(secret)
    got = _feed_into(opener, _wire(secret, plaintext), [5, 1500, 3010])
    opener.receive_eof()
    assert got == plaintext
    assert opener.verified


@pytest.mark.parametrize("room", [0, 14, 15, 100])
def test_gcm_update_into_with_little_room_is_still_right(room: int) -> None:
    """``cryptography`` wants room for a block after the data; with less, the decryptor
    decrypts and copies instead of writing past what it may."""
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(4096)
    wire = _wire(secret, plaintext)
    dec = secret.decryptor()
    buf = bytearray(4096 + room)
    assert decrypt_into(dec, memoryview(wire)[:4096], memoryview(buf)) == 4096
    assert bytes(buf[:4096]) == plaintext
    dec.finalize(wire[4096:])


class _NoInto:
    """A decryptor of a plugin without update_into: the copying fallback."""

    def __init__(self, secret: TransportSecret) -> None:
        self._inner = secret.decryptor()

    def update(self, data: bytes | bytearray | memoryview, /) -> bytes:
        return self._inner.update(data)

    def finalize(self, tag: bytes, /) -> None:
        self._inner.finalize(tag)


def test_decrypt_into_falls_back_to_update() -> None:
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(100)
    wire = _wire(secret, plaintext)
    buf = bytearray(100 + SLACK)
    assert decrypt_into(_NoInto(secret), memoryview(wire)[:100], memoryview(buf)) == 100
    assert bytes(buf[:100]) == plaintext


async def _receive_all_into(reader: IntoReader, size: int, batch: int) -> bytes:
    buf = memoryview(bytearray(batch + SLACK))
    out = bytearray()
    while True:
        n = await reader.receive_into(buf, batch)
        if not n:
            return bytes(out)
        assert n <= batch
        out += buf[:n]
        if len(out) == size and not isinstance(reader._stream, DecryptingReceiveStream):
            return bytes(out)


async def _over(
    over_socket: bool,
    run: Callable[[trio.abc.SendStream, trio.abc.ReceiveStream], Awaitable[bytes]],
) -> bytes:
    """``run`` over a TCP socket pair (batched reads) or over a memory stream."""
    if over_socket:
        async with tcp_pair() as (a, b):
            return await run(a, b)
    a2, b2 = trio.testing.memory_stream_one_way_pair()
    return await run(a2, b2)


@pytest.mark.parametrize("over_socket", [True, False])
@pytest.mark.parametrize("size", [0, 1, 70_000, 1_000_003])
async def test_receive_into_round_trip(over_socket: bool, size: int) -> None:
    if over_socket and not stream_mod._BATCHING:
        pytest.skip("batched reads need Linux")
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(size)
    wire = _wire(secret, plaintext)

    async def run(a: trio.abc.SendStream, b: trio.abc.ReceiveStream) -> bytes:
        dec = DecryptingReceiveStream(b, secret, expected_size=size, require_eof=False)

        async def send() -> None:
            for i in range(0, len(wire), 50_000):
                await a.send_all(wire[i : i + 50_000])

        async with trio.open_nursery() as n:
            n.start_soon(send)
            got = await _receive_all_into(IntoReader(dec), size, 65536)
        assert dec.verified
        return got

    assert await _over(over_socket, run) == plaintext


@pytest.mark.parametrize("over_socket", [True, False])
async def test_receive_into_never_decrypts_in_place(
    over_socket: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cryptography 51 and later refuse ``update_into`` with overlapping buffers (50 allowed
    it, and the extras' pins may keep either): the ciphertext is never in the caller's buffer."""
    if over_socket and not stream_mod._BATCHING:
        pytest.skip("batched reads need Linux")
    calls = 0

    def checked(dec: object, data: memoryview, out: memoryview) -> int:
        nonlocal calls
        calls += 1
        assert memoryview(data).obj is not out.obj, "decrypting in place"
        return decrypt_into(dec, data, out)  # type: ignore[arg-type]

    monkeypatch.setattr(stream_mod, "decrypt_into", checked)
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(300_000)
    wire = _wire(secret, plaintext)

    async def run(a: trio.abc.SendStream, b: trio.abc.ReceiveStream) -> bytes:
        dec = DecryptingReceiveStream(b, secret, expected_size=len(plaintext), require_eof=False)
        async with trio.open_nursery() as n:
            n.start_soon(a.send_all, wire)
            return await _receive_all_into(IntoReader(dec), len(plaintext), 65536)

    assert await _over(over_socket, run) == plaintext
    assert calls


async def test_receive_into_tampered_stream_over_socket() -> None:
    if not stream_mod._BATCHING:
        pytest.skip("batched reads need Linux")
    secret = TransportSecret.generate(AES256GCM)
    wire = bytearray(_wire(secret, os.urandom(300_000)))
    wire[123_456] ^= 0x40
    async with tcp_pair() as (a, b):
        dec = DecryptingReceiveStream(b, secret, expected_size=300_000, require_eof=False)
        with pytest.raises(BaseExceptionGroup) as caught, trio.fail_after(10):
            async with trio.open_nursery() as n:
                n.start_soon(a.send_all, wire)
                await _receive_all_into(IntoReader(dec), 300_000, 65536)
        assert caught.group_contains(TagMismatch)


async def test_receive_into_needs_room_after_max_bytes() -> None:
    secret = TransportSecret.generate(AES256GCM)
    _a, b = trio.testing.memory_stream_one_way_pair()
    dec = DecryptingReceiveStream(b, secret, expected_size=10)
    with pytest.raises(ValueError, match="room"):
        await dec.receive_into(memoryview(bytearray(100)), 90)
    with pytest.raises(TypeError):
        await dec.receive_into(memoryview(bytes(100)), 10)


async def test_a_queued_batch_is_read_at_once_and_cancellation_still_counts() -> None:
    """Over a socket, a batch already queued is read in one call without a trip through the
    event loop (no other task runs meanwhile), and a cancelled caller still gets Cancelled
    with data waiting."""
    if not stream_mod._BATCHING:
        pytest.skip("batched reads need Linux")
    secret = TransportSecret.generate(AES256GCM)
    size = 600_000
    plaintext = os.urandom(size)
    wire = _wire(secret, plaintext)
    async with tcp_pair() as (a, b), trio.open_nursery() as n:
        dec = DecryptingReceiveStream(b, secret, expected_size=size, require_eof=False)
        reader = IntoReader(dec)
        n.start_soon(a.send_all, wire)
        await trio.sleep(0.1)  # the sender filled the buffers: a batch is queued
        buf = memoryview(bytearray((1 << 20) + SLACK))
        with trio.CancelScope() as scope:
            scope.cancel()
            await reader.receive_into(buf, 1 << 20)
        assert scope.cancelled_caught
        ran: list[None] = []

        async def other() -> None:
            ran.append(None)

        n.start_soon(other)  # runs at the next schedule point
        got = await reader.receive_into(buf, 1 << 20)
        assert not ran
        assert got >= stream_mod._BATCH_MIN
        received = bytes(buf[:got])
        while len(received) < size:
            got = await reader.receive_into(buf, 1 << 20)
            received += buf[:got]
        assert await reader.receive_into(buf, 1 << 20) == 0
        assert received == plaintext
        assert ran


async def test_the_batch_grows_to_a_mebibyte_on_a_fast_stream() -> None:
    """A stream faster than its reader is read in batches that grow to 1 MiB (one wake-up,
    read and decryption each), not 256 KiB: through a proxy the larger batches took 0.15-0.5
    s/GiB off the receiver (bench/README.md)."""
    if not stream_mod._BATCHING:
        pytest.skip("batched reads need Linux")
    secret = TransportSecret.generate(AES256GCM)
    size = 24 << 20
    plaintext = os.urandom(size)
    async with tcp_pair() as (a, b), trio.open_nursery() as n:
        # A receive buffer as large as a fast connection's grows to (the batch stays within a
        # quarter of it), so that only the batch's own ceiling limits it.
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        dec = DecryptingReceiveStream(b, secret, expected_size=size, require_eof=False)
        reader = IntoReader(dec)
        n.start_soon(a.send_all, _wire(secret, plaintext))
        buf = memoryview(bytearray((2 << 20) + SLACK))
        received = bytearray()
        targets = set()
        while len(received) < size:
            got = await reader.receive_into(buf, 2 << 20)
            received += buf[:got]
            assert dec._batch is not None
            targets.add(dec._batch._target)
        assert received == plaintext
    assert max(targets) == 1 << 20


async def test_a_pooled_buffer_comes_back_only_once_written() -> None:
    """The receive loop fills a buffer from the pool, hands it to the writing thread and
    takes the next one: while the write runs, the pool must not give the same buffer out
    again (it would be overwritten under the write)."""
    pool = _BufferPool(64)
    f = SlowFile()
    first = pool.take()
    first[:5] = b"first"
    async with _open_store(f, pool.give_back) as store:
        await store.put(first[:5])
        await trio.to_thread.run_sync(f.started.wait, 5)  # the write is running
        second = pool.take()
        assert second.obj is not first.obj
        second[:5] = b"XXXXX"  # filling the next batch leaves the one being written alone
        f.go.set()
    assert f.getvalue() == b"first"
    assert pool.take().obj is first.obj  # written: used again
