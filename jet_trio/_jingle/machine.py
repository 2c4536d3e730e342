"""Sans-IO Jingle (XEP-0166) sessions: one state machine per session and a registry of sessions.

The client layer parses each incoming ``<jingle/>`` with :func:`parse_jingle`, hands the message to
:meth:`SessionRegistry.receive` and answers the iq with an empty result or with
:func:`build_error` of the returned :class:`ErrorReply`. Outgoing messages are produced by the
:class:`JingleSession` methods, which validate them against the state first; the client sends
:func:`build_jingle` of the result and reports an error answer with
:meth:`JingleSession.receive_error`. Nothing here does I/O or keeps time: timeouts belong to the
caller.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from types import MappingProxyType
from typing import Final

from lxml import etree

from .._xmpp import ns as _ns
from .._xmpp.jid import JID
from .message import (
    BAD_REQUEST,
    OUT_OF_ORDER,
    SECURITY_REQUIRED,
    TIE_BREAK,
    UNKNOWN_SESSION,
    UNSUPPORTED_INFO,
    Content,
    ErrorReply,
    JingleAction,
    JingleLocalError,
    JingleMessage,
    JingleProtocolError,
    Reason,
    ReasonCondition,
    Role,
    Senders,
    build_error,
    build_jingle,
    content_security,
    find_jingle,
    parse_error,
    parse_jingle,
)

__all__ = [
    "BAD_REQUEST",
    "OUT_OF_ORDER",
    "SECURITY_REQUIRED",
    "TIE_BREAK",
    "TRANSITIONS",
    "UNKNOWN_SESSION",
    "UNSUPPORTED_INFO",
    "Content",
    "ContentKey",
    "ErrorReply",
    "Incoming",
    "JingleAction",
    "JingleLocalError",
    "JingleMessage",
    "JingleProtocolError",
    "JingleSession",
    "Reason",
    "ReasonCondition",
    "Role",
    "Senders",
    "SessionRegistry",
    "SessionState",
    "build_error",
    "build_jingle",
    "content_security",
    "find_jingle",
    "new_sid",
    "parse_error",
    "parse_jingle",
]

A = JingleAction
ContentKey = tuple[Role, str]
"""How contents are identified in a session: ``(creator, name)``."""


class SessionState(Enum):
    """The XEP-0166 session states, plus NEW before any ``session-initiate``."""

    NEW = "new"
    PENDING = "pending"
    ACTIVE = "active"
    ENDED = "ended"


NEW, PENDING, ACTIVE, ENDED = SessionState

_BOTH: Final = (Role.INITIATOR, Role.RESPONDER)
_LIVE: Final = (PENDING, ACTIVE)
_LIFECYCLE: Final = frozenset({A.SESSION_INITIATE, A.SESSION_ACCEPT, A.SESSION_TERMINATE})

# (party sending, state, action) -> next state. XEP-0166 §6.1: every other action is allowed in
# PENDING and ACTIVE and keeps the state; per-content rules are checked in JingleSession._check.
TRANSITIONS: Final[Mapping[tuple[Role, SessionState, JingleAction], SessionState]] = (
    MappingProxyType(
        {
            (Role.INITIATOR, NEW, A.SESSION_INITIATE): PENDING,
            (Role.RESPONDER, PENDING, A.SESSION_ACCEPT): ACTIVE,
            **{(r, s, A.SESSION_TERMINATE): ENDED for r in _BOTH for s in _LIVE},
            **{(r, s, a): s for r in _BOTH for s in _LIVE for a in A if a not in _LIFECYCLE},
        }
    )
)

# Actions whose every content must carry these elements.
_NEEDS: Final[Mapping[JingleAction, tuple[str, ...]]] = MappingProxyType(
    {
        A.SESSION_INITIATE: ("description", "transport"),
        A.SESSION_ACCEPT: ("description", "transport"),
        A.CONTENT_ADD: ("description", "transport"),
        A.TRANSPORT_INFO: ("transport",),
        A.TRANSPORT_REPLACE: ("transport",),
    }
)
_NEEDS_CONTENT: Final = frozenset(
    {
        A.SESSION_INITIATE,
        A.SESSION_ACCEPT,
        A.CONTENT_ACCEPT,
        A.CONTENT_ADD,
        A.CONTENT_MODIFY,
        A.CONTENT_REJECT,
        A.CONTENT_REMOVE,
        A.TRANSPORT_ACCEPT,
        A.TRANSPORT_INFO,
        A.TRANSPORT_REJECT,
        A.TRANSPORT_REPLACE,
    }
)


def new_sid() -> str:
    """A fresh random session id (an XML Nmtoken, RFC 4086 randomness)."""
    return secrets.token_hex(16)


class _Refusal(Exception):
    """Internal: a message is not acceptable; ``reply`` says why."""

    def __init__(self, reply: ErrorReply, text: str) -> None:
        super().__init__(text)
        self.reply = reply.with_text(text)


class JingleSession:
    """The state of one Jingle session seen from one party (``role``).

    :meth:`receive` checks and applies a message from the peer and returns the answer to send
    (``None`` for an empty result). :meth:`send` (and the helpers named after the actions)
    checks and applies a message of ours, raising :class:`JingleLocalError` if the protocol
    does not allow it now, and returns the message to send.
    """

    def __init__(self, role: Role, sid: str, own_jid: JID, peer: JID) -> None:
        if not sid:
            raise JingleLocalError("a Jingle session needs a session id")
        self.role: Final = role
        self.sid: Final = sid
        self.own_jid: Final = own_jid
        self.peer: Final = peer
        self._state = NEW
        self._contents: dict[ContentKey, Content] = {}
        self._pending_adds: dict[ContentKey, tuple[Role, Content]] = {}
        self._pending_replaces: dict[ContentKey, tuple[Role, Content]] = {}
        self.reason: Reason | None = None
        """The reason of the ``session-terminate`` that ended the session, if any."""

    def __repr__(self) -> str:
        return f"<JingleSession {self.sid!r} {self.role.value} with {self.peer} {self._state.name}>"

    @property
    def state(self) -> SessionState:
        """The current state."""
        return self._state

    @property
    def initiator(self) -> JID:
        """The initiator's full JID."""
        return self.own_jid if self.role is Role.INITIATOR else self.peer

    @property
    def responder(self) -> JID:
        """The responder's full JID."""
        return self.peer if self.role is Role.INITIATOR else self.own_jid

    @property
    def contents(self) -> Mapping[ContentKey, Content]:
        """The contents of the session, by ``(creator, name)``: the latest definition seen."""
        return MappingProxyType(self._contents)

    @property
    def pending_adds(self) -> Mapping[ContentKey, Role]:
        """Contents added by a ``content-add`` awaiting accept or reject, and who added them."""
        return MappingProxyType({k: who for k, (who, _) in self._pending_adds.items()})

    @property
    def pending_replaces(self) -> Mapping[ContentKey, Role]:
        """Contents with a ``transport-replace`` awaiting accept or reject, and who sent it."""
        return MappingProxyType({k: who for k, (who, _) in self._pending_replaces.items()})

    def proposed_transport(self, key: ContentKey) -> Content | None:
        """The content as proposed by the pending ``transport-replace`` on ``key``, if any."""
        pending = self._pending_replaces.get(key)
        return pending[1] if pending else None

    # -- incoming -------------------------------------------------------------------------------

    def receive(self, msg: JingleMessage) -> ErrorReply | None:
        """Process a message from the peer; return the error to answer, or ``None`` to ack."""
        sender = self.role.other
        try:
            if msg.sid != self.sid:
                raise _Refusal(UNKNOWN_SESSION, f"no session {msg.sid!r} here")
            self._check(sender, msg)
        except _Refusal as refusal:
            return refusal.reply
        self._apply(sender, msg)
        return None

    def receive_error(self, sent: JingleMessage, error: ErrorReply) -> None:
        """The peer answered ``sent`` (one of ours) with ``error``: undo what it proposed.

        A refused ``session-initiate`` or ``session-accept`` ends the session; a refused
        ``transport-replace`` or ``content-add`` is forgotten. Other refusals change nothing:
        the caller decides whether to terminate.
        """
        if sent.sid != self.sid:
            raise JingleLocalError(f"{sent.sid!r} is not the id of this session")
        if sent.action in (A.SESSION_INITIATE, A.SESSION_ACCEPT):
            self._state = ENDED
        elif sent.action is A.TRANSPORT_REPLACE:
            for c in sent.contents:
                if self._pending_replaces.get(c.key, (None,))[0] is self.role:
                    del self._pending_replaces[c.key]
        elif sent.action is A.CONTENT_ADD:
            for c in sent.contents:
                if self._pending_adds.get(c.key, (None,))[0] is self.role:
                    del self._pending_adds[c.key]

    # -- outgoing -------------------------------------------------------------------------------

    def send(self, msg: JingleMessage) -> JingleMessage:
        """Check and apply a message of ours; return it with the session's ids filled in."""
        if msg.sid != self.sid:
            raise JingleLocalError(f"{msg.sid!r} is not the id of this session")
        if msg.action is A.SESSION_INITIATE:
            msg = replace(msg, initiator=self.own_jid, responder=None)
        elif msg.action is A.SESSION_ACCEPT:
            msg = replace(msg, initiator=None, responder=self.own_jid)
        else:
            msg = replace(msg, initiator=None, responder=None)
        try:
            self._check(self.role, msg)
        except _Refusal as refusal:
            raise JingleLocalError(
                f"cannot send {msg.action.value} in state {self._state.name}: {refusal}"
            ) from None
        self._apply(self.role, msg)
        return msg

    def _message(
        self,
        action: JingleAction,
        contents: Iterable[Content] = (),
        reason: Reason | None = None,
        info: etree._Element | None = None,
    ) -> JingleMessage:
        return self.send(JingleMessage(action, self.sid, None, None, tuple(contents), reason, info))

    def initiate(self, contents: Iterable[Content]) -> JingleMessage:
        """``session-initiate`` offering ``contents`` (initiator only)."""
        return self._message(A.SESSION_INITIATE, contents=contents)

    def accept(self, contents: Iterable[Content]) -> JingleMessage:
        """``session-accept`` of ``contents`` (responder only)."""
        return self._message(A.SESSION_ACCEPT, contents=contents)

    def terminate(
        self, condition: ReasonCondition = ReasonCondition.SUCCESS, text: str | None = None
    ) -> JingleMessage:
        """``session-terminate``; the session is ENDED at once (XEP-0166 §6.7)."""
        return self._message(A.SESSION_TERMINATE, reason=Reason(condition, text))

    def terminate_with(self, reason: Reason) -> JingleMessage:
        """``session-terminate`` with a full :class:`Reason` (alternative session, detail...)."""
        return self._message(A.SESSION_TERMINATE, reason=reason)

    def info(self, payload: etree._Element | None = None) -> JingleMessage:
        """``session-info`` carrying ``payload`` (an lxml element), or a ping without one."""
        return self._message(A.SESSION_INFO, info=payload)

    def transport_info(self, contents: Iterable[Content]) -> JingleMessage:
        """``transport-info`` (candidates, candidate-used, activated...)."""
        return self._message(A.TRANSPORT_INFO, contents=contents)

    def transport_replace(self, contents: Iterable[Content]) -> JingleMessage:
        """``transport-replace`` proposing new transports for existing contents."""
        return self._message(A.TRANSPORT_REPLACE, contents=contents)

    def transport_accept(self, contents: Iterable[Content]) -> JingleMessage:
        """``transport-accept`` of the peer's pending ``transport-replace``."""
        return self._message(A.TRANSPORT_ACCEPT, contents=contents)

    def transport_reject(self, contents: Iterable[Content]) -> JingleMessage:
        """``transport-reject`` of the peer's pending ``transport-replace``."""
        return self._message(A.TRANSPORT_REJECT, contents=contents)

    def content_add(self, contents: Iterable[Content]) -> JingleMessage:
        """``content-add`` of new contents created by us."""
        return self._message(A.CONTENT_ADD, contents=contents)

    def content_accept(self, contents: Iterable[Content]) -> JingleMessage:
        """``content-accept`` of contents the peer added."""
        return self._message(A.CONTENT_ACCEPT, contents=contents)

    def content_reject(
        self, contents: Iterable[Content], reason: Reason | None = None
    ) -> JingleMessage:
        """``content-reject`` of contents the peer added."""
        return self._message(A.CONTENT_REJECT, contents=contents, reason=reason)

    def content_remove(
        self, contents: Iterable[Content], reason: Reason | None = None
    ) -> JingleMessage:
        """``content-remove``."""
        return self._message(A.CONTENT_REMOVE, contents=contents, reason=reason)

    def content_modify(self, contents: Iterable[Content]) -> JingleMessage:
        """``content-modify`` changing the ``senders`` of existing contents."""
        return self._message(A.CONTENT_MODIFY, contents=contents)

    def description_info(
        self, contents: Iterable[Content] = (), info: etree._Element | None = None
    ) -> JingleMessage:
        """``description-info``."""
        return self._message(A.DESCRIPTION_INFO, contents=contents, info=info)

    def security_info(
        self, contents: Iterable[Content] = (), info: etree._Element | None = None
    ) -> JingleMessage:
        """``security-info``."""
        return self._message(A.SECURITY_INFO, contents=contents, info=info)

    # -- the machine ----------------------------------------------------------------------------

    def _check(self, sender: Role, msg: JingleMessage) -> None:
        action = msg.action
        if (sender, self._state, action) not in TRANSITIONS:
            if self._state is ENDED or (self._state is NEW and sender is not self.role):
                raise _Refusal(UNKNOWN_SESSION, f"session {self.sid!r} is not live")
            raise _Refusal(
                OUT_OF_ORDER, f"{action.value} from the {sender.value} in state {self._state.name}"
            )
        if action in (A.SESSION_TERMINATE, A.SESSION_INFO):
            return
        if action in _NEEDS_CONTENT and not msg.contents:
            raise _Refusal(BAD_REQUEST, f"{action.value} without any content")
        for content in msg.contents:
            for part in _NEEDS.get(action, ()):
                if getattr(content, part) is None:
                    raise _Refusal(BAD_REQUEST, f"content {content.name!r} has no <{part}/>")
            self._check_content(sender, action, content)

    def _check_content(self, sender: Role, action: JingleAction, content: Content) -> None:
        key = content.key
        name = repr(content.name)
        known = key in self._contents
        pending_add = self._pending_adds.get(key, (None,))[0]
        pending_replace = self._pending_replaces.get(key, (None,))[0]
        if action is A.SESSION_INITIATE:
            if content.creator is not Role.INITIATOR:
                raise _Refusal(BAD_REQUEST, f"content {name} of an initiate not by the initiator")
        elif action is A.CONTENT_ADD:
            if content.creator is not sender:
                raise _Refusal(BAD_REQUEST, f"content {name} added with another creator")
            if known or pending_add is not None:
                raise _Refusal(BAD_REQUEST, f"content {name} already exists")
        elif action in (A.CONTENT_ACCEPT, A.CONTENT_REJECT):
            if pending_add is not sender.other:
                raise _Refusal(OUT_OF_ORDER, f"no content-add of {name} to answer")
        elif action is A.TRANSPORT_REPLACE:
            if not known:
                raise _Refusal(BAD_REQUEST, f"unknown content {name}")
            if pending_replace is sender:
                raise _Refusal(OUT_OF_ORDER, f"a transport-replace of {name} is already pending")
            if pending_replace is sender.other:
                if sender is self.role:
                    raise _Refusal(OUT_OF_ORDER, f"answer the peer's transport-replace of {name}")
                # Both replaced at once: the initiator's action wins (XEP-0166 §7.2.16).
                if sender is Role.RESPONDER:
                    raise _Refusal(TIE_BREAK, f"crossing transport-replace of {name}")
        elif action in (A.TRANSPORT_ACCEPT, A.TRANSPORT_REJECT):
            if pending_replace is not sender.other:
                raise _Refusal(OUT_OF_ORDER, f"no transport-replace of {name} to answer")
        elif action is A.CONTENT_MODIFY:
            if not known:
                raise _Refusal(BAD_REQUEST, f"unknown content {name}")
            if content.senders is None:
                raise _Refusal(BAD_REQUEST, f"content-modify of {name} without senders")
        elif action is A.SESSION_ACCEPT:
            if not known:
                raise _Refusal(BAD_REQUEST, f"content {name} was not offered")
        elif not known and pending_add is None:
            raise _Refusal(BAD_REQUEST, f"unknown content {name}")

    def _apply(self, sender: Role, msg: JingleMessage) -> None:
        action = msg.action
        self._state = TRANSITIONS[(sender, self._state, action)]
        by_key = {c.key: c for c in msg.contents}
        if action is A.SESSION_INITIATE:
            self._contents = dict(by_key)
        elif action is A.SESSION_ACCEPT:
            # Offered contents missing from the accept are implicitly rejected.
            self._contents = {k: _merge(self._contents[k], c) for k, c in by_key.items()}
        elif action is A.SESSION_TERMINATE:
            self.reason = msg.reason
            self._pending_adds.clear()
            self._pending_replaces.clear()
        elif action is A.CONTENT_ADD:
            self._pending_adds.update((k, (sender, c)) for k, c in by_key.items())
        elif action is A.CONTENT_ACCEPT:
            for k, c in by_key.items():
                self._contents[k] = _merge(self._pending_adds.pop(k)[1], c)
        elif action is A.CONTENT_REJECT:
            for k in by_key:
                del self._pending_adds[k]
        elif action is A.CONTENT_REMOVE:
            for k in by_key:
                self._contents.pop(k, None)
                self._pending_adds.pop(k, None)
                self._pending_replaces.pop(k, None)
        elif action is A.CONTENT_MODIFY:
            for k, c in by_key.items():
                self._contents[k] = replace(self._contents[k], senders=c.senders)
        elif action is A.TRANSPORT_REPLACE:
            self._pending_replaces.update((k, (sender, c)) for k, c in by_key.items())
        elif action is A.TRANSPORT_ACCEPT:
            for k, c in by_key.items():
                proposed = self._pending_replaces.pop(k)[1]
                self._contents[k] = replace(self._contents[k], transport=proposed.transport)
                if c.transport is not None:
                    self._contents[k] = replace(self._contents[k], transport=c.transport)
        elif action is A.TRANSPORT_REJECT:
            for k in by_key:
                del self._pending_replaces[k]

    def _abandon(self) -> None:
        self._state = ENDED


