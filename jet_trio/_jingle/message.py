"""Jingle (XEP-0166) messages as frozen dataclasses, their XML form, and Jingle error replies.

Application descriptions, transports and security elements stay opaque lxml elements here; the
application and transport layers read them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final, TypeVar, cast

from lxml import etree

from .._errors import LocalProtocolError, RemoteProtocolError
from .._xmpp import ns as _ns
from .._xmpp.jid import JID, InvalidJID
from .._xmpp.stanza import read_error

__all__ = [
    "BAD_REQUEST",
    "OUT_OF_ORDER",
    "SECURITY_REQUIRED",
    "TIE_BREAK",
    "UNKNOWN_SESSION",
    "UNSUPPORTED_INFO",
    "Content",
    "ErrorReply",
    "JingleAction",
    "JingleLocalError",
    "JingleMessage",
    "JingleProtocolError",
    "Reason",
    "ReasonCondition",
    "Role",
    "Senders",
    "build_error",
    "build_jingle",
    "content_security",
    "find_jingle",
    "parse_error",
    "parse_jingle",
]

_J: Final = _ns.JINGLE
_JINGLE: Final = f"{{{_J}}}jingle"
_CONTENT: Final = f"{{{_J}}}content"
_REASON: Final = f"{{{_J}}}reason"
_TEXT: Final = f"{{{_J}}}text"
_SID: Final = f"{{{_J}}}sid"
_MAX_ID: Final = 1024
_E = TypeVar("_E", bound=StrEnum)


class Role(StrEnum):
    """A party of a Jingle session, as written in ``creator``."""

    INITIATOR = "initiator"
    RESPONDER = "responder"

    @property
    def other(self) -> Role:
        """The other party."""
        return Role.RESPONDER if self is Role.INITIATOR else Role.INITIATOR


class Senders(StrEnum):
    """Which parties send application data for a content."""

    BOTH = "both"
    INITIATOR = "initiator"
    RESPONDER = "responder"
    NONE = "none"


class JingleAction(StrEnum):
    """The XEP-0166 actions."""

    CONTENT_ACCEPT = "content-accept"
    CONTENT_ADD = "content-add"
    CONTENT_MODIFY = "content-modify"
    CONTENT_REJECT = "content-reject"
    CONTENT_REMOVE = "content-remove"
    DESCRIPTION_INFO = "description-info"
    SECURITY_INFO = "security-info"
    SESSION_ACCEPT = "session-accept"
    SESSION_INFO = "session-info"
    SESSION_INITIATE = "session-initiate"
    SESSION_TERMINATE = "session-terminate"
    TRANSPORT_ACCEPT = "transport-accept"
    TRANSPORT_INFO = "transport-info"
    TRANSPORT_REJECT = "transport-reject"
    TRANSPORT_REPLACE = "transport-replace"


class ReasonCondition(StrEnum):
    """The XEP-0166 ``<reason/>`` conditions."""

    ALTERNATIVE_SESSION = "alternative-session"
    BUSY = "busy"
    CANCEL = "cancel"
    CONNECTIVITY_ERROR = "connectivity-error"
    DECLINE = "decline"
    EXPIRED = "expired"
    FAILED_APPLICATION = "failed-application"
    FAILED_TRANSPORT = "failed-transport"
    GENERAL_ERROR = "general-error"
    GONE = "gone"
    INCOMPATIBLE_PARAMETERS = "incompatible-parameters"
    MEDIA_ERROR = "media-error"
    SECURITY_ERROR = "security-error"
    SUCCESS = "success"
    TIMEOUT = "timeout"
    UNSUPPORTED_APPLICATIONS = "unsupported-applications"
    UNSUPPORTED_TRANSPORTS = "unsupported-transports"


_CONDITIONS: Final = frozenset(c.value for c in ReasonCondition)


def _default_ns(ns: str) -> Mapping[str, str]:
    # lxml-stubs type nsmap keys as str, but None is how lxml declares a default namespace.
    return cast("Mapping[str, str]", {None: ns})


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """What to answer an IQ-set with: a stanza error plus the optional Jingle-specific condition.

    Turn it into the ``<error/>`` child of an ``type='error'`` iq with :func:`build_error`.
    """

    condition: str
    type: str
    jingle_condition: str | None = None
    text: str | None = None

    def with_text(self, text: str) -> ErrorReply:
        """The same error explained by ``text``."""
        return replace(self, text=text)


UNKNOWN_SESSION: Final = ErrorReply("item-not-found", "cancel", "unknown-session")
OUT_OF_ORDER: Final = ErrorReply("unexpected-request", "wait", "out-of-order")
TIE_BREAK: Final = ErrorReply("conflict", "cancel", "tie-break")
UNSUPPORTED_INFO: Final = ErrorReply("feature-not-implemented", "modify", "unsupported-info")
SECURITY_REQUIRED: Final = ErrorReply("not-acceptable", "cancel", "security-required")
BAD_REQUEST: Final = ErrorReply("bad-request", "cancel")


class JingleProtocolError(RemoteProtocolError):
    """A received Jingle message is malformed or not allowed; ``reply`` is what to answer."""

    def __init__(self, message: str, reply: ErrorReply = BAD_REQUEST) -> None:
        super().__init__(message)
        self.reply = reply.with_text(message)


class JingleLocalError(LocalProtocolError):
    """We tried to send a Jingle message that the protocol does not allow now."""


@dataclass(frozen=True, slots=True)
class Content:
    """A ``<content/>``: application ``description``, ``transport`` and ``security`` elements.

    ``senders`` is ``None`` when the attribute is absent (which means ``both``).
    """

    creator: Role
    name: str
    senders: Senders | None = None
    description: etree._Element | None = None
    transport: etree._Element | None = None
    security: etree._Element | None = None
    disposition: str | None = None

    @property
    def key(self) -> tuple[Role, str]:
        """``(creator, name)``, unique within a session."""
        return (self.creator, self.name)


@dataclass(frozen=True, slots=True)
class Reason:
    """A ``<reason/>``; ``alternative_sid`` goes with ``alternative-session``.

    ``detail`` is an optional application-specific element (e.g. XEP-0234 ``file-too-large``).
    """

    condition: ReasonCondition
    text: str | None = None
    alternative_sid: str | None = None
    detail: etree._Element | None = None


@dataclass(frozen=True, slots=True)
class JingleMessage:
    """One ``<jingle/>`` payload.

    ``initiator`` and ``responder`` are only meaningful for ``session-initiate`` and
    ``session-accept``, where :func:`parse_jingle` sets them to the iq sender. ``info`` is the
    first payload that is not a content or reason (session-info and the like). ``security``
    holds ``<security/>`` elements found directly under ``<jingle/>``, where Conversations
    2.13.0-2.13.3 put them.
    """

    action: JingleAction
    sid: str
    initiator: JID | None = None
    responder: JID | None = None
    contents: tuple[Content, ...] = ()
    reason: Reason | None = None
    info: etree._Element | None = None
    security: tuple[etree._Element, ...] = ()


def content_security(msg: JingleMessage, content: Content) -> etree._Element | None:
    """The ``<security/>`` that applies to ``content``.

    Its own child if it has one; otherwise a ``<security/>`` placed under ``<jingle/>``
    (Conversations 2.13.0-2.13.3) whose ``name`` is the content name, or the only one there
    if the message has a single content. Fails closed: raises :class:`JingleProtocolError`
    when more than one could apply, when an unnamed one under ``<jingle/>`` could belong to
    several contents, or when one names no content of the message (never read as "no
    encryption").
    """
    names = {c.name for c in msg.contents}
    strays = [el.get("name") for el in msg.security if el.get("name") not in (None, *names)]
    if strays:
        raise JingleProtocolError(f"a <security/> names no content of the message: {strays[0]!r}")
    named = [el for el in msg.security if el.get("name") == content.name]
    unnamed = [el for el in msg.security if el.get("name") is None]
    if unnamed and len(msg.contents) > 1:
        raise JingleProtocolError("a <security/> without a name, and several contents")
    found = ([content.security] if content.security is not None else []) + named + unnamed
    if len(found) > 1:
        raise JingleProtocolError(
            f"{len(found)} <security/> elements apply to content {content.name!r}: ambiguous"
        )
    return found[0] if found else None


def find_jingle(iq: etree._Element) -> etree._Element | None:
    """The ``<jingle/>`` child of an iq, or ``None``."""
    return next((child for child in iq if child.tag == _JINGLE), None)


def _identifier(value: str | None, what: str) -> str:
    if not value:
        raise JingleProtocolError(f"the {what} is missing or empty")
    if len(value) > _MAX_ID:
        raise JingleProtocolError(f"the {what} is longer than {_MAX_ID} characters")
    return value


def _enum(kind: type[_E], value: str | None, what: str) -> _E | None:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        raise JingleProtocolError(f"unknown {what} {value[:60]!r}") from None


def _localname(el: etree._Element) -> str | None:
    return etree.QName(el).localname if isinstance(el.tag, str) else None


def _parse_content(el: etree._Element) -> Content:
    # 'creator' is REQUIRED but the XEP also names "initiator" its default.
    creator = _enum(Role, el.get("creator"), "content creator") or Role.INITIATOR
    name = _identifier(el.get("name"), "content name")
    senders = _enum(Senders, el.get("senders"), "content senders")
    parts: dict[str, etree._Element] = {}
    for child in el:
        local = _localname(child)
        if local in ("description", "transport", "security"):
            if local in parts:
                raise JingleProtocolError(f"content {name!r} has more than one <{local}/>")
            parts[local] = child
    return Content(
        creator=creator,
        name=name,
        senders=senders,
        description=parts.get("description"),
        transport=parts.get("transport"),
        security=parts.get("security"),
        disposition=el.get("disposition"),
    )


def _parse_reason(el: etree._Element) -> Reason:
    condition: ReasonCondition | None = None
    text: str | None = None
    sid: str | None = None
    detail: etree._Element | None = None
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if child.tag == _TEXT:
            text = child.text or ""
        elif etree.QName(child).namespace == _J:
            local = etree.QName(child).localname
            if condition is None and local in _CONDITIONS:
                condition = ReasonCondition(local)
                found = child.find(_SID)
                if found is not None:
                    sid = (found.text or "").strip() or None
        elif detail is None:
            detail = child
    # A terminate must not be refused over its reason: treat an unknown one as general-error.
    return Reason(condition or ReasonCondition.GENERAL_ERROR, text, sid, detail)


def _parse_jid(value: str, what: str) -> JID:
    try:
        return JID(value)
    except InvalidJID as exc:
        raise JingleProtocolError(f"invalid {what}: {exc}") from None


def parse_jingle(element: etree._Element, iq_from: JID) -> JingleMessage:
    """Read a ``<jingle/>`` received in an iq from ``iq_from``.

    Raises :class:`JingleProtocolError` (its ``reply`` is ``bad-request``) if malformed. For
    ``session-initiate`` the initiator is ``iq_from``: XEP-0166 says to ignore an ``initiator``
    attribute that differs, and Conversations may omit it; likewise for the responder of
    ``session-accept``.
    """
    if element.tag != _JINGLE:
        raise JingleProtocolError(f"expected a <jingle/> element, got {element.tag!r}")
    action = _enum(JingleAction, element.get("action"), "Jingle action")
    if action is None:
        raise JingleProtocolError("the Jingle action is missing")
    sid = _identifier(element.get("sid"), "session id")
    if action is JingleAction.SESSION_INITIATE and element.get("initiator") is not None:
        _parse_jid(element.get("initiator", ""), "initiator")
    contents: list[Content] = []
    reason: Reason | None = None
    info: etree._Element | None = None
    security: list[etree._Element] = []
    for child in element:
        if not isinstance(child.tag, str):
            continue
        if child.tag == _CONTENT:
            contents.append(_parse_content(child))
        elif child.tag == _REASON:
            if reason is not None:
                raise JingleProtocolError("more than one <reason/>")
            reason = _parse_reason(child)
        elif etree.QName(child).localname == "security" and etree.QName(child).namespace != _J:
            security.append(child)
        elif info is None:
            info = child
    keys = [c.key for c in contents]
    if len(set(keys)) != len(keys):
        raise JingleProtocolError("two contents with the same creator and name")
    return JingleMessage(
        action=action,
        sid=sid,
        initiator=iq_from if action is JingleAction.SESSION_INITIATE else None,
        responder=iq_from if action is JingleAction.SESSION_ACCEPT else None,
        contents=tuple(contents),
        reason=reason,
        info=info,
        security=tuple(security),
    )


def _build_content(content: Content) -> etree._Element:
    el = etree.Element(_CONTENT, creator=content.creator.value, name=content.name)
    if content.senders is not None:
        el.set("senders", content.senders.value)
    if content.disposition is not None:
        el.set("disposition", content.disposition)
    for part in (content.description, content.transport, content.security):
        if part is not None:
            el.append(copy.deepcopy(part))
    return el


def _build_reason(reason: Reason) -> etree._Element:
    el = etree.Element(_REASON)
    cond = etree.SubElement(el, f"{{{_J}}}{reason.condition.value}")
    if reason.alternative_sid is not None:
        etree.SubElement(cond, _SID).text = reason.alternative_sid
    if reason.text is not None:
        etree.SubElement(el, _TEXT).text = reason.text
    if reason.detail is not None:
        el.append(copy.deepcopy(reason.detail))
    return el


def build_jingle(msg: JingleMessage) -> etree._Element:
    """The ``<jingle/>`` element for ``msg``; the caller wraps it in an iq of type ``set``."""
    el = etree.Element(_JINGLE, nsmap=_default_ns(_J), action=msg.action.value, sid=msg.sid)
    if msg.initiator is not None:
        el.set("initiator", str(msg.initiator))
    if msg.responder is not None:
        el.set("responder", str(msg.responder))
    for content in msg.contents:
        el.append(_build_content(content))
    if msg.reason is not None:
        el.append(_build_reason(msg.reason))
    for extra in (msg.info, *msg.security):
        if extra is not None:
            el.append(copy.deepcopy(extra))
    return el


def build_error(reply: ErrorReply) -> etree._Element:
    """The ``<error/>`` child (``jabber:client``) of the iq answering with ``reply``."""
    el = etree.Element(f"{{{_ns.CLIENT}}}error", type=reply.type, nsmap=_default_ns(_ns.CLIENT))
    stanzas = _default_ns(_ns.STANZAS_ERR)
    etree.SubElement(el, f"{{{_ns.STANZAS_ERR}}}{reply.condition}", nsmap=stanzas)
    if reply.text:
        etree.SubElement(el, f"{{{_ns.STANZAS_ERR}}}text", nsmap=stanzas).text = reply.text
    if reply.jingle_condition is not None:
        tag = f"{{{_ns.JINGLE_ERRORS}}}{reply.jingle_condition}"
        etree.SubElement(el, tag, nsmap=_default_ns(_ns.JINGLE_ERRORS))
    return el


def parse_error(element: etree._Element) -> ErrorReply:
    """Read the ``<error/>`` of an iq error answering one of our Jingle requests."""
    condition, text, others = read_error(element, _ns.STANZAS_ERR)
    jingle = [
        etree.QName(c).localname for c in others if etree.QName(c).namespace == _ns.JINGLE_ERRORS
    ]
    return ErrorReply(
        condition, element.get("type", "cancel"), jingle[-1] if jingle else None, text
    )
