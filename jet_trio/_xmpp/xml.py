"""A hardened, incremental, sans-IO XML stream parser for XMPP (RFC 6120 section 11).

Bytes go in with :meth:`XMLStreamParser.feed`; stream events come out. Nothing is ever expanded,
loaded or fetched: DTDs, comments and processing instructions are refused before the bytes reach
libxml2, entity resolution and network access are off, and stanza size and nesting depth are
bounded. A new parser is used for every stream restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, cast

from lxml import etree

from .._errors import XMLError
from . import ns as _ns

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_STANZA_BYTES",
    "Event",
    "StanzaReceived",
    "StreamClosed",
    "StreamOpened",
    "XMLStreamParser",
    "serialize",
    "stream_footer",
    "stream_header",
]

DEFAULT_MAX_STANZA_BYTES: Final = 1 << 20
DEFAULT_MAX_DEPTH: Final = 32

_STREAM_TAG: Final = f"{{{_ns.STREAM}}}stream"
_XML_LANG: Final = f"{{{_ns.XML}}}lang"
_CDATA_OPEN: Final = b"<![CDATA["
_CDATA_CLOSE: Final = b"]]>"


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened its stream.

    ``attrs`` holds ``to``, ``from``, ``id``, ``version`` and ``xml:lang`` as sent.
    """

    attrs: dict[str, str] = field(default_factory=dict)
    default_namespace: str | None = None


