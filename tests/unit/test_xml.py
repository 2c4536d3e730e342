"""The hardened stream parser: splitting, hostile input, limits."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from jet_trio import XMLError
from jet_trio._xmpp.xml import (
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    XMLStreamParser,
    serialize,
    stream_header,
)

HEADER = stream_header(to="example.org", id="abc")
BODY = (
    b"<message to='a@b' type='chat'><body>caf\xc3\xa9 &amp; &lt;tea&gt; &#x1F375;</body>"
    b"<x xmlns='urn:example'><![CDATA[<not> &markup; <!-- ]]></x></message>"
    b"\n <iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"
    b"<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v='/>"
    b"</presence></stream:stream>"
)
DOC = HEADER + BODY


def kinds(events: Sequence[object]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_whole_stream_at_once() -> None:
    events = XMLStreamParser().feed(DOC)
    assert kinds(events) == [
        "StreamOpened",
        "StanzaReceived",
        "StanzaReceived",
        "StanzaReceived",
        "StreamClosed",
    ]
    opened = events[0]
    assert isinstance(opened, StreamOpened)
    assert opened.attrs["id"] == "abc" and opened.attrs["xml:lang"] == "en"
    assert opened.default_namespace == "jabber:client"
    msg = events[1]
    assert isinstance(msg, StanzaReceived)
    assert msg.element.tag == "{jabber:client}message"
    assert msg.element.findtext("{jabber:client}body") == "café & <tea> \U0001f375"
    assert msg.element.findtext("{urn:example}x") == "<not> &markup; <!-- "
    assert msg.element.getparent() is None  # detached: the stream root does not grow


def test_split_at_every_byte_boundary() -> None:
    expected = [
        serialize(e.element) for e in XMLStreamParser().feed(DOC) if isinstance(e, StanzaReceived)
    ]
    for i in range(len(DOC) + 1):
        p = XMLStreamParser()
        events = p.feed(DOC[:i]) + p.feed(DOC[i:])
        got = [serialize(e.element) for e in events if isinstance(e, StanzaReceived)]
        assert got == expected, i
        assert isinstance(events[-1], StreamClosed)


@given(st.lists(st.integers(min_value=0, max_value=len(DOC)), max_size=12))
def test_split_at_random_boundaries(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [DOC[a:b] for a, b in zip([0, *points], [*points, len(DOC)], strict=True)]
    p = XMLStreamParser()
    events = [e for c in chunks for e in p.feed(c)]
    assert kinds(events).count("StanzaReceived") == 3


@pytest.mark.parametrize(
    ("payload", "condition"),
    [
        (b"<message><body>&xxe;</body></message>", "restricted-xml"),
        (b"<message a='&lol9;'/>", "restricted-xml"),
        (b"<!-- comment --><message/>", "restricted-xml"),
        (b"<?php evil() ?><message/>", "restricted-xml"),
        (b"<message><!DOCTYPE x></message>", "restricted-xml"),
        (b"<message><body></message>", "not-well-formed"),
        (b"<message a='1' a='2'/>", "not-well-formed"),
        (b"<message><body>\x00</body></message>", "not-well-formed"),
    ],
)
def test_hostile_or_malformed_stanzas(payload: bytes, condition: str) -> None:
    p = XMLStreamParser()
    p.feed(HEADER)
    with pytest.raises(XMLError) as info:
        for i in range(len(payload)):  # also byte by byte: the guard must work across chunks
            p.feed(payload[i : i + 1])
    assert info.value.condition == condition
    assert p.closed
    with pytest.raises(XMLError):
        p.feed(b"<message/>")


def test_billion_laughs_doctype_before_stream_is_refused_without_expansion() -> None:
    lol = (
        b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
        + b"".join(
            b"<!ENTITY lol%d '%s'>" % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10)
            for i in range(1, 10)
        )
        + b"]>"
    )
    with pytest.raises(XMLError) as info:
        XMLStreamParser().feed(lol + HEADER + b"<message>&lol9;</message>")
    assert info.value.condition == "restricted-xml"


def test_external_entity_file_is_not_read(tmp_path: object) -> None:
    doc = b"<!DOCTYPE x [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>" + HEADER
    with pytest.raises(XMLError, match="DOCTYPE"):
        XMLStreamParser().feed(doc)


def test_processing_instruction_after_declaration_refused() -> None:
    with pytest.raises(XMLError):
        XMLStreamParser().feed(b"<?xml version='1.0'?><?xml-stylesheet x?>" + HEADER[21:])


def test_wrong_root_element() -> None:
    with pytest.raises(XMLError) as info:
        XMLStreamParser().feed(b"<html xmlns='http://www.w3.org/1999/xhtml'>")
    assert info.value.condition == "invalid-namespace"


def test_oversized_stanza_policy_violation() -> None:
    p = XMLStreamParser(max_stanza_bytes=10_000)
    p.feed(HEADER)
    p.feed(b"<message><body>")
    with pytest.raises(XMLError) as info:
        for _ in range(20):
            p.feed(b"x" * 1000)
    assert info.value.condition == "policy-violation"


def test_many_small_stanzas_do_not_trip_the_size_limit() -> None:
    p = XMLStreamParser(max_stanza_bytes=1000)
    p.feed(HEADER)
    for _ in range(100):
        assert len(p.feed(b"<presence/>" * 50)) == 50


def test_deep_nesting_policy_violation() -> None:
    p = XMLStreamParser(max_depth=20)
    p.feed(HEADER)
    with pytest.raises(XMLError) as info:
        p.feed(b"<message>" + b"<a>" * 30)
    assert info.value.condition == "policy-violation"


def test_stream_header_escapes_attributes() -> None:
    raw = stream_header(to="a'b\"<c>")
    events = XMLStreamParser().feed(raw)
    assert isinstance(events[0], StreamOpened)
    assert events[0].attrs["to"] == "a'b\"<c>"


def test_serialize_round_trip() -> None:
    el = etree.fromstring(b"<iq xmlns='jabber:client' id='x'><q xmlns='urn:y'>t</q></iq>")
    p = XMLStreamParser()
    p.feed(HEADER)
    (ev,) = p.feed(serialize(el))
    assert isinstance(ev, StanzaReceived)
    assert ev.element.find("{urn:y}q") is not None


def test_stanza_size_limit_counts_each_stanza_not_the_stream() -> None:
    # Many stanzas of 930 bytes in 1000-byte chunks: chunk ends rarely fall between stanzas.
    p = XMLStreamParser(max_stanza_bytes=10_000)
    p.feed(HEADER)
    stanza = b"<message><body>" + b"x" * 900 + b"</body></message>"
    data = stanza * 500
    got = 0
    for i in range(0, len(data), 1000):
        got += len(p.feed(data[i : i + 1000]))
    assert got == 500


def test_ibb_sized_stanzas_within_the_default_limit() -> None:
    p = XMLStreamParser()
    p.feed(HEADER)
    block = b"<iq type='set' id='i'><data xmlns='http://jabber.org/protocol/ibb' seq='1' sid='s'>"
    block += b"QUJD" * 21_845 + b"</data></iq>"
    data = block * 40
    got = sum(len(p.feed(data[i : i + 65536])) for i in range(0, len(data), 65536))
    assert got == 40
