"""EncryptingSendStream / DecryptingReceiveStream: wire format, verification, trio conformance."""

from __future__ import annotations

import itertools
import os

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from jet_trio._errors import LocalProtocolError
from jet_trio._jet.cipher import Cipher, PlaintextLimitExceeded, TagMismatch, TransportSecret
from jet_trio._jet.stream import (
    DecryptingReceiveStream,
    EncryptingSendStream,
    SizeMismatch,
    StreamOpener,
    StreamSealer,
    TruncatedStream,
    UnexpectedTrailingData,
)
from jet_trio._plugins.builtin_ciphers import AES128GCM, AES256GCM, AESGCMCipher

SIZES = [0, 1, 15, 16, 17, 31, 32, 33, 4095, 4096, 4097, 65535, 65536, 65537, 200_003]


class _Collect(trio.abc.SendStream):
    """A transport that records everything sent."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.data += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


class _Feed(trio.abc.ReceiveStream):
    """A transport that returns the given chunks, then EOF."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if max_bytes is not None and len(chunk) > max_bytes:
            self.chunks.insert(0, chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        return chunk

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or []


async def _encrypt(secret: TransportSecret, plaintext: bytes, piece: int = 7777) -> bytes:
    sink = _Collect()
    enc = EncryptingSendStream(sink, secret, expected_size=len(plaintext))
    for part in _chunks(plaintext, piece):
        await enc.send_all(part)
    await enc.finish()
    await enc.aclose()
    assert sink.closed
    return bytes(sink.data)


async def _decrypt_all(stream: DecryptingReceiveStream, max_bytes: int | None = None) -> bytes:
    out = bytearray()
    while True:
        data = await stream.receive_some(max_bytes)
        if not data:
            return bytes(out)
        out += data


@pytest.mark.parametrize("cipher", [AES128GCM, AES256GCM], ids=["aes128", "aes256"])
@pytest.mark.parametrize("size", SIZES)
async def test_wire_bytes_equal_one_shot_aesgcm(cipher: Cipher, size: int) -> None:
    secret = TransportSecret.generate(cipher)
    plaintext = os.urandom(size)
    wire = await _encrypt(secret, plaintext)
    assert wire == AESGCM(secret.key).encrypt(secret.iv, plaintext, None)
    assert len(wire) == size + 16


# Byte-by-byte reads only for the smaller sizes (slow otherwise).
SIZE_CHUNK = [(s, c) for s in SIZES for c in (1, 5, 16, 17, 4096, 100_000) if c > 1 or s < 5000]


@pytest.mark.parametrize(("size", "chunk"), SIZE_CHUNK)
@pytest.mark.parametrize("known", [True, False], ids=["known-size", "unknown-size"])
async def test_decrypts_one_shot_ciphertext(size: int, known: bool, chunk: int) -> None:
    secret = TransportSecret.generate(AES128GCM)
    plaintext = os.urandom(size)
    wire = AESGCM(secret.key).encrypt(secret.iv, plaintext, None)
    stream = DecryptingReceiveStream(
        _Feed(_chunks(wire, chunk)), secret, expected_size=size if known else None
    )
    assert await _decrypt_all(stream) == plaintext
    assert stream.verified
    # EOF is sticky.
    assert await stream.receive_some() == b""


async def test_max_bytes_is_respected() -> None:
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(10_000)
    wire = AESGCM(secret.key).encrypt(secret.iv, plaintext, None)
    for expected in (len(plaintext), None):
        stream = DecryptingReceiveStream(_Feed([wire]), secret, expected_size=expected)
        out = bytearray()
        while data := await stream.receive_some(333):
            assert 0 < len(data) <= 333
            out += data
        assert out == plaintext


async def test_sixteen_byte_iv_interoperates_with_one_shot() -> None:
    key, iv = os.urandom(16), os.urandom(16)
    secret = TransportSecret(key, iv, AES128GCM)
    plaintext = os.urandom(5000)
    wire = await _encrypt(secret, plaintext)
    assert wire == AESGCM(key).encrypt(iv, plaintext, None)
    stream = DecryptingReceiveStream(_Feed([wire]), secret, expected_size=5000)
    assert await _decrypt_all(stream) == plaintext


@pytest.mark.parametrize("known", [True, False], ids=["known-size", "unknown-size"])
@pytest.mark.parametrize("where", [0, 500, 999, 1000, 1015])
async def test_tampered_byte_raises_tag_mismatch(known: bool, where: int) -> None:
    secret = TransportSecret.generate(AES128GCM)
    plaintext = os.urandom(1000)
    wire = bytearray(AESGCM(secret.key).encrypt(secret.iv, plaintext, None))
    wire[where] ^= 0x01
    stream = DecryptingReceiveStream(
        _Feed(_chunks(bytes(wire), 300)), secret, expected_size=1000 if known else None
    )
    with pytest.raises(TagMismatch):
        await _decrypt_all(stream)
    assert not stream.verified
    # Broken afterwards, never a late b"".
    with pytest.raises(trio.BrokenResourceError):
        await stream.receive_some()


@pytest.mark.parametrize("known", [True, False], ids=["known-size", "unknown-size"])
async def test_wrong_key_raises_tag_mismatch(known: bool) -> None:
    secret = TransportSecret.generate(AES256GCM)
    other = TransportSecret(os.urandom(32), secret.iv, AES256GCM)
    wire = AESGCM(secret.key).encrypt(secret.iv, b"hello world", None)
    stream = DecryptingReceiveStream(_Feed([wire]), other, expected_size=11 if known else None)
    with pytest.raises(TagMismatch):
        await _decrypt_all(stream)


@pytest.mark.parametrize("cut", [1, 15, 16, 17, 500, 1015])
async def test_truncated_known_size(cut: int) -> None:
    secret = TransportSecret.generate(AES128GCM)
    wire = AESGCM(secret.key).encrypt(secret.iv, os.urandom(1000), None)
    stream = DecryptingReceiveStream(_Feed([wire[:-cut]]), secret, expected_size=1000)
    with pytest.raises(TruncatedStream, match="early"):
        await _decrypt_all(stream)


async def test_truncated_unknown_size() -> None:
    secret = TransportSecret.generate(AES128GCM)
    wire = AESGCM(secret.key).encrypt(secret.iv, os.urandom(1000), None)
    # Shorter than a tag: truncated; longer: the tag is wrong.
    with pytest.raises(TruncatedStream):
        await _decrypt_all(DecryptingReceiveStream(_Feed([wire[:15]]), secret))
    with pytest.raises(TagMismatch):
        await _decrypt_all(DecryptingReceiveStream(_Feed([wire[:-1]]), secret))


async def test_truncated_is_a_broken_resource_error() -> None:
    secret = TransportSecret.generate(AES128GCM)
    stream = DecryptingReceiveStream(_Feed([]), secret, expected_size=10)
    with pytest.raises(trio.BrokenResourceError):
        await stream.receive_some()


@pytest.mark.parametrize("require_eof", [True, False])
async def test_trailing_bytes_in_same_chunk(require_eof: bool) -> None:
    secret = TransportSecret.generate(AES128GCM)
    wire = AESGCM(secret.key).encrypt(secret.iv, b"x" * 100, None)
    stream = DecryptingReceiveStream(
        _Feed([wire + b"!"]), secret, expected_size=100, require_eof=require_eof
    )
    with pytest.raises(UnexpectedTrailingData):
        await _decrypt_all(stream)


async def test_trailing_bytes_in_later_chunk() -> None:
    secret = TransportSecret.generate(AES128GCM)
    wire = AESGCM(secret.key).encrypt(secret.iv, b"x" * 100, None)
    strict = DecryptingReceiveStream(_Feed([wire, b"!"]), secret, expected_size=100)
    with pytest.raises(UnexpectedTrailingData):
        await _decrypt_all(strict)
    # require_eof=False stops reading after the tag, so a later chunk is never seen.
    lax = DecryptingReceiveStream(_Feed([wire, b"!"]), secret, expected_size=100, require_eof=False)
    assert await _decrypt_all(lax) == b"x" * 100


async def test_require_eof_false_does_not_wait_for_eof() -> None:
    secret = TransportSecret.generate(AES128GCM)
    wire = AESGCM(secret.key).encrypt(secret.iv, b"abc", None)
    s, r = trio.testing.memory_stream_one_way_pair()
    await s.send_all(wire)  # the transport stays open
    stream = DecryptingReceiveStream(r, secret, expected_size=3, require_eof=False)
    with trio.fail_after(1):
        assert await _decrypt_all(stream) == b"abc"


async def test_expected_size_over_gcm_limit_is_refused() -> None:
    secret = TransportSecret.generate(AES128GCM)
    with pytest.raises(PlaintextLimitExceeded):
        DecryptingReceiveStream(_Feed([]), secret, expected_size=2**36 - 31)


async def test_aclose_without_finish_sends_no_tag() -> None:
    secret = TransportSecret.generate(AES128GCM)
    sink = _Collect()
    enc = EncryptingSendStream(sink, secret)
    await enc.send_all(b"a" * 100)
    await enc.aclose()
    assert len(sink.data) == 100  # ciphertext only, no tag
    assert not enc.finished
    for expected in (100, None):
        stream = DecryptingReceiveStream(_Feed([bytes(sink.data)]), secret, expected_size=expected)
        with pytest.raises((TruncatedStream, TagMismatch)):
            await _decrypt_all(stream)


async def test_sender_size_checks() -> None:
    secret = TransportSecret.generate(AES128GCM)
    enc = EncryptingSendStream(_Collect(), secret, expected_size=10)
    await enc.send_all(b"12345")
    with pytest.raises(SizeMismatch):
        await enc.finish()
    with pytest.raises(trio.BrokenResourceError):
        await enc.send_all(b"12345")

    enc = EncryptingSendStream(_Collect(), secret, expected_size=3)
    with pytest.raises(SizeMismatch):
        await enc.send_all(b"1234")


async def test_send_after_finish_is_closed() -> None:
    enc = EncryptingSendStream(_Collect(), TransportSecret.generate(AES128GCM))
    await enc.finish()
    with pytest.raises(trio.ClosedResourceError):
        await enc.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await enc.finish()


class _TinyLimit(AESGCMCipher):
    max_plaintext_size = 100


async def test_gcm_limit_enforced_by_sender() -> None:
    cipher = _TinyLimit(16, "urn:test:tiny")
    enc = EncryptingSendStream(_Collect(), TransportSecret.generate(cipher))
    await enc.send_all(b"x" * 100)
    with pytest.raises(PlaintextLimitExceeded):
        await enc.send_all(b"x")


async def test_gcm_limit_enforced_by_receiver() -> None:
    cipher = _TinyLimit(16, "urn:test:tiny")
    secret = TransportSecret.generate(cipher)
    wire = AESGCM(secret.key).encrypt(secret.iv, b"y" * 101, None)
    with pytest.raises(PlaintextLimitExceeded):
        await _decrypt_all(DecryptingReceiveStream(_Feed([wire]), secret))


async def test_cancelled_send_breaks_the_stream() -> None:
    secret = TransportSecret.generate(AES128GCM)
    s, _r = trio.testing.lockstep_stream_one_way_pair()
    enc = EncryptingSendStream(s, secret)
    with trio.move_on_after(0.01):
        await enc.send_all(b"x" * 100)
    with pytest.raises(trio.BrokenResourceError):
        await enc.send_all(b"y")
    with pytest.raises(trio.BrokenResourceError):
        await enc.finish()


async def test_memoryview_and_large_single_send() -> None:
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(3 * (1 << 20) + 5)
    sink = _Collect()
    enc = EncryptingSendStream(sink, secret)
    await enc.send_all(memoryview(plaintext))
    await enc.finish()
    assert bytes(sink.data) == AESGCM(secret.key).encrypt(secret.iv, plaintext, None)
    assert enc.plaintext_sent == len(plaintext)


async def test_pipeline_over_memory_stream() -> None:
    secret = TransportSecret.generate(AES128GCM)
    plaintext = os.urandom(1_000_003)
    s, r = trio.testing.memory_stream_one_way_pair()
    enc = EncryptingSendStream(s, secret, expected_size=len(plaintext))
    dec = DecryptingReceiveStream(r, secret, expected_size=len(plaintext))
    got = bytearray()

    async def sender() -> None:
        for part in _chunks(plaintext, 65536):
            await enc.send_all(part)
        await enc.finish()
        await enc.aclose()

    async def receiver() -> None:
        got.extend(await _decrypt_all(dec))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(receiver)
    assert got == plaintext


# -- trio conformance ---------------------------------------------------------------------------


class _FinishOnClose(EncryptingSendStream):
    """Conformance adapter: the generic checker expects aclose() to mean a clean end of stream."""

    async def aclose(self) -> None:
        if not self._closed and self._broken is None and not self._finished:
            try:
                await self.finish()
            except trio.BrokenResourceError:
                pass
            except BaseException:
                await super().aclose()
                raise
        await super().aclose()


def _conformance_pair(
    s: trio.abc.SendStream, r: trio.abc.ReceiveStream
) -> tuple[trio.abc.SendStream, trio.abc.ReceiveStream]:
    secret = TransportSecret.generate(AES128GCM)
    dec = DecryptingReceiveStream(r, secret, expected_size=2**30)

    class _Sender(_FinishOnClose):
        async def finish(self) -> None:
            # The checker sends an amount nobody knows beforehand; tell the receiver the real size
            # when the sender finishes, as a Jingle <size> would have told it up front.
            dec._opener.expected_size = self.plaintext_sent
            await super().finish()

    return _Sender(s, secret), dec


async def _make_pair() -> tuple[trio.abc.SendStream, trio.abc.ReceiveStream]:
    return _conformance_pair(*trio.testing.memory_stream_one_way_pair())


async def _make_clogged_pair() -> tuple[trio.abc.SendStream, trio.abc.ReceiveStream]:
    return _conformance_pair(*trio.testing.lockstep_stream_one_way_pair())


async def test_check_one_way_stream() -> None:
    await trio.testing.check_one_way_stream(_make_pair, _make_clogged_pair)


async def test_concurrent_use_is_busy() -> None:
    secret = TransportSecret.generate(AES128GCM)
    s, r = trio.testing.lockstep_stream_one_way_pair()
    enc = EncryptingSendStream(s, secret)
    dec = DecryptingReceiveStream(r, secret)
    with pytest.RaisesGroup(trio.BusyResourceError):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(enc.send_all, b"1")
            nursery.start_soon(enc.finish)
    with pytest.RaisesGroup(trio.BusyResourceError):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dec.receive_some, 1)
            nursery.start_soon(dec.receive_some, 1)