@dataclass(frozen=True, slots=True)
class StanzaReceived:
    """A complete top-level element (stanza or negotiation element), detached from the stream."""

    element: etree._Element


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The peer sent ``</stream:stream>``."""


Event = StreamOpened | StanzaReceived | StreamClosed


_REFERENCE = re.compile(rb"&(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});")
_MAX_REFERENCE = 12  # len("&#x10FFFF;") rounded up


class _MarkupGuard:
    """Refuses what RFC 6120 11.1 forbids, in the raw bytes, before libxml2 sees them.

    ``<!`` (DOCTYPE, DTD, comments) other than a CDATA section, ``<?`` other than the XML
    declaration at the very start, and ``&name;`` other than the five predefined entities and
    character references. (libxml2 silently stalls on an undefined entity instead of failing.)
    Works across chunk boundaries by keeping the undecided tail of the previous chunk.
    """

    __slots__ = ("_carry", "_in_cdata", "_seen_markup")

    def __init__(self) -> None:
        self._carry = b""
        self._in_cdata = False
        self._seen_markup = False

    def check(self, data: bytes | bytearray) -> None:
        # bytes.find is memchr-fast; a regex over every chunk costs more than libxml2 itself.
        buf = self._carry + data if self._carry else bytes(data)
        self._carry = b""
        n = len(buf)
        pos = 0
        bang = pi = -2  # next "<!" / "<?" at or after pos (-1: none), recomputed when passed
        while pos < n:
            if self._in_cdata:
                end = buf.find(_CDATA_CLOSE, pos)
                if end < 0:
                    self._carry = buf[max(pos, n - 2) :]
                    return
                self._in_cdata = False
                pos = end + 3
                continue
            if bang != -1 and bang < pos:
                bang = buf.find(b"<!", pos)
            if pi != -1 and pi < pos:
                pi = buf.find(b"<?", pos)
            found = [i for i in (bang, pi, buf.find(b"&", pos)) if i >= 0]
            if not found:
                if buf.endswith(b"<"):  # might become "<!" or "<?"
                    self._carry = b"<"
                    n -= 1
                self._seen_markup = self._seen_markup or b"<" in buf[pos:n]
                return
            at = min(found)
            self._seen_markup = self._seen_markup or b"<" in buf[pos:at]
            if buf[at] == 0x26:  # "&"
                ref = _REFERENCE.match(buf, at)
                if ref is not None:
                    pos = ref.end()
                    continue
                if n - at < _MAX_REFERENCE and b";" not in buf[at:]:
                    self._carry = buf[at:]  # may still become a valid reference
                    return
                raise XMLError("entity references are not allowed in XMPP", "restricted-xml")
            if buf[at + 1] == 0x21:  # "<!"
                head = buf[at : at + len(_CDATA_OPEN)]
                if head == _CDATA_OPEN:
                    self._in_cdata = True
                    self._seen_markup = True
                    pos = at + len(_CDATA_OPEN)
                    continue
                if _CDATA_OPEN.startswith(head):  # undecided: wait for more bytes
                    self._carry = buf[at:]
                    return
                if head.startswith(b"<!--"):
                    raise XMLError("XML comments are not allowed in XMPP", "restricted-xml")
                raise XMLError(
                    "DOCTYPE, DTD and entity declarations are not allowed in XMPP",
                    "restricted-xml",
                )
            # "<?": only the XML declaration, and only before any other markup
            if self._seen_markup or buf[:at].strip():
                raise XMLError("processing instructions are not allowed in XMPP", "restricted-xml")
            end = buf.find(b"?>", at)
            if end < 0:
                if n - at > 1024:  # never carry (and rescan) an endless XML declaration
                    raise XMLError("XML declaration too long", "policy-violation")
                self._carry = buf[at:]
                return
            if buf[at : at + 6] not in (b"<?xml ", b"<?xml\t", b"<?xml\n", b"<?xml\r"):
                raise XMLError("processing instructions are not allowed in XMPP", "restricted-xml")
            self._seen_markup = True
            pos = end + 2


class XMLStreamParser:
    """Incremental XMPP stream parser.

    >>> p = XMLStreamParser()
    >>> p.feed(b"<stream:stream xmlns='jabber:client' "
    ...        b"xmlns:stream='http://etherx.jabber.org/streams'><presence/>")[1]
    StanzaReceived(element=<Element {jabber:client}presence at ...>)

    :meth:`feed` raises :class:`~jet_trio.XMLError` carrying the stream error condition to send
    (``not-well-formed``, ``restricted-xml``, ``policy-violation``, ``invalid-namespace``); after an
    error, or after :class:`StreamClosed`, the parser accepts no more data.
    """

    def __init__(
        self,
        *,
        max_stanza_bytes: int = DEFAULT_MAX_STANZA_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.max_stanza_bytes = max_stanza_bytes
        self.max_depth = max_depth
        self._parser = etree.XMLPullParser(
            events=("start", "end", "comment", "pi"),
            resolve_entities=False,
            load_dtd=False,
            dtd_validation=False,
            no_network=True,
            huge_tree=False,
            remove_comments=False,
            remove_pis=False,
            collect_ids=False,
        )
        self._guard = _MarkupGuard()
        self._depth = 0
        self._root: etree._Element | None = None
        self._stanza_bytes = 0
        self._completed = False
        self._done = False

    @property
    def closed(self) -> bool:
        """True once the stream was closed or an error occurred."""
        return self._done

    def feed(self, data: bytes | bytearray) -> list[Event]:
        """Feed raw bytes; return the events they complete."""
        if not data:
            return []
        if self._done:
            raise XMLError("data received after the end of the XML stream", "not-well-formed")
        try:
            self._guard.check(data)
            self._parser.feed(data if isinstance(data, bytes) else bytes(data))
            events = self._collect()
        except XMLError:
            self._done = True
            raise
        except etree.XMLSyntaxError as exc:
            self._done = True
            raise XMLError(f"malformed XML: {exc.msg}", "not-well-formed") from None
        # Bytes since the last stanza (or the stream header) was completed, counted per chunk:
        # a chunk that completed one is charged in full to what follows (an overestimate bounded
        # by the chunk size). This also bounds an unfinished start tag or stream header.
        if self._completed:
            self._stanza_bytes = len(data) if self._depth > 1 else 0
        else:
            self._stanza_bytes += len(data)
        if self._stanza_bytes > self.max_stanza_bytes:
            self._done = True
            raise XMLError(f"stanza larger than {self.max_stanza_bytes} bytes", "policy-violation")
        return events

    def _collect(self) -> list[Event]:
        # The hot loop: one iteration per element start and end, so locals and no helpers.
        out: list[Event] = []
        depth = self._depth
        limit = self.max_depth
        self._completed = False
        try:
            for action, item in self._parser.read_events():
                if action == "start":
                    depth += 1
                    if depth > limit:
                        raise XMLError(f"elements nested deeper than {limit}", "policy-violation")
                    if depth == 1:
                        out.append(self._open(cast(etree._Element, item)))
                        self._completed = True
                elif action == "end":
                    depth -= 1
                    if depth == 1:
                        el = cast(etree._Element, item)
                        assert self._root is not None
                        self._root.remove(el)
                        el.tail = None
                        out.append(StanzaReceived(el))
                        self._completed = True
                    elif depth == 0:
                        self._done = True
                        out.append(StreamClosed())
                else:  # a comment or PI slipped past the guard (it cannot; belt and braces)
                    raise XMLError(f"XML {action} not allowed in XMPP", "restricted-xml")
        finally:
            self._depth = depth
        return out

    def _open(self, el: etree._Element) -> StreamOpened:
        if el.tag != _STREAM_TAG:
            raise XMLError(f"expected <stream:stream>, got <{el.tag}>", "invalid-namespace")
        docinfo = el.getroottree().docinfo
        if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
            raise XMLError("DOCTYPE is not allowed in XMPP", "restricted-xml")
        self._root = el
        attrs = {(("xml:lang") if k == _XML_LANG else str(k)): str(v) for k, v in el.attrib.items()}
        return StreamOpened(attrs, el.nsmap.get(None))


def serialize(element: etree._Element) -> bytes:
    """Serialise one stanza or element for the wire (UTF-8, no XML declaration)."""
    return etree.tostring(element, encoding="utf-8")


def stream_header(
    *,
    to: str | None = None,
    from_: str | None = None,
    id: str | None = None,
    lang: str = "en",
    version: str = "1.0",
    namespace: str = _ns.CLIENT,
) -> bytes:
    """The opening ``<stream:stream>`` tag, preceded by the XML declaration."""
    attrs = [("xmlns", namespace), ("xmlns:stream", _ns.STREAM), ("version", version)]
    attrs.append(("xml:lang", lang))
    for key, value in (("to", to), ("from", from_), ("id", id)):
        if value is not None:
            attrs.append((key, value))
    rendered = " ".join(f'{k}="{_escape_attr(v)}"' for k, v in attrs)
    return f"<?xml version='1.0'?><stream:stream {rendered}>".encode()


_ATTR_ESCAPES: Final = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\n": "&#10;",
        "\r": "&#13;",
        "\t": "&#9;",
    }
)


def _escape_attr(value: str) -> str:
    """``value`` for a double-quoted attribute (what ``xml.sax.saxutils.quoteattr`` does,
    without importing ``urllib.request`` and ``http.client`` with it)."""
    return value.translate(_ATTR_ESCAPES)


def stream_footer() -> bytes:
    """The closing ``</stream:stream>`` tag."""
    return b"</stream:stream>"
