"""XEP-0047/XEP-0261 in-band bytestreams: sans-IO core and the trio stream."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from itertools import count
from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from jet_trio._errors import JetError
from jet_trio._transports.ibb import (
    MAX_BLOCK_SIZE,
    Closed,
    DataReceived,
    IBBConnection,
    IBBError,
    IBBStateError,
    IBBStream,
    IBBTransport,
    Opened,
    answer_block_size,
    build_transport,
    check_answered_block_size,
    open_ibb_stream,
    parse_transport,
)
from jet_trio._xmpp import ns as ns

FIXTURES = Path(__file__).parent.parent / "fixtures" / "dino"


def _data(sid: str, seq: object, text: str) -> etree._Element:
    el = etree.Element(f"{{{ns.IBB}}}data", sid=sid, seq=str(seq))
    el.text = text
    return el


def _opened_pair(
    block_size: int = 4096, initial_seq: int = 0
) -> tuple[IBBConnection, IBBConnection]:
    a = IBBConnection("s1", block_size, initial_seq=initial_seq)
    b = IBBConnection("s1", block_size, initial_seq=initial_seq)
    assert b.receive(a.send_open()) == Opened(block_size)
    return a, b


# --- Jingle transport ---------------------------------------------------------------------


def test_transport_roundtrip_and_dino_fixture() -> None:
    t = IBBTransport("ch3d9s71", 4096)
    el = build_transport(t)
    assert el.tag == f"{{{ns.JINGLE_IBB}}}transport"
    assert el.get("block-size") == "4096"
    assert parse_transport(etree.fromstring(etree.tostring(el))) == t
    line = next(
        ln
        for ln in (FIXTURES / "dino_sent_ibb_receive.txt").read_text().splitlines()
        if ln.startswith("<iq")
    )
    iq = etree.fromstring(line.encode())
    tr = iq.find(f".//{{{ns.JINGLE_IBB}}}transport")
    assert tr is not None
    assert parse_transport(tr) == IBBTransport("Icfd9683dca", 4096)


@pytest.mark.parametrize(
    "attrs",
    [
        "sid='x'",
        "block-size='10'",
        "sid='x' block-size='0'",
        "sid='x' block-size='65536'",
        "sid='x' block-size='-5'",
        "sid='x' block-size='4k'",
        "sid='' block-size='4'",
    ],
)
def test_transport_rejects(attrs: str) -> None:
    with pytest.raises(IBBError) as info:
        parse_transport(etree.fromstring(f"<transport xmlns='{ns.JINGLE_IBB}' {attrs}/>"))
    assert info.value.condition == "bad-request"


def test_block_size_negotiation() -> None:
    assert answer_block_size(4096) == 4096
    assert answer_block_size(65535, 8192) == 8192
    assert answer_block_size(4096, 8192) == 4096  # never raised
    assert check_answered_block_size(65535, 4096) == 4096
    with pytest.raises(IBBError):
        check_answered_block_size(4096, 8192)
    with pytest.raises(ValueError):
        answer_block_size(4096, 70000)


# --- sans-IO core -------------------------------------------------------------------------


def test_open_data_close() -> None:
    a, b = _opened_pair(8)
    el = a.send_data(b"hello")
    assert el.get("seq") == "0"
    assert b.receive(el) == DataReceived(0, b"hello")
    assert b.receive(a.send_data(b"")) == DataReceived(1, b"")
    assert b.receive(a.send_close()) == Closed()
    with pytest.raises(IBBStateError):
        a.send_data(b"x")


def test_open_element() -> None:
    a = IBBConnection("s9", 4096)
    el = a.send_open()
    assert (el.tag, el.get("block-size"), el.get("sid"), el.get("stanza")) == (
        f"{{{ns.IBB}}}open",
        "4096",
        "s9",
        "iq",
    )
    with pytest.raises(IBBStateError):
        a.send_open()


def test_seq_wraps_to_zero() -> None:
    a, b = _opened_pair(4, initial_seq=65534)
    seqs = []
    for i in range(4):
        el = a.send_data(bytes([i]))
        seqs.append(int(el.get("seq") or -1))
        assert b.receive(el) == DataReceived(seqs[-1], bytes([i]))
    assert seqs == [65534, 65535, 0, 1]


def test_out_of_sequence() -> None:
    a, b = _opened_pair()
    a.send_data(b"lost")
    with pytest.raises(IBBError) as info:
        b.receive(a.send_data(b"next"))
    assert info.value.condition == "unexpected-request"
    # XEP-0047: the bytestream is now closed and invalid.
    with pytest.raises(IBBError) as info:
        b.receive(_data("s1", 0, ""))
    assert info.value.condition == "item-not-found"


def test_duplicate_seq() -> None:
    a, b = _opened_pair()
    el = a.send_data(b"x")
    b.receive(el)
    with pytest.raises(IBBError, match="out of sequence"):
        b.receive(el)


@pytest.mark.parametrize(
    ("seq", "text", "condition"),
    [
        ("0", base64.b64encode(b"x" * 9).decode(), "bad-request"),  # oversize block
        ("0", "!!!!", "bad-request"),
        ("0", "QUJD=REU=", "bad-request"),  # padding in the middle
        ("0", "QUJ D", "bad-request"),  # whitespace is not base64
        ("x", "", "bad-request"),
        ("65536", "", "bad-request"),
        ("-1", "", "bad-request"),
        ("0" * 9, "", "bad-request"),
    ],
)
def test_bad_data(seq: str, text: str, condition: str) -> None:
    _, b = _opened_pair(8)
    with pytest.raises(IBBError) as info:
        b.receive(_data("s1", seq, text))
    assert info.value.condition == condition
    assert info.value.error_type == "cancel"


def test_oversize_base64_rejected_before_decoding() -> None:
    _, b = _opened_pair(8)
    with pytest.raises(IBBError, match="exceeds block-size"):
        b.receive(_data("s1", 0, "A" * 10_000_000))


def test_unknown_sid_does_not_close() -> None:
    a, b = _opened_pair()
    with pytest.raises(IBBError) as info:
        b.receive(_data("other", 0, ""))
    assert info.value.condition == "item-not-found"
    assert b.receive(a.send_data(b"ok")) == DataReceived(0, b"ok")


def test_data_after_close_and_before_open() -> None:
    a, b = _opened_pair()
    b.receive(a.send_close())
    with pytest.raises(IBBError) as info:
        b.receive(_data("s1", 0, ""))
    assert info.value.condition == "item-not-found"
    fresh = IBBConnection("s1")
    with pytest.raises(IBBError) as info:
        fresh.receive(_data("s1", 0, ""))
    assert info.value.condition == "unexpected-request"


def test_open_negotiation() -> None:
    b = IBBConnection("s1", 4096)
    big = etree.Element(f"{{{ns.IBB}}}open", sid="s1", stanza="iq")
    big.set("block-size", "8192")
    with pytest.raises(IBBError) as info:
        b.receive(big)
    assert (info.value.condition, info.value.error_type) == ("resource-constraint", "modify")
    small = IBBConnection("s1", 1024)
    assert b.receive(small.send_open()) == Opened(1024)
    assert b.block_size == 1024
    with pytest.raises(IBBError) as info:
        b.receive(big)  # second open
    assert info.value.condition == "unexpected-request"
    msg = IBBConnection("s2")
    el = etree.Element(f"{{{ns.IBB}}}open", sid="s2", stanza="message")
    el.set("block-size", "10")
    with pytest.raises(IBBError) as info:
        msg.receive(el)
    assert info.value.condition == "not-acceptable"


def test_local_misuse() -> None:
    a = IBBConnection("s1", 4)
    with pytest.raises(IBBStateError):
        a.send_data(b"x")
    a.send_open()
    with pytest.raises(IBBStateError, match="exceeds"):
        a.send_data(b"12345")
    with pytest.raises(ValueError):
        IBBConnection("s1", MAX_BLOCK_SIZE + 1)
    with pytest.raises(ValueError):
        IBBConnection("", 4)


# --- trio stream through an in-memory iq router -------------------------------------------


class FakeStanzaError(JetError):
    def __init__(self, condition: str) -> None:
        super().__init__(condition)
        self.condition = condition


class FakeIQPeer:
    """The client's IQSender for one side: delivers payloads to the other side's stream.

    Like a real client it fixes the wire order synchronously (``feed`` is called before the
    first checkpoint), then yields for the "network" and waits for the peer's acknowledgement.
    """

    def __init__(self, on_send: Callable[[etree._Element], None] | None = None) -> None:
        self.peer: IBBStream | None = None
        self.on_send = on_send
        self.in_flight = 0
        self.max_in_flight = 0

    async def send_iq(self, payload: etree._Element) -> etree._Element:
        if self.on_send is not None:
            self.on_send(payload)
        if self.peer is None:
            raise FakeStanzaError("service-unavailable")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            try:
                ack = self.peer.feed(payload)
            except IBBError as exc:
                await trio.lowlevel.checkpoint()
                raise FakeStanzaError(exc.condition) from exc
            await trio.lowlevel.checkpoint()
            await ack.wait()
            return etree.Element("{jabber:client}iq", type="result")
        finally:
            self.in_flight -= 1


_sids = count()


@asynccontextmanager
async def ibb_pair(
    block_size: int = 4096, **kw: int
) -> AsyncIterator[tuple[IBBStream, IBBStream, FakeIQPeer, FakeIQPeer]]:
    sid = f"sid{next(_sids)}"
    to_b, to_a = FakeIQPeer(), FakeIQPeer()
    async with open_ibb_stream(to_a, sid, block_size, **kw) as b:
        to_b.peer = b
        async with open_ibb_stream(to_b, sid, block_size, **kw) as a:
            to_a.peer = a
            await a.open()
            yield a, b, to_b, to_a


async def test_stream_basic_and_eof() -> None:
    async with ibb_pair(16) as (a, b, _, _):
        assert a.sid == b.sid
        await a.send_all(b"x" * 100)
        got = b""
        while len(got) < 100:
            got += await b.receive_some()
        assert got == b"x" * 100
        await a.aclose()
        assert await b.receive_some(10) == b""
        with pytest.raises(trio.BrokenResourceError):
            await b.send_all(b"late")


async def test_two_way_conformance() -> None:
    async with AsyncExitStack() as stack:

        async def maker() -> tuple[IBBStream, IBBStream]:
            a, b, _, _ = await stack.enter_async_context(ibb_pair(4096))
            return a, b

        async def clogged() -> tuple[IBBStream, IBBStream]:
            a, b, _, _ = await stack.enter_async_context(ibb_pair(4096, window=1, receive_buffer=1))
            for s in (a, b):  # clog both ways: check_two_way_stream flips the pair
                await s.send_all(b"1")  # acknowledged at once (nothing unread yet)
                await s.send_all(b"2")  # unacknowledged: unread data beyond the buffer
            await trio.testing.wait_all_tasks_blocked()
            return a, b

        await trio.testing.check_two_way_stream(maker, clogged)


async def test_window_bounds_blocks_in_flight() -> None:
    async with ibb_pair(1024, window=3, receive_buffer=1024) as (a, b, to_b, _):
        payload = bytes(range(256)) * 64  # 16 blocks

        async def send() -> None:
            await a.send_all(payload)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            await trio.testing.wait_all_tasks_blocked()
            # The reader has not read: 1 acked block + window of 3 unacked, sender blocked.
            assert to_b.in_flight == 3
            got = b""
            while len(got) < len(payload):
                got += await b.receive_some(5000)
        assert got == payload
        assert to_b.max_in_flight == 3


async def test_receive_buffer_backpressure() -> None:
    async with (
        ibb_pair(1000, window=8, receive_buffer=3000) as (a, b, _, _),
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(a.send_all, b"z" * 20_000)
        await trio.testing.wait_all_tasks_blocked()
        # Unread data is bounded by the buffer plus the sender's window.
        assert len(b._buffer) <= 3000 + 8 * 1000
        assert b._unacked_bytes == 8 * 1000  # a full window waits for the reader
        total = 0
        while total < 20_000:
            total += len(await b.receive_some(777))


async def test_seq_wrap_through_stream() -> None:
    seqs: list[int] = []

    def record(el: etree._Element) -> None:
        if el.tag == f"{{{ns.IBB}}}data":
            seqs.append(int(el.get("seq") or -1))

    async with ibb_pair(10, initial_seq=65530) as (a, b, to_b, _):
        to_b.on_send = record
        data = bytes(range(200))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.send_all, data)
            got = b""
            while len(got) < len(data):
                got += await b.receive_some()
        assert got == data
    assert seqs[:8] == [65530, 65531, 65532, 65533, 65534, 65535, 0, 1]
    assert len(seqs) == 20


async def test_peer_error_breaks_sender() -> None:
    async with ibb_pair(10) as (a, b, _to_b, _):
        # A hostile or confused peer: data for the stream arrives out of order.
        b._conn._recv_seq = 5
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(100):
                await a.send_all(b"0123456789")
        with pytest.raises(trio.BrokenResourceError):
            await b.receive_some(10)


async def test_flow_control_violation_is_cut_off() -> None:
    async with ibb_pair(10, window=8, receive_buffer=1, max_unacked=2) as (a, b, _, _):
        # Feed b directly, as a peer ignoring its window would.
        conn = IBBConnection(a.sid, 10)
        conn.state = conn.state.OPEN
        b.feed(conn.send_data(b"1"))
        b.feed(conn.send_data(b"2"))
        b.feed(conn.send_data(b"3"))
        with pytest.raises(IBBError) as info:
            b.feed(conn.send_data(b"4"))
        assert info.value.condition == "resource-constraint"
        a.abort()


async def test_initiate_refused_open_is_unwrapped() -> None:
    lonely = FakeIQPeer()
    with pytest.raises(FakeStanzaError):
        async with open_ibb_stream(lonely, "s") as stream:
            await stream.open()
            raise AssertionError("not reached")


async def test_body_exception_aborts_without_close() -> None:
    sent: list[str] = []
    to_b = FakeIQPeer(on_send=lambda el: sent.append(etree.QName(el).localname))
    to_a = FakeIQPeer()
    async with open_ibb_stream(to_a, "s", 10) as b:
        to_b.peer = b
        with pytest.raises(KeyError):
            async with open_ibb_stream(to_b, "s", 10) as a:
                to_a.peer = a
                await a.open()
                await a.send_all(b"abc")
                raise KeyError("boom")
        assert "close" not in sent
        b.abort()


async def test_responder_sends_after_open() -> None:
    to_b, to_a = FakeIQPeer(), FakeIQPeer()
    async with open_ibb_stream(to_a, "s", 10) as b:
        to_b.peer = b
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.send_all, b"from responder")
            await trio.testing.wait_all_tasks_blocked()
            assert to_a.max_in_flight == 0  # nothing sent before the <open>
            async with open_ibb_stream(to_b, "s", 10) as a:
                to_a.peer = a
                await a.open()
                with pytest.raises(IBBStateError):
                    await a.open()
                got = b""
                while len(got) < 14:
                    got += await a.receive_some()
                assert got == b"from responder"


@given(
    st.sampled_from(["open", "data", "close", "other"]),
    st.dictionaries(
        st.sampled_from(["sid", "seq", "block-size", "stanza"]),
        st.text(alphabet="0123456789s1-x ", max_size=8),
    ),
    st.text(alphabet="ABCabc0123+/=! \n", max_size=40),
)
def test_receive_fuzz_only_typed_errors(tag: str, attrs: dict[str, str], text: str) -> None:
    _, b = _opened_pair(8)
    el = etree.Element(f"{{{ns.IBB}}}{tag}", attrib=attrs)
    el.text = text
    try:
        event = b.receive(el)
    except IBBError as exc:
        assert exc.condition in {
            "bad-request",
            "item-not-found",
            "unexpected-request",
            "not-acceptable",
            "resource-constraint",
        }
    else:
        assert isinstance(event, (Opened, DataReceived, Closed))


class NeverAnswersClose(FakeIQPeer):
    """A peer that takes our ``<close>`` and never answers it."""

    async def send_iq(self, payload: etree._Element) -> etree._Element:
        if etree.QName(payload).localname == "close":
            await trio.sleep_forever()
        return await super().send_iq(payload)


class NeverAcks(FakeIQPeer):
    """A peer that takes our data blocks and never acknowledges them."""

    async def send_iq(self, payload: etree._Element) -> etree._Element:
        if etree.QName(payload).localname == "data":
            await trio.sleep_forever()
        return await super().send_iq(payload)


@pytest.mark.parametrize("peer", [NeverAnswersClose, NeverAcks])
async def test_close_is_bounded_when_the_peer_never_answers(peer: type[FakeIQPeer]) -> None:
    """Closing waits for the last blocks' and the ``<close>``'s answers at most
    ``close_timeout`` seconds (a peer that never answers used to hang the closer for ever)."""
    to_b, to_a = peer(), FakeIQPeer()
    async with open_ibb_stream(to_a, "s", 10) as b:
        to_b.peer = b
        start = trio.current_time()
        with trio.fail_after(10):
            async with open_ibb_stream(to_b, "s", 10, close_timeout=1) as a:
                to_a.peer = a
                await a.open()
                await a.send_all(b"abc")
        assert 1 <= trio.current_time() - start < 5
        b.abort()