def _merge(old: Content, new: Content) -> Content:
    """``new`` with the parts it leaves out taken from ``old``."""
    return replace(
        new,
        senders=new.senders if new.senders is not None else old.senders,
        description=new.description if new.description is not None else old.description,
        transport=new.transport if new.transport is not None else old.transport,
        security=new.security if new.security is not None else old.security,
    )


@dataclass(frozen=True, slots=True)
class Incoming:
    """What :meth:`SessionRegistry.receive` made of a message.

    ``error`` is the answer to send (``None``: an empty iq result). ``session`` is the session
    the message belongs to (a new one for an accepted ``session-initiate``), ``None`` if there is
    none. ``superseded`` is our own ``session-initiate`` that lost a tie-break to this one: it
    is ENDED, and the peer will answer it with a ``tie-break`` error.
    """

    message: JingleMessage
    session: JingleSession | None
    error: ErrorReply | None
    superseded: JingleSession | None = None

    @property
    def is_new_session(self) -> bool:
        """True for an accepted ``session-initiate``: the application must now decide."""
        return self.error is None and self.message.action is A.SESSION_INITIATE


def _never_equivalent(ours: JingleSession, theirs: JingleMessage) -> bool:
    return False


def _octets(text: str) -> bytes:
    return text.encode("utf-8")


