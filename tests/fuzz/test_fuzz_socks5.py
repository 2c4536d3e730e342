"""Fuzzing the sans-IO SOCKS5 handshakes (``jet_trio._transports.socks5``)
with random and mutated bytes.

Property: ``receive_data`` / ``next_event`` / ``bytes_wanted`` only ever raise
:class:`~jet_trio._transports.socks5.Socks5Error` or
:class:`~jet_trio._transports.socks5.Socks5StateError`; a failed
handshake stays failed; a shell that reads no more than ``bytes_wanted`` never swallows
application data; every byte split of a valid exchange gives the same result.
"""

from __future__ import annotations

import contextlib
import itertools

from hypothesis import given
from hypothesis import strategies as st

from jet_trio._transports.socks5 import (
    NEED_DATA,
    Connected,
    ConnectRequest,
    Socks5Client,
    Socks5Error,
    Socks5Server,
    Socks5StateError,
    dstaddr,
)

from . import fuzz

DST = dstaddr("sid1", "romeo@montague.lit/orchard", "juliet@capulet.lit/balcony")
GREETING = b"\x05\x01\x00"
REQUEST = b"\x05\x01\x00\x03\x28" + DST.encode() + b"\x00\x00"
SERVER_REPLY = b"\x05\x00" + b"\x05\x00\x00\x03\x28" + DST.encode() + b"\x00\x00"
IPV4_REPLY = b"\x05\x00" + b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"
APP_DATA = b"application bytes"

_mutation = st.tuples(
    st.sampled_from(["insert", "delete", "flip", "byte"]),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
)


def _mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, arg in ops:
        at = pos % (len(buf) + 1)
        if op == "insert":
            buf[at:at] = bytes([arg]) * (1 + arg % 3)
        elif op == "delete":
            del buf[at : at + 1 + arg % 4]
        elif buf:
            at %= len(buf)
            buf[at] = buf[at] ^ (1 << (arg % 8)) if op == "flip" else arg
    return bytes(buf)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _drive_client(chunks: list[bytes], eof: bool) -> Socks5Client:
    client = Socks5Client(DST)
    assert client.data_to_send() == GREETING
    failed = False
    for chunk in [*chunks, b""] if eof else chunks:
        if failed:
            try:
                client.receive_data(chunk)
            except Socks5StateError:
                pass
            else:
                assert client.state == "connected"  # only a connected client takes more data
            continue
        try:
            client.bytes_wanted  # noqa: B018 - the property computes from untrusted bytes
            client.receive_data(chunk)
            event = client.next_event()
            assert client.bytes_wanted >= 0
        except (Socks5Error, Socks5StateError):
            assert client.state in ("error", "connected")
            failed = client.state == "error"
            continue
        if isinstance(event, Connected):
            assert event.dstaddr == DST and client.state == "connected"
        else:
            assert event is NEED_DATA
    return client


@fuzz(ci=150)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=8), st.booleans())
def test_client_random_bytes(data: bytes, cuts: list[int], eof: bool) -> None:
    _drive_client(_chunks(data, cuts), eof)


@fuzz(ci=150)
@given(
    st.sampled_from([SERVER_REPLY, IPV4_REPLY]),
    st.lists(_mutation, max_size=5),
    st.lists(st.integers(min_value=0), max_size=8),
    st.booleans(),
)
def test_client_mutated_reply(
    reply: bytes, ops: list[tuple[str, int, int]], cuts: list[int], eof: bool
) -> None:
    _drive_client(_chunks(_mutate(reply + APP_DATA, ops), cuts), eof)


@fuzz(ci=60)
@given(st.lists(st.integers(min_value=0), max_size=12), st.sampled_from([SERVER_REPLY, IPV4_REPLY]))
def test_client_valid_reply_any_split(cuts: list[int], reply: bytes) -> None:
    client = _drive_client(_chunks(reply + APP_DATA, cuts), eof=False)
    assert client.state == "connected"
    assert client.trailing_data == APP_DATA


