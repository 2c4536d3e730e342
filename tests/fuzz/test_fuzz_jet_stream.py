"""Fuzzing JET decryption (``jet_trio._jet.stream.DecryptingReceiveStream``).

The transport delivers random bytes, or a valid ``ciphertext ‖ tag`` that was mutated (bits
flipped, bytes inserted or deleted, truncated, extended), in random chunks, with or without the
announced size (sometimes a wrong one), read with random ``max_bytes``. Property: the stream
raises only :class:`~jet_trio._jet.cipher.TagMismatch`,
:class:`~jet_trio._jet.stream.TruncatedStream`,
:class:`~jet_trio._jet.stream.UnexpectedTrailingData` (or
:class:`~jet_trio._jet.cipher.PlaintextLimitExceeded`), then stays broken; it reports the end of the
data (``b""``) only for the untouched wire bytes and then has returned exactly the plaintext.
"""

from __future__ import annotations

import itertools

import pytest
import trio
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from jet_trio._errors import LocalProtocolError
from jet_trio._jet.cipher import Cipher, PlaintextLimitExceeded, TagMismatch, TransportSecret
from jet_trio._jet.stream import (
    DecryptingReceiveStream,
    StreamOpener,
    TruncatedStream,
    UnexpectedTrailingData,
)
from jet_trio._plugins.builtin_ciphers import AES128GCM, AES256GCM

from . import fuzz

TYPED = (TagMismatch, TruncatedStream, UnexpectedTrailingData, PlaintextLimitExceeded)


class _Chunks(trio.abc.ReceiveStream):
    """Returns the given chunks (split further to honour ``max_bytes``), then EOF."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = [c for c in chunks if c]

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


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


_mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate", "extend"]),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
)


def _mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, arg in ops:
        at = pos % (len(buf) + 1)
        if op == "flip" and buf:
            buf[at % len(buf)] ^= 1 << (arg % 8)
        elif op == "insert":
            buf[at:at] = bytes([arg])
        elif op == "delete":
            del buf[at : at + 1 + arg % 20]
        elif op == "truncate":
            del buf[at:]
        elif op == "extend":
            buf += bytes([arg]) * (1 + arg % 20)
    return bytes(buf)


async def _read_all(
    stream: DecryptingReceiveStream, max_bytes: int | None
) -> tuple[bytes, BaseException | None]:
    out = bytearray()
    for _ in range(10_000):  # bounded: each read consumes at least one transport chunk
        try:
            data = await stream.receive_some(max_bytes)
        except TYPED as exc:
            with pytest.raises(trio.BrokenResourceError):
                await stream.receive_some(max_bytes)
            return bytes(out), exc
        if not data:
            return bytes(out), None
        out += data
    raise AssertionError("the stream never ended")


_ciphers = st.sampled_from([AES128GCM, AES256GCM])
_sizes = st.sampled_from(["known", "unknown", "wrong"])


def _expected(mode: str, size: int, delta: int) -> int | None:
    if mode == "known":
        return size
    if mode == "unknown":
        return None
    return max(0, size + delta)


@fuzz(ci=80)
@given(
    _ciphers,
    st.binary(max_size=300),
    st.lists(st.integers(min_value=0), max_size=8),
    _sizes,
    st.integers(-40, 40),
    st.one_of(st.none(), st.integers(1, 64)),
    st.booleans(),
)
async def test_random_wire_bytes(
    cipher: Cipher,
    wire: bytes,
    cuts: list[int],
    mode: str,
    delta: int,
    max_bytes: int | None,
    require_eof: bool,
) -> None:
    secret = TransportSecret.generate(cipher)
    size = max(0, len(wire) - cipher.tag_size)
    stream = DecryptingReceiveStream(
        _Chunks(_chunks(wire, cuts)),
        secret,
        expected_size=_expected(mode, size, delta),
        require_eof=require_eof,
    )
    _, error = await _read_all(stream, max_bytes)
    assert error is not None  # random bytes never authenticate
    assert not stream.verified


@fuzz(ci=150)
@given(
    _ciphers,
    st.binary(max_size=400),
    st.lists(_mutation, max_size=4),
    st.lists(st.integers(min_value=0), max_size=8),
    _sizes,
    st.integers(-20, 20),
    st.one_of(st.none(), st.integers(1, 64)),
    st.booleans(),
)
async def test_mutated_ciphertext(
    cipher: Cipher,
    plaintext: bytes,
    ops: list[tuple[str, int, int]],
    cuts: list[int],
    mode: str,
    delta: int,
    max_bytes: int | None,
    require_eof: bool,
) -> None:
    secret = TransportSecret.generate(cipher)
    wire = AESGCM(secret.key).encrypt(secret.iv, plaintext, None)
    mutated = _mutate(wire, ops)
    expected_size = _expected(mode, len(plaintext), delta)
    stream = DecryptingReceiveStream(
        _Chunks(_chunks(mutated, cuts)),
        secret,
        expected_size=expected_size,
        require_eof=require_eof,
    )
    got, error = await _read_all(stream, max_bytes)
    intact = mutated == wire and expected_size in (None, len(plaintext))
    if intact:
        assert error is None and got == plaintext and stream.verified
    elif error is None:
        # Reported complete: only possible when the authenticated prefix is exactly the
        # ciphertext and the rest went unread (require_eof=False with extra bytes later).
        assert stream.verified and got == plaintext and not require_eof
        assert expected_size == len(plaintext) and mutated.startswith(wire)


@fuzz(ci=100)
@given(
    _ciphers,
    st.binary(max_size=200),
    st.lists(_mutation, max_size=3),
    st.lists(st.integers(min_value=0), max_size=8),
    st.booleans(),
)
def test_sans_io_opener(
    cipher: Cipher,
    plaintext: bytes,
    ops: list[tuple[str, int, int]],
    cuts: list[int],
    known: bool,
) -> None:
    secret = TransportSecret.generate(cipher)
    wire = AESGCM(secret.key).encrypt(secret.iv, plaintext, None)
    mutated = _mutate(wire, ops)
    opener = StreamOpener(secret, expected_size=len(plaintext) if known else None)
    out = bytearray()
    try:
        for chunk in _chunks(mutated, cuts):
            out += opener.receive_data(chunk)
        opener.receive_eof()
    except TYPED:
        with pytest.raises(LocalProtocolError):
            opener.receive_data(b"x")
        assert mutated != wire
        return
    assert opener.verified and mutated == wire and out == plaintext