async def test_closed_streams_raise_closed() -> None:
    secret = TransportSecret.generate(AES128GCM)
    enc = EncryptingSendStream(_Collect(), secret)
    dec = DecryptingReceiveStream(_Feed([]), secret)
    await enc.aclose()
    await dec.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await enc.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await enc.finish()
    with pytest.raises(trio.ClosedResourceError):
        await dec.receive_some()


@given(
    plaintext=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3100), max_size=12),
    known=st.booleans(),
    max_bytes=st.one_of(st.none(), st.integers(min_value=1, max_value=600)),
)
@settings(max_examples=150)
async def test_any_chunking_decrypts(
    plaintext: bytes, cuts: list[int], known: bool, max_bytes: int | None
) -> None:
    secret = TransportSecret.generate(AES128GCM)
    wire = AESGCM(secret.key).encrypt(secret.iv, plaintext, None)
    points = sorted({0, len(wire), *(c for c in cuts if c < len(wire))})
    chunks = [wire[a:b] for a, b in itertools.pairwise(points)]
    stream = DecryptingReceiveStream(
        _Feed(chunks), secret, expected_size=len(plaintext) if known else None
    )
    assert await _decrypt_all(stream, max_bytes) == plaintext


# -- sans-IO core ---------------------------------------------------------------------------------