@fuzz(ci=100)
@given(st.lists(_mutation, max_size=4), st.lists(st.integers(1, 64), min_size=1, max_size=40))
def test_client_reading_bytes_wanted_never_reads_past_the_handshake(
    ops: list[tuple[str, int, int]], reads: list[int]
) -> None:
    wire = _mutate(SERVER_REPLY, ops) + APP_DATA
    client = Socks5Client(DST)
    pos = 0
    for want in itertools.cycle(reads):
        try:
            n = min(want, client.bytes_wanted)
            if n == 0 or pos >= len(wire):
                break
            client.receive_data(wire[pos : pos + n])
            pos += n
            if isinstance(client.next_event(), Connected):
                break
        except Socks5Error:
            return
    if client.state == "connected":
        assert client.trailing_data == b""


def _drive_server(chunks: list[bytes], eof: bool, accept: bool) -> Socks5Server:
    server = Socks5Server()
    failed = False
    for chunk in [*chunks, b""] if eof else chunks:
        if failed:
            with contextlib.suppress(Socks5StateError):
                server.receive_data(chunk)
            continue
        try:
            server.bytes_wanted  # noqa: B018
            server.receive_data(chunk)
            while True:
                event = server.next_event()
                if event is NEED_DATA:
                    break
                assert isinstance(event, ConnectRequest)
                assert len(event.dstaddr) == 40
                if accept:
                    server.accept()
                else:
                    server.reject()
                break
            assert server.bytes_wanted >= 0
        except Socks5StateError:
            if server.state not in ("accepted", "error", "decide"):
                raise
            failed = server.state == "error"
        except Socks5Error as exc:
            assert server.state == "error"
            out = server.data_to_send()
            if exc.reply is not None:
                assert out.endswith(bytes([5, exc.reply, 0, 1, 0, 0, 0, 0, 0, 0]))
            failed = True
        server.data_to_send()
    return server


@fuzz(ci=150)
@given(
    st.binary(max_size=700),
    st.lists(st.integers(min_value=0), max_size=8),
    st.booleans(),
    st.booleans(),
)
def test_server_random_bytes(data: bytes, cuts: list[int], eof: bool, accept: bool) -> None:
    _drive_server(_chunks(data, cuts), eof, accept)


@fuzz(ci=150)
@given(
    st.lists(_mutation, max_size=5),
    st.lists(st.integers(min_value=0), max_size=8),
    st.booleans(),
    st.booleans(),
)
def test_server_mutated_request(
    ops: list[tuple[str, int, int]], cuts: list[int], eof: bool, accept: bool
) -> None:
    _drive_server(_chunks(_mutate(GREETING + REQUEST + APP_DATA, ops), cuts), eof, accept)


@fuzz(ci=60)
@given(st.lists(st.integers(min_value=0), max_size=12))
def test_server_valid_request_any_split(cuts: list[int]) -> None:
    server = _drive_server(_chunks(GREETING + REQUEST + APP_DATA, cuts), False, True)
    assert server.state == "accepted"
    assert server.trailing_data == APP_DATA


@fuzz(ci=100)
@given(st.lists(_mutation, max_size=4), st.lists(st.integers(1, 64), min_size=1, max_size=40))
def test_server_reading_bytes_wanted_never_reads_past_the_request(
    ops: list[tuple[str, int, int]], reads: list[int]
) -> None:
    wire = _mutate(GREETING + REQUEST, ops) + APP_DATA
    server = Socks5Server()
    pos = 0
    for want in itertools.cycle(reads):
        try:
            n = min(want, server.bytes_wanted)
            if n == 0 or pos >= len(wire):
                break
            server.receive_data(wire[pos : pos + n])
            pos += n
            event = server.next_event()
            if isinstance(event, ConnectRequest):
                server.accept()
                break
        except Socks5Error:
            return
    if server.state == "accepted":
        assert server.trailing_data == b""