class SessionRegistry:
    """The live Jingle sessions of one local entity, by ``(peer full JID, sid)``.

    A ``session-info`` whose payload is not in one of ``info_namespaces`` is answered with
    ``unsupported-info`` (an empty one is a ping and is acknowledged).

    ``equivalent(ours, theirs)`` tells whether a ``session-initiate`` received from a peer to
    whom we have a PENDING ``session-initiate`` of ours requests the same thing; if so, the two
    crossed and the XEP-0166 tie-break applies (the lower sid wins). The default treats no two
    sessions as equivalent: two file offers crossing are two transfers.
    """

    def __init__(
        self,
        own_jid: JID,
        *,
        equivalent: Callable[[JingleSession, JingleMessage], bool] = _never_equivalent,
        info_namespaces: Iterable[str] = (_ns.JINGLE_FT,),
    ) -> None:
        self.own_jid = own_jid
        self._equivalent = equivalent
        self._info_namespaces = frozenset(info_namespaces)
        self._sessions: dict[tuple[JID, str], JingleSession] = {}

    def __len__(self) -> int:
        self._prune()
        return len(self._sessions)

    def __iter__(self) -> Iterator[JingleSession]:
        self._prune()
        return iter(list(self._sessions.values()))

    def get(self, peer: JID, sid: str) -> JingleSession | None:
        """The live session with ``peer`` (full JID) named ``sid``."""
        self._prune()
        return self._sessions.get((peer, sid))

    def _prune(self) -> None:
        for key in [k for k, s in self._sessions.items() if s.state is ENDED]:
            del self._sessions[key]

    def create(self, peer: JID, sid: str | None = None) -> JingleSession:
        """A new session of ours with ``peer``; call :meth:`JingleSession.initiate` next."""
        self._prune()
        sid = sid or new_sid()
        if (peer, sid) in self._sessions:
            raise JingleLocalError(f"a session {sid!r} with {peer} exists already")
        session = JingleSession(Role.INITIATOR, sid, self.own_jid, peer)
        self._sessions[(peer, sid)] = session
        return session

    def receive(self, msg: JingleMessage, iq_from: JID) -> Incoming:
        """Route a message received from ``iq_from`` and decide the answer."""
        self._prune()
        session = self._sessions.get((iq_from, msg.sid))
        if msg.action is A.SESSION_INITIATE:
            return self._receive_initiate(msg, iq_from, session)
        if session is None:
            return Incoming(msg, None, UNKNOWN_SESSION.with_text(f"no session {msg.sid!r}"))
        if (
            msg.action is A.SESSION_INFO
            and msg.info is not None
            and session.state in (PENDING, ACTIVE)
            and etree.QName(msg.info).namespace not in self._info_namespaces
        ):
            return Incoming(msg, session, UNSUPPORTED_INFO.with_text("unknown session-info"))
        error = session.receive(msg)
        self._prune()
        return Incoming(msg, session, error)

    def _receive_initiate(
        self, msg: JingleMessage, peer: JID, existing: JingleSession | None
    ) -> Incoming:
        loser: JingleSession | None = None
        if existing is not None:
            if existing.role is Role.RESPONDER or existing.state is not PENDING:
                return Incoming(msg, existing, OUT_OF_ORDER.with_text("session exists already"))
            # Same sid crossing: the lower JID wins.
            if _octets(str(self.own_jid)) < _octets(str(peer)):
                return Incoming(msg, None, TIE_BREAK.with_text("crossing session-initiate"))
            loser = existing
        else:
            for ours in list(self._sessions.values()):
                if (
                    ours.peer == peer
                    and ours.role is Role.INITIATOR
                    and ours.state is PENDING
                    and self._equivalent(ours, msg)
                ):
                    if _octets(ours.sid) < _octets(msg.sid):
                        return Incoming(msg, None, TIE_BREAK.with_text("crossing session-initiate"))
                    loser = ours
                    break
        session = JingleSession(Role.RESPONDER, msg.sid, self.own_jid, peer)
        error = session.receive(msg)
        if error is not None:
            return Incoming(msg, None, error)
        if loser is not None:
            loser._abandon()
            self._prune()
        self._sessions[(peer, msg.sid)] = session
        return Incoming(msg, session, None, loser)
