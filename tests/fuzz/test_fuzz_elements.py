"""Fuzzing the element readers: Jingle, file transfer, hashes, JET ``<security>``, stub envelope.

The trees are generated from the vocabulary each reader knows (right and wrong namespaces,
expected and unexpected children, attribute values from the enumerations and random text), so
that the fuzzer gets past the first checks. Property: a reader returns its value or raises a
:class:`~jet_trio.JetError` subclass, never another exception; what is accepted is usable
(messages go through the session registry, secrets have the cipher's sizes).
"""

from __future__ import annotations

import base64
import contextlib
import logging

from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from jet_trio import JID, JetError
from jet_trio._jet.cipher import Cipher, UnknownCipher
from jet_trio._jet.element import parse_security
from jet_trio._jet.envelope import DecryptedEnvelope
from jet_trio._jingle.machine import SessionRegistry
from jet_trio._jingle.message import (
    JingleAction,
    ReasonCondition,
    build_jingle,
    content_security,
    parse_error,
    parse_jingle,
)
from jet_trio._plugins.builtin_ciphers import AES128GCM, AES256GCM
from jet_trio._plugins.stub_envelope import StubEnvelope
from jet_trio._transfer.description import (
    parse_checksum,
    parse_description,
    parse_info,
    parse_received,
)
from jet_trio._transports.ibb import parse_transport as parse_ibb_transport
from jet_trio._transports.s5b import parse_transport as parse_s5b_transport
from jet_trio._xmpp import ns as ns

from . import fuzz

ALICE = JID("alice@example.org/a")
BOB = JID("bob@example.org/b")

_xml_char = st.characters(
    codec="utf-8", exclude_categories=["Cs", "Cc", "Co"], exclude_characters="\ufffe\uffff"
) | st.sampled_from("\t\n\r ")
_any_text = st.text(_xml_char, max_size=30)


VOCAB: dict[str, tuple[str, ...]] = {
    ns.JINGLE: (
        "jingle",
        "content",
        "reason",
        "text",
        "sid",
        "security",
        *(str(c) for c in ReasonCondition),
    ),
    ns.JINGLE_FT: (
        "description",
        "file",
        "name",
        "size",
        "date",
        "media-type",
        "mediaType",
        "desc",
        "range",
        "checksum",
        "received",
    ),
    ns.HASHES: ("hash", "hash-used"),
    ns.JET: ("security",),
    ns.JET_STUB: ("encrypted", "payload"),
    ns.JINGLE_IBB: ("transport",),
    ns.JINGLE_S5B: ("transport", "candidate", "candidate-used", "activated", "proxy-error"),
    "urn:example": ("x", "security", "description"),
    ns.STANZAS_ERR: ("bad-request", "item-not-found", "text"),
    ns.JINGLE_ERRORS: ("unknown-session", "tie-break"),
}
TAGS = [f"{{{n}}}{local}" for n, locals_ in VOCAB.items() for local in locals_]

TEXTS: tuple[str, ...] = (
    "a.txt",
    "12",
    "2015-07-26T21:46:00+01:00",
    "2015-07-26",
    "text/plain",
    "9" * 30,
    "-5",
    "\u0661\u0662",
    "2015-13-45T99:99:99Z",
    "../x",
    "a/b",
    "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",  # sha-256 of b""
    "2jmj7l5rSw0yVb/vlWAYkK/YBwk=",  # sha-1 of b""
    "not base64!",
    "AAAA",
    "====",
    "",
    " ",
    "0",
    "-1",
    "99999999999",
)
KNOWN: dict[str, tuple[str, ...]] = {
    "action": tuple(JingleAction),
    "sid": ("s1", "s2", "a" * 300),
    "initiator": (str(ALICE), "not a jid@", "@x"),
    "responder": (str(BOB),),
    "creator": ("initiator", "responder"),
    "name": ("f", "g", "../etc"),
    "senders": ("initiator", "responder", "both", "none"),
    "disposition": ("session",),
    "algo": ("sha-256", "sha-1", "blake2b-256", "md5"),
    "offset": ("0", "1", "18446744073709551616"),
    "length": ("0", "5", "9223372036854775807"),
    "cipher": (AES128GCM.urn, AES256GCM.urn + ":0", "urn:unknown"),
    "type": (ns.JET_STUB, "urn:example", "error", "cancel"),
    "block-size": ("4096", "65535", "65536", "+1", "\u0661"),
    "mode": ("tcp", "udp"),
    "dstaddr": ("a" * 40,),
    "cid": ("c1",),
    "host": ("127.0.0.1", "::1", "example.org"),
    "jid": ("proxy.example.org", "!"),
    "port": ("1080", "65536"),
    "priority": ("1", "4294967296"),
    "seq": ("0", "65535"),
}
ATTR_NAMES = sorted(KNOWN)


