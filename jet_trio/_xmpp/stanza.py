"""Small typed builders and readers for stanzas, stanza errors and stream errors (sans-IO)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Final, Literal

from lxml import etree

from .._errors import JetError, RemoteProtocolError
from . import ns as _ns
from .jid import JID, InvalidJID

__all__ = [
    "E",
    "IqType",
    "StanzaError",
    "StreamError",
    "child",
    "error_reply",
    "make_iq",
    "make_result",
    "new_id",
    "parse_stanza_error",
    "parse_stream_error",
    "read_error",
    "stanza_from",
    "stream_error_element",
]

IqType = Literal["get", "set", "result", "error"]
ErrorType = Literal["auth", "cancel", "continue", "modify", "wait"]

IQ: Final = f"{{{_ns.CLIENT}}}iq"
MESSAGE: Final = f"{{{_ns.CLIENT}}}message"
PRESENCE: Final = f"{{{_ns.CLIENT}}}presence"
_ERROR: Final = f"{{{_ns.CLIENT}}}error"
_TEXT: Final = f"{{{_ns.STANZAS_ERR}}}text"
_STREAM_TEXT: Final = f"{{{_ns.STREAMS_ERR}}}text"

# RFC 6120 8.3.3: the default error type of each defined condition.
_DEFAULT_TYPE: Final[dict[str, ErrorType]] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


def E(
    tag: str,
    attrib: Mapping[str, str | None] | None = None,
    *children: etree._Element,
    text: str | None = None,
) -> etree._Element:
    """Build an element from a Clark-notation tag; ``None`` attribute values are left out.

    The element's namespace becomes the default namespace, so ``E("{urn:xmpp:ping}ping")``
    serialises as ``<ping xmlns="urn:xmpp:ping"/>``.
    """
    ns = etree.QName(tag).namespace
    el = etree.Element(tag, nsmap={None: ns} if ns else None)  # type: ignore[dict-item]
    if attrib:
        for key, value in attrib.items():
            if value is not None:
                el.set(key, value)
    if text is not None:
        el.text = text
    for c in children:
        el.append(c)
    return el


def child(parent: etree._Element, tag: str) -> etree._Element | None:
    """The first child of ``parent`` with the given Clark-notation tag, or ``None``."""
    return parent.find(tag)


def new_id() -> str:
    """A fresh, unguessable stanza id."""
    return uuid.uuid4().hex


def make_iq(
    type_: IqType,
    payload: etree._Element | None = None,
    *,
    to: JID | str | None = None,
    from_: JID | str | None = None,
    id: str | None = None,
) -> etree._Element:
    """An ``<iq/>`` stanza; an id is generated unless given."""
    iq = E(
        IQ,
        {
            "type": type_,
            "id": id or new_id(),
            "to": None if to is None else str(to),
            "from": None if from_ is None else str(from_),
        },
    )
    if payload is not None:
        iq.append(payload)
    return iq


def _swap_addresses(stanza: etree._Element, reply: etree._Element) -> None:
    if (frm := stanza.get("from")) is not None:
        reply.set("to", frm)
    if (to := stanza.get("to")) is not None:
        reply.set("from", to)


def make_result(iq: etree._Element, payload: etree._Element | None = None) -> etree._Element:
    """The ``result`` answering ``iq``."""
    reply = make_iq("result", payload, id=iq.get("id", ""))
    _swap_addresses(iq, reply)
    return reply


def error_reply(
    stanza: etree._Element,
    condition: str,
    type_: ErrorType | str | None = None,
    text: str | None = None,
    app_condition: etree._Element | None = None,
) -> etree._Element:
    """The error stanza answering ``stanza`` (RFC 6120 8.3), addresses swapped, same id."""
    tag = stanza.tag if isinstance(stanza.tag, str) else IQ
    reply = E(tag, {"type": "error", "id": stanza.get("id")})
    _swap_addresses(stanza, reply)
    err = E(_ERROR, {"type": type_ or _DEFAULT_TYPE.get(condition, "cancel")})
    err.append(E(f"{{{_ns.STANZAS_ERR}}}{condition}"))
    if text:
        err.append(E(_TEXT, {f"{{{_ns.XML}}}lang": "en"}, text=text))
    if app_condition is not None:
        err.append(app_condition)
    reply.append(err)
    return reply


def stanza_from(stanza: etree._Element) -> JID | None:
    """The ``from`` address as a JID, ``None`` if absent; a malformed one raises."""
    raw = stanza.get("from")
    if raw is None:
        return None
    try:
        return JID(raw)
    except InvalidJID as exc:
        raise RemoteProtocolError(f"stanza with a malformed 'from': {exc}") from None


class StanzaError(JetError):
    """An error stanza received in answer to a request (RFC 6120 8.3).

    ``condition`` is the defined condition (``item-not-found``...), ``type`` the error type,
    ``text`` the optional human-readable text, ``app_condition`` the tag of an
    application-specific condition element if any, and ``element`` the whole ``<error/>``.
    """

    def __init__(
        self,
        condition: str,
        type_: str = "cancel",
        text: str | None = None,
        app_condition: str | None = None,
        element: etree._Element | None = None,
        sender: str | None = None,
    ) -> None:
        where = f" from {sender}" if sender else ""
        detail = f": {text}" if text else ""
        super().__init__(f"{condition} ({type_}){where}{detail}")
        self.condition = condition
        self.type = type_
        self.text = text
        self.app_condition = app_condition
        self.element = element
        self.sender = sender


def read_error(
    element: etree._Element, namespace: str
) -> tuple[str, str | None, list[etree._Element]]:
    """The defined condition (in ``namespace``), the text and the other children (application
    conditions) of an ``<error/>`` or ``<stream:error/>``."""
    condition, text, others = "undefined-condition", None, []
    for c in element:
        if not isinstance(c.tag, str):
            continue
        q = etree.QName(c)
        if q.namespace != namespace:
            others.append(c)
        elif q.localname == "text":
            text = c.text
        else:
            condition = q.localname
    return condition, text, others


def parse_stanza_error(stanza: etree._Element) -> StanzaError:
    """Read the ``<error/>`` of an error stanza into a :class:`StanzaError`."""
    err = stanza.find(_ERROR)
    sender = stanza.get("from")
    if err is None:
        return StanzaError(
            "undefined-condition", "cancel", "error stanza without <error/>", None, None, sender
        )
    condition, text, others = read_error(err, _ns.STANZAS_ERR)
    app = str(others[-1].tag) if others else None
    return StanzaError(condition, err.get("type", "cancel"), text, app, err, sender)


class StreamError(RemoteProtocolError):
    """The server ended the stream with ``<stream:error/>`` (RFC 6120 4.9)."""

    def __init__(self, condition: str, text: str | None = None) -> None:
        detail = f": {text}" if text else ""
        super().__init__(f"the server closed the stream with error {condition}{detail}")
        self.condition = condition
        self.text = text


def parse_stream_error(element: etree._Element) -> StreamError:
    """Read a ``<stream:error/>`` element."""
    condition, text, _ = read_error(element, _ns.STREAMS_ERR)
    return StreamError(condition, text)


def stream_error_element(condition: str, text: str | None = None) -> etree._Element:
    """A ``<stream:error/>`` element to send before closing the stream."""
    el = etree.Element(f"{{{_ns.STREAM}}}error", nsmap={"stream": _ns.STREAM})
    el.append(E(f"{{{_ns.STREAMS_ERR}}}{condition}"))
    if text:
        el.append(E(_STREAM_TEXT, text=text))
    return el