def test_sealer_and_opener_without_io() -> None:
    secret = TransportSecret.generate(AES256GCM)
    plaintext = os.urandom(1000)
    sealer = StreamSealer(secret, expected_size=1000)
    wire = sealer.encrypt(plaintext[:400]) + sealer.encrypt(plaintext[400:]) + sealer.finish()
    assert wire == AESGCM(secret.key).encrypt(secret.iv, plaintext, None)
    with pytest.raises(LocalProtocolError, match="finished"):
        sealer.encrypt(b"x")

    opener = StreamOpener(secret, expected_size=1000)
    out = opener.receive_data(wire[:1008])
    assert not opener.verified
    out += opener.receive_data(wire[1008:])
    assert opener.verified  # known size: verified as soon as the tag is complete
    assert out == plaintext
    opener.receive_eof()
    with pytest.raises(UnexpectedTrailingData):
        opener.receive_data(b"!")
    with pytest.raises(LocalProtocolError, match="failed earlier"):
        opener.receive_data(b"!")

    unknown = StreamOpener(secret)
    assert unknown.receive_data(wire) == plaintext
    assert not unknown.verified
    unknown.receive_eof()
    assert unknown.verified


def test_opener_truncation_messages() -> None:
    secret = TransportSecret.generate(AES128GCM)
    opener = StreamOpener(secret, expected_size=100)
    opener.receive_data(bytes(50))
    with pytest.raises(TruncatedStream, match=r"66 bytes early \(got 50 of 116\)"):
        opener.receive_eof()


def test_sealer_size_errors() -> None:
    secret = TransportSecret.generate(AES128GCM)
    with pytest.raises(ValueError, match=">= 0"):
        StreamSealer(secret, expected_size=-1)
    sealer = StreamSealer(secret, expected_size=2)
    with pytest.raises(SizeMismatch, match="sending 3 bytes, but 2 were announced"):
        sealer.encrypt(b"abc")
    with pytest.raises(LocalProtocolError, match="failed earlier"):
        sealer.finish()


async def test_oversized_send_all_sends_nothing() -> None:
    sink = _Collect()
    enc = EncryptingSendStream(sink, TransportSecret.generate(AES128GCM), expected_size=10)
    with pytest.raises(SizeMismatch):
        await enc.send_all(bytes(3 << 20))
    assert sink.data == b""
