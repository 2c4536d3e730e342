"""Fuzzing in-band bytestreams (``jet_trio._transports.ibb``): sequences of generated iq payloads.

``<open>``/``<data>``/``<close>`` payloads with random sids, seq values (mostly the expected one,
so that long runs are reached), block sizes, base64 of random sizes and base64 garbage.
Property: :meth:`IBBConnection.receive` returns an event or raises
:class:`~jet_trio._transports.ibb.IBBError`
with one of the XEP-0047 conditions, never another exception;
the data delivered is exactly the data of the accepted blocks, in order, each within the block
size; after a protocol violation the bytestream stays closed. The trio shell
(:meth:`IBBStream.feed` + ``receive_some``) is driven with the same payloads.
"""

from __future__ import annotations

import base64

import trio
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from jet_trio._transports.ibb import (
    Closed,
    DataReceived,
    IBBConnection,
    IBBError,
    Opened,
    State,
    open_ibb_stream,
)
from jet_trio._xmpp import ns as ns

from . import fuzz

SID = "ibb-sid"
CONDITIONS = {
    "bad-request",
    "item-not-found",
    "unexpected-request",
    "not-acceptable",
    "resource-constraint",
}

_xml_char = st.characters(
    codec="utf-8", exclude_categories=["Cs", "Cc"], exclude_characters="\ufffe\uffff"
) | st.sampled_from("\t\n\r ")
_b64_garbage = st.sampled_from(
    ["", "=", "A", "AB", "ABC", "AB==", "A===", "AAAA====", "QUJD\n", "QU JD", "####", "\u00e9AAA"]
)


@st.composite
def _payload(draw: st.DrawFn) -> tuple[str, dict[str, str], str | None, bool]:
    """(tag, attributes, text, use the expected seq) for one payload."""
    tag = draw(st.sampled_from(["data"] * 6 + ["open", "close", "other"]))
    attrs: dict[str, str] = {}
    if draw(st.integers(0, 9)):
        attrs["sid"] = SID
    elif draw(st.booleans()):
        attrs["sid"] = draw(st.sampled_from(["", "other", SID + " "]))
    if tag == "open":
        attrs["block-size"] = draw(
            st.sampled_from(["4096", "16", "1", "65535"])
            | st.sampled_from(["0", "65536", "-1", "+4", " 4", "\u0664", "1" * 7])
        )
        if draw(st.integers(0, 4)) == 0:
            attrs["stanza"] = draw(st.sampled_from(["iq", "message", ""]))
    expected_seq = tag == "data" and draw(st.integers(0, 5)) > 0
    if tag == "data" and not expected_seq and draw(st.integers(0, 5)):
        attrs["seq"] = draw(
            st.integers(0, 70000).map(str)
            | st.sampled_from(["", "-1", "00000", "000001", "1.0", "\u0661", "0x1", " 1"])
        )
    text: str | None = None
    if tag == "data":
        if draw(st.integers(0, 3)):
            text = base64.b64encode(draw(st.binary(max_size=80))).decode()
        else:
            text = draw(_b64_garbage | st.text(_xml_char, max_size=20))
    return tag, attrs, text, expected_seq


def _element(tag: str, attrs: dict[str, str], text: str | None, seq: int) -> etree._Element:
    el = etree.Element(f"{{{ns.IBB}}}{tag}" if tag != "other" else "{urn:example}data")
    for key, value in attrs.items():
        el.set(key, value)
    if tag == "data" and "seq" not in attrs and seq >= 0:
        el.set("seq", str(seq))
    el.text = text
    return el


_payloads = st.lists(_payload(), max_size=30)
_block_sizes = st.sampled_from([1, 3, 4, 16, 60, 4096, 65535])


@fuzz(ci=150)
@given(_block_sizes, st.booleans(), st.integers(0, 65535), _payloads)
def test_receive_sequences(
    block_size: int,
    we_open: bool,
    initial_seq: int,
    payloads: list[tuple[str, dict[str, str], str | None, bool]],
) -> None:
    conn = IBBConnection(SID, block_size, initial_seq=initial_seq)
    if we_open:
        conn.send_open()
    expect_seq = initial_seq
    for tag, attrs, text, use_expected in payloads:
        was = conn.state
        el = _element(tag, attrs, text, expect_seq if use_expected else -1)
        try:
            event = conn.receive(el)
        except IBBError as exc:
            assert exc.condition in CONDITIONS, exc.condition
            assert exc.error_type in ("cancel", "modify", "wait")
            if was is State.CLOSED:
                assert exc.condition == "item-not-found"
            continue
        assert was is not State.CLOSED
        assert attrs.get("sid") == SID
        if isinstance(event, Opened):
            assert was is State.IDLE and 0 < event.block_size <= block_size
            assert conn.state is State.OPEN
        elif isinstance(event, DataReceived):
            assert was is State.OPEN and event.seq == expect_seq
            assert len(event.data) <= conn.block_size
            expect_seq = (expect_seq + 1) % 65536
        else:
            assert isinstance(event, Closed) and conn.state is State.CLOSED


class _NoSend:
    """An IQSender that is never used (the fuzzed side only receives)."""

    async def send_iq(self, payload: etree._Element) -> etree._Element:
        raise AssertionError("nothing is sent in this test")


@fuzz(ci=60)
@given(
    _block_sizes,
    _payloads,
    st.lists(st.one_of(st.none(), st.integers(1, 100)), max_size=30),
)
async def test_stream_feed_and_read(
    block_size: int,
    payloads: list[tuple[str, dict[str, str], str | None, bool]],
    reads: list[int | None],
) -> None:
    expected = bytearray()
    got = bytearray()
    seq = 0
    with trio.fail_after(5):
        async with open_ibb_stream(
            _NoSend(), SID, block_size, receive_buffer=64, max_unacked=8
        ) as stream:
            peer_closed = False
            for (tag, attrs, text, use_expected), max_bytes in zip(
                payloads, [*reads, *[None] * len(payloads)], strict=False
            ):
                el = _element(tag, attrs, text, seq if use_expected else -1)
                try:
                    stream.feed(el)
                except IBBError as exc:
                    assert exc.condition in CONDITIONS
                else:
                    if tag == "data":
                        expected += base64.b64decode(text or "")
                        seq = (seq + 1) % 65536
                    elif tag == "close":
                        peer_closed = True
                # Read only when it cannot block.
                if stream._buffer or peer_closed or stream._broken is not None:
                    try:
                        got += await stream.receive_some(max_bytes)
                    except trio.BrokenResourceError:
                        assert stream._broken is not None
            while stream._buffer:
                got += await stream.receive_some()
            if stream._broken is None:
                assert got == expected
            else:
                assert bytes(got) == bytes(expected[: len(got)])
            stream.abort()