class _Builder:
    """Builds a tree from a list of integers (much cheaper for hypothesis than nested draws)."""

    def __init__(self, ints: list[int], strings: list[str]) -> None:
        self._ints = iter(ints)
        self._strings = strings or [""]
        self.budget = 40  # elements

    def _next(self, n: int) -> int:
        return next(self._ints, 0) % n

    def _value(self, known: tuple[str, ...]) -> str:
        pick = self._next(3)
        if pick == 0 and known:
            return known[self._next(len(known))]
        if pick == 1:
            return TEXTS[self._next(len(TEXTS))]
        return self._strings[self._next(len(self._strings))]

    def element(self, tag: str | None = None, depth: int = 0) -> etree._Element:
        self.budget -= 1
        el = etree.Element(tag or TAGS[self._next(len(TAGS))])
        for _ in range(self._next(4)):
            key = ATTR_NAMES[self._next(len(ATTR_NAMES))]
            el.set(key, self._value(KNOWN[key]))
        if self._next(2):
            el.text = self._value(())
        if depth < 4:
            for _ in range(self._next(4)):
                if self.budget <= 0:
                    break
                el.append(self.element(None, depth + 1))
        return el


_strings = st.lists(st.text(_xml_char, max_size=30), max_size=4)


def _tree(root: str | None = None) -> st.SearchStrategy[etree._Element]:
    return st.builds(
        lambda ints, strings: _Builder(ints, strings).element(root),
        st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=120),
        _strings,
    )


def _rooted(tag: str) -> st.SearchStrategy[etree._Element]:
    return _tree(tag)


def _only_typed(fn: object, *args: object) -> object:
    """Call ``fn``; JetError is fine (returns None); anything else fails the test."""
    assert callable(fn)
    try:
        return fn(*args)
    except JetError:
        return None


# -- Jingle -----------------------------------------------------------------------------------


@fuzz(ci=200)
@given(st.lists(_rooted(f"{{{ns.JINGLE}}}jingle"), min_size=1, max_size=4))
def test_parse_jingle_and_registry(trees: list[etree._Element]) -> None:
    registry = SessionRegistry(BOB)
    for tree in trees:
        msg = _only_typed(parse_jingle, tree, ALICE)
        if msg is None:
            continue
        for content in msg.contents:  # type: ignore[attr-defined]
            _only_typed(content_security, msg, content)
        incoming = registry.receive(msg, ALICE)  # type: ignore[arg-type]
        assert incoming.error is None or incoming.error.condition
        # What was accepted can be written back.
        build_jingle(msg)  # type: ignore[arg-type]


@fuzz(ci=100)
@given(_tree())
def test_parse_error(tree: etree._Element) -> None:
    iq = etree.Element("{jabber:client}iq", type="error")
    error = etree.SubElement(iq, "{jabber:client}error", type="cancel")
    error.append(tree)
    _only_typed(parse_error, iq)
    _only_typed(parse_error, error)


def _with_file(desc: etree._Element) -> etree._Element:
    """Steer towards exactly one <file/> so that the file's children are reached."""
    file = etree.Element(f"{{{ns.JINGLE_FT}}}file")
    for child in list(desc):
        file.append(child)  # moves it
    desc.append(file)
    return desc


# -- file transfer ----------------------------------------------------------------------------


@fuzz(ci=150)
@given(
    st.one_of(
        _rooted(f"{{{ns.JINGLE_FT}}}description"),
        _rooted(f"{{{ns.JINGLE_FT}}}description").map(_with_file),
    )
)
def test_parse_description(tree: etree._Element) -> None:
    desc = _only_typed(parse_description, tree)
    if desc is not None:
        assert desc.size is None or desc.size >= 0  # type: ignore[attr-defined]


