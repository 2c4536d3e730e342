"""Sans-IO SOCKS5 handshakes (RFC 1928 subset of XEP-0065)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jet_trio._errors import LocalProtocolError, RemoteProtocolError
from jet_trio._transports.socks5 import (
    NEED_DATA,
    Connected,
    ConnectRequest,
    NeedData,
    ReplyCode,
    Socks5Client,
    Socks5Error,
    Socks5ReplyError,
    Socks5Server,
    Socks5StateError,
    dstaddr,
)
from jet_trio._xmpp.jid import JID

DST = dstaddr("sid1", "romeo@montague.lit/orchard", "juliet@capulet.lit/balcony")
GREETING = b"\x05\x01\x00"
REQUEST = b"\x05\x01\x00\x03\x28" + DST.encode() + b"\x00\x00"
SUCCESS = b"\x05\x00\x00\x03\x28" + DST.encode() + b"\x00\x00"


def test_dstaddr_matches_dino_captures() -> None:
    # session-initiate from alice@localhost/dino to bob@localhost/recv (fixture
    # dino_sent_s5b_send.xml): the offerer (initiator) comes first.
    assert (
        dstaddr(
            "5b048f10-1d09-4278-93a2-815bbfb57ab3", "alice@localhost/dino", "bob@localhost/recv"
        )
        == "175eac55fc877f08ee3f89482ed64950835f240d"
    )
    # Dino as responder (session-accept): its own candidates hash responder first.
    sid = "ccd1f6c6-118e-462b-a2a0-bbd534bc7970"
    assert (
        dstaddr(sid, JID("bob@localhost/dino2"), JID("alice@localhost/dino"))
        == "dc2d61c12f1052f8013a31e7313100149a985c8d"
    )
    assert (
        dstaddr(sid, "alice@localhost/dino", "bob@localhost/dino2")
        == "caa56b740a1996245f8b006320f56a2d05b51d62"
    )


def _run(client: Socks5Client, server: Socks5Server, split: int | None = None) -> None:
    """Shuttle bytes between the two, delivering ``split`` bytes at a time."""
    for _ in range(1000):
        data = client.data_to_send()
        for i in range(0, len(data), split or len(data) or 1):
            server.receive_data(data[i : i + (split or len(data))])
        ev = server.next_event()
        if isinstance(ev, ConnectRequest):
            assert ev.dstaddr == DST
            server.accept()
        back = server.data_to_send()
        for i in range(0, len(back), split or len(back) or 1):
            client.receive_data(back[i : i + (split or len(back))])
        if client.next_event() == Connected(DST):
            return
    raise AssertionError("handshake did not finish")


def test_handshake_whole() -> None:
    client, server = Socks5Client(DST), Socks5Server()
    assert client.data_to_send() == GREETING
    server.receive_data(GREETING)
    assert server.next_event() is NEED_DATA
    assert server.data_to_send() == b"\x05\x00"
    client.receive_data(b"\x05\x00")
    assert client.next_event() is NEED_DATA
    assert client.data_to_send() == REQUEST
    server.receive_data(REQUEST)
    assert server.next_event() == ConnectRequest(DST)
    server.accept()
    assert server.data_to_send() == SUCCESS
    client.receive_data(SUCCESS)
    assert client.next_event() == Connected(DST)
    assert client.state == "connected"
    assert server.state == "accepted"


@pytest.mark.parametrize("split", [1, 2, 3, 5, 7, 13, 41])
def test_handshake_split(split: int) -> None:
    client, server = Socks5Client(DST), Socks5Server()
    _run(client, server, split)
    assert client.trailing_data == b""
    assert server.trailing_data == b""


def test_server_every_byte_boundary() -> None:
    stream = GREETING + REQUEST
    for cut in range(len(stream) + 1):
        server = Socks5Server()
        events: list[ConnectRequest | NeedData] = []
        for part in (stream[:cut], stream[cut:]):
            if part:
                server.receive_data(part)
            if not events and (ev := server.next_event()) is not NEED_DATA:
                events.append(ev)
        assert events == [ConnectRequest(DST)], cut


def test_client_every_byte_boundary() -> None:
    stream = b"\x05\x00" + SUCCESS
    for cut in range(len(stream) + 1):
        client = Socks5Client(DST)
        result = []
        for part in (stream[:cut], stream[cut:]):
            if part:
                client.receive_data(part)
            while True:
                ev = client.next_event()
                if ev is NEED_DATA:
                    break
                result.append(ev)
                break
            if result:
                break
        assert result == [Connected(DST)], cut


def test_bytes_wanted_never_reads_past_handshake() -> None:
    # Feeding exactly bytes_wanted at a time consumes the handshake with nothing left over.
    server = Socks5Server()
    wire = GREETING + REQUEST + b"APPDATA"
    pos = 0
    while True:
        ev = server.next_event()
        if isinstance(ev, ConnectRequest):
            break
        want = server.bytes_wanted
        assert want > 0
        server.receive_data(wire[pos : pos + want])
        pos += want
    assert wire[pos:] == b"APPDATA"
    client = Socks5Client(DST)
    wire = b"\x05\x00" + SUCCESS + b"APP"
    pos = 0
    while client.next_event() is NEED_DATA:
        want = client.bytes_wanted
        client.receive_data(wire[pos : pos + want])
        pos += want
    assert wire[pos:] == b"APP"


def test_trailing_data_is_kept() -> None:
    server = Socks5Server()
    server.receive_data(GREETING + REQUEST)
    assert isinstance(server.next_event(), ConnectRequest)
    server.accept()
    server.receive_data(b"early")
    assert server.trailing_data == b"early"


def _server_error(data: bytes) -> tuple[Socks5Error, bytes]:
    server = Socks5Server()
    with pytest.raises(Socks5Error) as info:
        server.receive_data(data)
        while server.next_event() is NEED_DATA:
            pass
    assert server.state == "error"
    return info.value, server.data_to_send()


def test_server_wrong_version() -> None:
    err, out = _server_error(b"\x04\x01\x00")
    assert err.reply is None
    assert out == b""
    assert isinstance(err, RemoteProtocolError)


def test_server_garbage_http() -> None:
    _, out = _server_error(b"GET / HTTP/1.1\r\n\r\n")
    assert out == b""


def test_server_no_acceptable_method() -> None:
    _, out = _server_error(b"\x05\x02\x01\x02")
    assert out == b"\x05\xff"


def test_server_zero_methods() -> None:
    _server_error(b"\x05\x00")


@pytest.mark.parametrize(
    ("request_bytes", "reply"),
    [
        (b"\x05\x02\x00\x03\x28" + DST.encode() + b"\x00\x00", ReplyCode.COMMAND_NOT_SUPPORTED),
        (b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50", ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED),
        (b"\x05\x01\x01\x03\x28" + DST.encode() + b"\x00\x00", ReplyCode.GENERAL_FAILURE),
        (b"\x04\x01\x00\x03\x28" + DST.encode() + b"\x00\x00", ReplyCode.GENERAL_FAILURE),
        (b"\x05\x01\x00\x03\x05hello\x00\x00", ReplyCode.NOT_ALLOWED),
        (b"\x05\x01\x00\x03\x28" + b"z" * 40 + b"\x00\x00", ReplyCode.NOT_ALLOWED),
        (b"\x05\x01\x00\x03\x28" + DST.encode() + b"\x04\x38", ReplyCode.NOT_ALLOWED),
    ],
    ids=["bind-cmd", "ipv4", "reserved", "version", "short-addr", "not-hex", "port"],
)
def test_server_bad_request_gets_reply(request_bytes: bytes, reply: ReplyCode) -> None:
    err, out = _server_error(GREETING + request_bytes)
    assert err.reply == reply
    assert out[:2] == b"\x05\x00"  # method choice went out before the failure
    assert out[2:4] == bytes([5, reply])


def test_server_oversize_pipelined_garbage() -> None:
    server = Socks5Server()
    with pytest.raises(Socks5Error, match="oversized"):
        server.receive_data(b"\x05\x01\x00" + b"\x05" * 2000)


def test_server_truncated_eof() -> None:
    server = Socks5Server()
    server.receive_data(GREETING + REQUEST[:10])
    assert server.next_event() is NEED_DATA
    with pytest.raises(Socks5Error, match="closed"):
        server.receive_data(b"")


def test_server_uppercase_dstaddr_normalised() -> None:
    server = Socks5Server()
    server.receive_data(GREETING + REQUEST.replace(DST.encode(), DST.upper().encode()))
    assert server.next_event() == ConnectRequest(DST)


def test_server_reject() -> None:
    server = Socks5Server()
    server.receive_data(GREETING + REQUEST)
    assert isinstance(server.next_event(), ConnectRequest)
    server.data_to_send()
    server.reject(ReplyCode.HOST_UNREACHABLE)
    assert server.data_to_send()[:2] == b"\x05\x04"
    with pytest.raises(Socks5StateError):
        server.accept()


def test_server_misuse() -> None:
    server = Socks5Server()
    with pytest.raises(Socks5StateError):
        server.accept()
    server.receive_data(GREETING + REQUEST)
    server.next_event()
    with pytest.raises(Socks5StateError, match="accept"):
        server.next_event()
    with pytest.raises(Socks5StateError):
        server.reject(ReplyCode.SUCCEEDED)
    assert isinstance(Socks5StateError("x"), LocalProtocolError)


def _client_at_reply() -> Socks5Client:
    client = Socks5Client(DST)
    client.data_to_send()
    client.receive_data(b"\x05\x00")
    assert client.next_event() is NEED_DATA
    assert client.data_to_send() == REQUEST
    return client


@pytest.mark.parametrize("code", [1, 2, 4, 5])
def test_client_refused(code: int) -> None:
    client = _client_at_reply()
    client.receive_data(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(Socks5ReplyError) as info:
        client.next_event()
    assert info.value.reply == code
    assert client.state == "error"


def test_client_unknown_refusal_code() -> None:
    client = _client_at_reply()
    client.receive_data(bytes([5, 0x42, 0, 1, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(Socks5Error, match="unknown reply"):
        client.next_event()


def test_client_method_refused() -> None:
    client = Socks5Client(DST)
    client.receive_data(b"\x05\xff")
    with pytest.raises(Socks5Error, match="no-auth"):
        client.next_event()


def test_client_wrong_version() -> None:
    client = Socks5Client(DST)
    client.receive_data(b"\x04\x00")
    with pytest.raises(Socks5Error, match="version"):
        client.next_event()


def test_client_reply_wrong_dstaddr() -> None:
    client = _client_at_reply()
    other = dstaddr("other", "a@b/c", "d@e/f")
    client.receive_data(SUCCESS.replace(DST.encode(), other.encode()))
    with pytest.raises(Socks5Error, match=r"different DST\.ADDR"):
        client.next_event()


def test_client_accepts_rfc1928_ipv4_bound_address() -> None:
    client = _client_at_reply()
    client.receive_data(bytes([5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38]))
    assert client.next_event() == Connected(DST)


def test_client_bad_address_type_and_eof() -> None:
    client = _client_at_reply()
    client.receive_data(bytes([5, 0, 0, 9, 0]))
    with pytest.raises(Socks5Error, match="address type"):
        client.next_event()
    client = _client_at_reply()
    with pytest.raises(Socks5Error, match="closed"):
        client.receive_data(b"")


def test_client_rejects_bad_dstaddr_argument() -> None:
    with pytest.raises(Socks5StateError):
        Socks5Client("not-a-hash")


@given(st.binary(max_size=600))
def test_server_fuzz_only_typed_errors(data: bytes) -> None:
    server = Socks5Server()
    try:
        server.receive_data(data)
        while True:
            ev = server.next_event()
            if ev is NEED_DATA or isinstance(ev, ConnectRequest):
                break
    except Socks5Error:
        assert server.state == "error"


@given(st.binary(max_size=300))
def test_client_fuzz_only_typed_errors(data: bytes) -> None:
    client = Socks5Client(DST)
    try:
        client.receive_data(data)
        while True:
            ev = client.next_event()
            if ev is NEED_DATA or isinstance(ev, Connected):
                break
    except Socks5Error:
        assert client.state == "error"