@st.composite
def _checksums(draw: st.DrawFn) -> etree._Element:
    el = draw(_rooted(f"{{{ns.JINGLE_FT}}}checksum"))
    if draw(st.booleans()):
        file = etree.SubElement(el, f"{{{ns.JINGLE_FT}}}file")
        for child in draw(
            st.lists(
                _rooted(f"{{{ns.HASHES}}}hash")
                | _rooted(f"{{{ns.HASHES}}}hash-used")
                | _rooted(f"{{{ns.JINGLE_FT}}}range"),
                max_size=4,
            )
        ):
            file.append(child)
    return el


@fuzz(ci=150)
@given(_checksums() | _rooted(f"{{{ns.JINGLE_FT}}}received") | _tree())
def test_parse_checksum_and_info(tree: etree._Element) -> None:
    _only_typed(parse_checksum, tree)
    _only_typed(parse_received, tree)
    _only_typed(parse_info, tree)


# -- transports -------------------------------------------------------------------------------


@fuzz(ci=100)
@given(_rooted(f"{{{ns.JINGLE_S5B}}}transport") | _rooted(f"{{{ns.JINGLE_IBB}}}transport"))
def test_parse_transports(tree: etree._Element) -> None:
    _only_typed(parse_s5b_transport, tree)
    _only_typed(parse_ibb_transport, tree)


# -- JET <security> and the stub envelope -----------------------------------------------------


class _Ciphers:
    def cipher(self, urn: str) -> Cipher:
        for cipher in (AES128GCM, AES256GCM):
            if urn in cipher.names:
                return cipher
        raise UnknownCipher(urn)


_payloads = st.one_of(
    st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(["", " ", "AAAA", "A" * 2000, "====", "QUJD\nREVG", "a b c d"]),
    _any_text,
)


@st.composite
def _security(draw: st.DrawFn) -> etree._Element:
    el = draw(_rooted(f"{{{ns.JET}}}security"))
    if draw(st.booleans()):
        enc = etree.SubElement(el, f"{{{ns.JET_STUB}}}encrypted")
        for _ in range(draw(st.integers(0, 2))):
            etree.SubElement(enc, f"{{{ns.JET_STUB}}}payload").text = draw(_payloads)
    return el


async def _open_stub(envelope: etree._Element, cipher: Cipher) -> DecryptedEnvelope | None:
    try:
        return await StubEnvelope().decrypt(envelope, ALICE, cipher)
    except JetError:
        return None


@fuzz(ci=150)
@given(_security())
async def test_parse_security_and_stub_decrypt(tree: etree._Element) -> None:
    logging.getLogger("jet_trio.stub_envelope").disabled = True
    try:
        info = _only_typed(parse_security, tree, _Ciphers())
        envelopes = [info.envelope] if info is not None else []  # type: ignore[attr-defined]
        envelopes += list(tree)
        for envelope in envelopes:
            for cipher in (AES128GCM, AES256GCM):
                opened = await _open_stub(envelope, cipher)
                if opened is not None:
                    assert len(opened.secret.key) == cipher.key_size
                    assert len(opened.secret.iv) in cipher.accepted_iv_sizes
    finally:
        logging.getLogger("jet_trio.stub_envelope").disabled = False


@fuzz(ci=150)
@given(_payloads, st.sampled_from([AES128GCM, AES256GCM]))
async def test_stub_payload(text: str, cipher: Cipher) -> None:
    enc = etree.Element(f"{{{ns.JET_STUB}}}encrypted")
    etree.SubElement(enc, f"{{{ns.JET_STUB}}}payload").text = text
    with contextlib.ExitStack() as stack:
        logger = logging.getLogger("jet_trio.stub_envelope")
        logger.disabled = True
        stack.callback(setattr, logger, "disabled", False)
        await _open_stub(enc, cipher)


# -- JIDs (every ``from``/``to``/``initiator`` attribute goes through them) -------------------

_jid_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from("@/.\u3002\uff0e"),
    max_size=40,
) | st.builds(
    lambda local, domain, resource: f"{local}@{domain}/{resource}",
    st.text(max_size=8),
    st.sampled_from(["example.org", "EXAMPLE.org.", "xn--bcher-kva.example", "[::1]", "1.2.3.4"])
    | st.text(max_size=8),
    st.text(max_size=8),
)


@fuzz(ci=150)
@given(_jid_text)
def test_jid_parsing(text: str) -> None:
    jid = _only_typed(JID, text)
    if jid is not None:
        assert JID(str(jid)) == jid  # normalised form is stable
