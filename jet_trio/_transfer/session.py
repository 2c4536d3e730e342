"""The sans-IO file-transfer session: every protocol decision of one Jingle file transfer.

A :class:`FileSession` wraps one :class:`~jet_trio._jingle.machine.JingleSession` (XEP-0166)
and adds what XEP-0234 (file transfer), XEP-0260 (SOCKS5 bytestreams), XEP-0261 (in-band
bytestreams) and XEP-0391 (JET) decide: which peer messages are kept for a later step and
which are dropped or refused, the ``<checksum/>`` session-info, the candidate-used /
candidate-error / activated exchange and the nomination (:class:`S5BExchange`), the fallback
to IBB by transport-replace, offer validation (:func:`parse_offer`), and how a session ends
(:meth:`FileSession.after_error`). It does no I/O: it consumes parsed Jingle messages
(:meth:`FileSession.receive`) and local intents (:meth:`FileSession.step`, the methods of
:class:`S5BExchange`...) and returns Jingle messages to send and commands to run
(:class:`Command`). The trio driver in :mod:`.service` runs them.

The session's phases and the steps between them are one table, :data:`PHASES`; which peer
actions a phase keeps for later is :data:`KEEPS`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final

from lxml import etree

from .._jet.cipher import Cipher
from .._jingle.machine import JingleSession, SessionState, new_sid
from .._jingle.message import (
    OUT_OF_ORDER,
    Content,
    ErrorReply,
    JingleAction,
    JingleMessage,
    JingleProtocolError,
    Reason,
    ReasonCondition,
    Role,
    Senders,
    content_security,
)
from .._transports.ibb import IBBTransport, answer_block_size
from .._transports.ibb import build_transport as build_ibb
from .._transports.ibb import parse_transport as parse_ibb
from .._transports.s5b import (
    Activated,
    Candidate,
    CandidateError,
    CandidateUsed,
    Nomination,
    S5BTransport,
    nominate,
)
from .._transports.s5b import build_transport as build_s5b
from .._transports.s5b import parse_transport as parse_s5b
from .._transports.socks5 import dstaddr
from .._xmpp import ns as _ns
from .._xmpp.jid import JID
from .description import (
    Checksum,
    FileDescription,
    FileTransferError,
    Range,
    parse_description,
    parse_info,
    parse_range,
)
from .hashes import Hash
from .reasons import condition, consequence_of_ending, error_for, reason_for
from .types import TransferCancelled, TransferError, TransportFailed, TransportName

__all__ = [
    "KEEPS",
    "MAX_BACKLOG",
    "PHASES",
    "AcceptDirect",
    "ActivateProxy",
    "AwaitActivated",
    "Command",
    "ConnectCandidates",
    "Ending",
    "FallBack",
    "FileSession",
    "KeptDownload",
    "Offer",
    "Phase",
    "S5BExchange",
    "Step",
    "UsePicked",
    "accepted_range",
    "offers_ranges",
    "parse_offer",
    "resume_offset",
]

log = logging.getLogger("jet_trio.transfer")

A = JingleAction
CONTENT_NAME: Final = "a-file-offer"
REQUEST_NAME: Final = "a-file-request"

#: Messages held per session (queued or kept) before more are refused: a session needs a
#: handful (candidate-used, activated, a transport-replace...), a peer could send thousands.
MAX_BACKLOG: Final = 16
_CAPACITY: Final = 64  # arrived messages (terminates are never refused)
_BACKLOG_FULL: Final = ErrorReply(
    "resource-constraint", "wait", text="too many unanswered Jingle messages for this session"
)


class Phase(Enum):
    """Where a file-transfer session is (beside the Jingle state of its ``JingleSession``)."""

    OFFERED = "offered"  # session-initiate sent or received, not answered yet
    NEGOTIATING = "negotiating"  # accepted: the transport is being set up (S5B candidates)
    REPLACING = "replacing"  # S5B failed: the transport is being replaced by IBB
    TRANSFERRING = "transferring"  # the transport is settled and data flows
    CLOSING = "closing"  # the data is through: waiting for the checksum or the end
    ENDED = "ended"  # a session-terminate was sent or received


class Step(Enum):
    """What moves a session from one phase to the next."""

    ACCEPTED = "accepted"  # session-accept sent or received
    FALLBACK = "fallback"  # no S5B candidate worked: transport-replace to IBB
    DATA = "data"  # the transport is ready: the data starts
    DATA_DONE = "data-done"  # every byte was sent or received
    END = "end"  # session-terminate sent or received


_P, _S = Phase, Step
_SETUP: Final = frozenset({A.SESSION_ACCEPT, A.TRANSPORT_INFO, A.TRANSPORT_ACCEPT,
                           A.TRANSPORT_REJECT, A.TRANSPORT_REPLACE})  # fmt: skip

#: The session's state table: (phase, step) -> next phase. Anything not in it is a bug of the
#: driver (:class:`~jet_trio._errors.LocalProtocolError`); ENDED absorbs every step.
PHASES: Final[Mapping[tuple[Phase, Step], Phase]] = MappingProxyType(
    {
        (_P.OFFERED, _S.ACCEPTED): _P.NEGOTIATING,
        (_P.NEGOTIATING, _S.FALLBACK): _P.REPLACING,
        (_P.NEGOTIATING, _S.DATA): _P.TRANSFERRING,
        (_P.REPLACING, _S.DATA): _P.TRANSFERRING,
        (_P.TRANSFERRING, _S.DATA_DONE): _P.CLOSING,
        **{(p, _S.END): _P.ENDED for p in Phase},
        **{(_P.ENDED, s): _P.ENDED for s in Step},
    }
)

#: Peer actions a phase keeps until a later step asks for them (anything else that is not
#: asked for is dropped: the peer had its answer). Once data flows they are refused
#: (out-of-order) before they are kept: the transport is settled.
KEEPS: Final[Mapping[Phase, frozenset[JingleAction]]] = MappingProxyType(
    {
        _P.OFFERED: _SETUP,
        _P.NEGOTIATING: _SETUP,
        _P.REPLACING: _SETUP,
        _P.TRANSFERRING: frozenset(),
        _P.CLOSING: frozenset(),
        _P.ENDED: frozenset(),
    }
)


class SessionStateError(TransferError):
    """A step the session's phase does not allow (a bug of the driver)."""


# -- commands: what the driver runs --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectCandidates:
    """Connect to the first of ``candidates`` that works, asking for ``dstaddr``."""

    candidates: tuple[Candidate, ...]
    dstaddr: str


@dataclass(frozen=True, slots=True)
class FallBack:
    """No candidate works on either side: replace the transport by IBB."""


@dataclass(frozen=True, slots=True)
class AcceptDirect:
    """The peer connected to our direct ``candidate``: take its connection for ``dstaddr``."""

    candidate: Candidate
    dstaddr: str
    transport: TransportName = "s5b-direct"


@dataclass(frozen=True, slots=True)
class ActivateProxy:
    """The peer used our proxy ``candidate``: connect to it for ``dstaddr``, activate the
    bytestream ``sid`` towards the peer, then send :meth:`S5BExchange.activated`."""

    candidate: Candidate
    dstaddr: str
    sid: str
    transport: TransportName = "s5b-proxy"


@dataclass(frozen=True, slots=True)
class AwaitActivated:
    """We connected to the peer's proxy: wait for its ``activated`` (then :class:`UsePicked`)."""

    candidate: Candidate
    transport: TransportName = "s5b-proxy"


@dataclass(frozen=True, slots=True)
class UsePicked:
    """Use the connection we made to the peer's ``candidate``."""

    candidate: Candidate
    transport: TransportName = "s5b-direct"


Command = ConnectCandidates | FallBack | AcceptDirect | ActivateProxy | AwaitActivated | UsePicked


@dataclass(frozen=True, slots=True)
class Ending:
    """How to end a session after a local exception: send session-terminate with ``reason``
    (``None``: the peer ended it already), and raise ``instead`` rather than the exception
    (``None``: the exception itself) when it is only a consequence of the peer's end."""

    reason: Reason | None
    instead: TransferError | None


# -- offers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offer:
    """The parsed parts of a received session-initiate."""

    content: Content
    file: FileDescription
    security: etree._Element | None
    request: bool


def parse_offer(msg: JingleMessage, cipher: Callable[[str | None], Cipher | None]) -> Offer:
    """Validate a session-initiate as a single-file offer or request (XEP-0234) over S5B or
    IBB, with at most one ``<security/>`` (XEP-0391). ``cipher`` finds a cipher by URN
    (``None`` if unknown: refused later, when the envelope is opened). Raises
    :class:`TransferError` with the reason to refuse the session with, or
    :class:`FileTransferError` for a malformed or unsafe ``<file/>``."""
    if len(msg.contents) != 1:
        raise TransferError("only single-file offers are supported", "unsupported-applications")
    content = msg.contents[0]
    if content.description is None or content.description.tag != f"{{{_ns.JINGLE_FT}}}description":
        raise TransferError("not a file transfer", "unsupported-applications")
    request = content.senders is Senders.RESPONDER
    if content.senders not in (None, Senders.INITIATOR, Senders.RESPONDER):
        raise TransferError("unsupported senders value", "unsupported-applications")
    file = parse_description(content.description)
    if request and not file.hashes:
        raise TransferError("a file request must name the file by hash", "failed-application")
    if not request and file.size is None:
        raise TransferError("the offer has no <size>", "failed-application")
    if content.transport is None or content.transport.tag not in (
        f"{{{_ns.JINGLE_S5B}}}transport",
        f"{{{_ns.JINGLE_IBB}}}transport",
    ):
        raise TransferError("no supported transport offered", "unsupported-transports")
    try:
        security = content_security(msg, content)
    except JingleProtocolError as exc:
        raise TransferError(f"ambiguous encryption: {exc}", "security-error") from None
    if security is not None and not request and file.size is not None:
        # Refused before session-accept rather than failing at the limit.
        chosen = cipher(security.get("cipher"))
        if chosen is not None and file.size > chosen.max_plaintext_size:
            raise TransferError(
                f"the offered {file.size} bytes exceed what {chosen.urn} may encrypt under "
                f"one key ({chosen.max_plaintext_size} bytes)",
                "failed-application",
            )
    return Offer(content, file, security, request)


def refusal_reason(exc: Exception) -> str:
    """The reason an offer that :func:`parse_offer` refused is terminated with."""
    if isinstance(exc, FileTransferError):  # a malformed or unsafe <file/>
        return "failed-application"
    if isinstance(exc, TransferError):
        return exc.reason
    return "unsupported-applications"


def is_ibb(transport: etree._Element) -> bool:
    return transport.tag == f"{{{_ns.JINGLE_IBB}}}transport"


def transport_of(msg: JingleMessage) -> etree._Element:
    """The first transport element of ``msg``."""
    for content in msg.contents:
        if content.transport is not None:
            return content.transport
    raise TransferError(f"{msg.action} without a transport", "failed-transport")


def accepted_file(accept: JingleMessage) -> FileDescription:
    """The file a session-accept of our request describes (it must say its size)."""
    for content in accept.contents:
        if content.description is not None:
            file = parse_description(content.description)
            if file.size is None:
                raise TransferError("the peer accepted without saying the file size")
            return file
    raise TransferError("session-accept without a file description")


# -- ranged transfers: resuming an offer from a kept partial download (XEP-0234 6.1) --------


@dataclass(frozen=True, slots=True)
class KeptDownload:
    """What the receiver kept of an interrupted download (its own authenticated record, never
    anything the sender says), as :func:`resume_offset` weighs it against a new offer."""

    peer: JID  # who sent it (compared by bare JID)
    name: str  # the file name offered then
    size: int
    sha256: str  # hex, "" when that offer carried no hash
    encrypted: bool  # received through JET
    received: int  # bytes kept on disk


def offers_ranges(file: FileDescription) -> bool:
    """Whether an offer says its sender honours a range in our session-accept: a ``<range/>``
    without offset or length in its ``<file/>`` (XEP-0234 6.1; Dino and Conversations put
    none there)."""
    return file.range is not None and file.range.offset == 0 and file.range.length is None


def resume_offset(offer: FileDescription, sender: JID, encrypted: bool, kept: KeptDownload) -> int:
    """Where a new offer of ``offer`` from ``sender`` may continue the kept download ``kept``
    (0: it may not, the whole file is received again).

    Only the same file from the same account: the same bare JID (a partial never matches
    another sender), name and size, and the same SHA-256 where both the offer and the kept
    record carry one; only when the sender honours ranges (:func:`offers_ranges`); an
    encrypted offer continues only a download that was encrypted too. The kept bytes are
    not trusted: the whole file is verified against the hash of the offer or of the
    ``<checksum/>`` after the data before it gets its name."""
    if not offers_ranges(offer) or kept.peer.bare != sender.bare:
        return 0
    if offer.name != kept.name or offer.size != kept.size:
        return 0
    offered = next((h.digest.hex() for h in offer.hashes if h.algo == "sha-256"), "")
    if offered and kept.sha256 and offered != kept.sha256.lower():
        return 0
    if not offered and not offer.hashes and not offer.hash_used:
        return 0  # nothing would verify the whole file
    if encrypted and not kept.encrypted:
        return 0
    if not 0 < kept.received < kept.size:
        return 0
    return kept.received


def accepted_range(accept: JingleMessage, size: int) -> tuple[int, int]:
    """The part of our offered file of ``size`` bytes that the peer's session-accept asks
    for, as ``(offset, length)``: the whole file unless its ``<file/>`` has a ``<range/>``
    with an offset or a length (XEP-0234 6.1: the sender SHOULD respect it). A range beyond
    the file raises :class:`TransferError` (``failed-application``)."""
    rng: Range | None = None
    for content in accept.contents:
        if content.description is None:
            continue
        try:
            rng = parse_range(content.description)
        except FileTransferError as exc:
            raise TransferError(
                f"{accept.sid}: the peer accepted with a malformed range: {exc}",
                "failed-application",
            ) from None
        break
    if rng is None:
        return 0, size
    length = size - rng.offset if rng.length is None else rng.length
    if rng.offset > size or length < 0 or rng.offset + length > size:
        raise TransferError(
            f"the peer asked for bytes {rng.offset}+{length} of a file of {size} bytes",
            "failed-application",
        )
    return rng.offset, length


# -- the session ------------------------------------------------------------------------------


class FileSession:
    """One Jingle file-transfer session, without I/O (see the module's documentation).

    Peer messages go in through :meth:`receive` (after :meth:`refusal` said they are not
    refused); the driver asks for the next one it needs with :meth:`next_message`, which
    returns ``None`` when it has not arrived yet (wait for the next :meth:`receive`) and
    raises the peer's reason as an exception when the peer ended the session first.
    """

    def __init__(self, jingle: JingleSession) -> None:
        self.jingle = jingle
        self.phase = Phase.OFFERED
        self.checksum: tuple[Hash, ...] = ()
        self.has_checksum = False
        self.terminated: JingleMessage | None = None  # the peer's session-terminate
        self.peer_reason: Reason | None = None
        self.closed = False  # no more messages will come (service closing, tie-break lost)
        self._arrived: deque[JingleMessage] = deque()
        self._kept: list[JingleMessage] = []

    def __repr__(self) -> str:
        return f"<FileSession {self.jingle.sid} with {self.peer}: {self.phase.name}>"

    @property
    def peer(self) -> JID:
        return self.jingle.peer

    @property
    def sid(self) -> str:
        return self.jingle.sid

    @property
    def role(self) -> Role:
        """Our role in the Jingle session."""
        return self.jingle.role

    @property
    def data_phase(self) -> bool:
        """Whether data flows (or flowed): the transport is settled."""
        return not KEEPS[self.phase]

    def step(self, step: Step) -> Phase:
        """Move on by ``step`` (see :data:`PHASES`)."""
        try:
            self.phase = PHASES[(self.phase, step)]
        except KeyError:
            raise SessionStateError(f"{step.value} in phase {self.phase.value}") from None
        return self.phase

    # -- peer messages ---------------------------------------------------------------------

    def backlog(self) -> int:
        """Messages from the peer held for this session (arrived and kept)."""
        return len(self._arrived) + len(self._kept)

    def refusal(self, msg: JingleMessage) -> ErrorReply | None:
        """Why ``msg`` is answered with an error instead of being kept for this session:
        nothing needs it any more (the data is flowing), or the session holds too many
        already. Memory per session stays bounded whatever the peer sends."""
        if msg.action is A.SESSION_TERMINATE:
            return None
        if self.data_phase and msg.action in _SETUP:
            return OUT_OF_ORDER.with_text(f"{msg.action} while the data is being transferred")
        if self.backlog() >= MAX_BACKLOG:
            return _BACKLOG_FULL
        return None

    def receive(self, msg: JingleMessage) -> bool:
        """Take a message of the peer (its Jingle state already applied); ``False`` if it
        was dropped (the session is closed or full)."""
        if self.closed or len(self._arrived) >= _CAPACITY:
            log.warning("dropping %s for session %s: inbox full or closed", msg.action, self.sid)
            return False
        if self._take_info(msg):
            return True
        self._arrived.append(msg)
        return True

    def close(self, *, drop: bool = False) -> None:
        """No more messages will arrive (the service closes, or a tie-break was lost);
        ``drop``: forget those held too (the session is over)."""
        self.closed = True
        if drop:
            self._arrived.clear()
            self._kept.clear()

    def _take_info(self, msg: JingleMessage) -> bool:
        if msg.action is A.SESSION_INFO and msg.info is not None:
            try:
                info = parse_info(msg.info)
            except FileTransferError:
                return False
            if isinstance(info, Checksum):
                self.checksum = info.hashes
                self.has_checksum = True
                return True
        return False

    def _keep(self, msg: JingleMessage) -> None:
        if msg.action in KEEPS[self.phase]:
            self._kept.append(msg)
        else:
            log.debug("dropping %s from %s: not needed now", msg.action, self.peer)

    def _ended(self, terminate: JingleMessage) -> None:
        self.terminated = terminate
        self.peer_reason = terminate.reason or Reason(ReasonCondition.GENERAL_ERROR)
        self.step(Step.END)

    def next_message(self, *actions: JingleAction) -> JingleMessage | None:
        """The next message with one of ``actions``, or ``None`` if none has arrived yet.
        Messages before it that are not asked for are kept for later (:data:`KEEPS`) or
        dropped. A session-terminate raises its reason (:func:`error_for`) unless asked for,
        and is remembered: a later ``next_message(SESSION_TERMINATE)`` returns it."""
        if self.terminated is not None:
            if A.SESSION_TERMINATE in actions:
                return self.terminated
            raise error_for(self.terminated.reason, str(self.peer))
        for i, msg in enumerate(self._kept):
            if msg.action in actions:
                return self._kept.pop(i)
        while self._arrived:
            msg = self._arrived.popleft()
            if msg.action is A.SESSION_TERMINATE:
                self._ended(msg)
                if A.SESSION_TERMINATE in actions:
                    return msg
                raise error_for(msg.reason, str(self.peer))
            if msg.action in actions:
                return msg
            self._keep(msg)
        if self.closed:
            raise TransferCancelled("the transfer service closed", "cancel")
        return None

    def ended_by_peer(self) -> Reason | None:
        """The peer's reason if its session-terminate has arrived (other messages before it
        are kept or dropped as by :meth:`next_message`)."""
        while self.peer_reason is None and self._arrived:
            msg = self._arrived.popleft()
            if msg.action is A.SESSION_TERMINATE:
                self._ended(msg)
            else:
                self._keep(msg)
        return self.peer_reason

    def check_success(self, end: JingleMessage) -> None:
        """Raise unless the peer's session-terminate ``end`` says ``success``."""
        if end.reason is None or end.reason.condition != "success":
            raise error_for(end.reason, str(self.peer))

    # -- our messages ----------------------------------------------------------------------

    def initiate(
        self,
        description: etree._Element,
        transport: etree._Element,
        security: etree._Element | None,
        *,
        request: bool,
    ) -> JingleMessage:
        """The session-initiate of an offer (we send) or a request (the peer sends)."""
        name, senders = (
            (REQUEST_NAME, Senders.RESPONDER) if request else (CONTENT_NAME, Senders.INITIATOR)
        )
        content = Content(Role.INITIATOR, name, senders, description, transport, security)
        return self.jingle.initiate([content])

    def accept(
        self, content: Content, description: etree._Element, transport: etree._Element
    ) -> JingleMessage:
        """The session-accept of the offered ``content`` with our ``transport``."""
        self.step(Step.ACCEPTED)
        return self.jingle.accept(
            [Content(content.creator, content.name, content.senders, description, transport)]
        )

    def accepted(self, msg: JingleMessage) -> etree._Element:
        """The peer accepted our offer or request: its transport element."""
        self.step(Step.ACCEPTED)
        return transport_of(msg)

    def answer_ibb(self, theirs: etree._Element, our_block_size: int) -> etree._Element:
        """Our IBB transport answering the peer's: the same sid, the smaller block size."""
        got = parse_ibb(theirs)
        return build_ibb(IBBTransport(got.sid, answer_block_size(got.block_size, our_block_size)))

    def transport_info(self, transport: etree._Element) -> JingleMessage:
        return self.jingle.transport_info([self._content(transport)])

    def terminate(self, reason: Reason) -> JingleMessage | None:
        """Our session-terminate, or ``None`` if the session has ended already."""
        if self.jingle.state is SessionState.ENDED:
            return None
        msg = self.jingle.terminate_with(reason)
        self.step(Step.END)
        return msg

    def after_error(self, exc: BaseException) -> Ending:
        """How to end the session after the local exception ``exc``: with the reason
        :func:`reason_for` gives, or, when the peer had already ended the session and
        ``exc`` is only a consequence (the peer's session-terminate crossed our next
        request, or its transport closed first), by raising the peer's reason instead."""
        reason = self.ended_by_peer()
        if reason is None:
            name, text = reason_for(exc)
            return Ending(Reason(condition(name), text), None)
        if reason.condition != "success" and consequence_of_ending(exc):
            return Ending(None, error_for(reason, str(self.peer)))
        return Ending(None, None)

    def _content(self, transport: etree._Element) -> Content:
        contents = self.jingle.contents
        name = next(iter(contents.values())).name if contents else CONTENT_NAME
        return Content(Role.INITIATOR, name, None, None, transport)

    # -- S5B and the fallback to IBB -------------------------------------------------------

    def s5b(self, ours: etree._Element, theirs: etree._Element) -> S5BExchange:
        """The candidate exchange of our and their S5B transport elements (XEP-0260)."""
        return S5BExchange(self, parse_s5b(ours), parse_s5b(theirs))

    def replace_with_ibb(self, block_size: int) -> tuple[JingleMessage, IBBTransport]:
        """We initiated and no candidate worked: the transport-replace offering IBB
        (XEP-0260 §2.4) and the IBB transport it offers."""
        self.step(Step.FALLBACK)
        offer = IBBTransport(new_sid(), block_size)
        return self.jingle.transport_replace([self._content(build_ibb(offer))]), offer

    def replace_answered(self, answer: JingleMessage, offer: IBBTransport) -> IBBTransport:
        """The IBB transport agreed by the peer's transport-accept of our ``offer``; raises
        :class:`TransportFailed` for a transport-reject or a raised block size."""
        if answer.action is A.TRANSPORT_REJECT or not answer.contents:
            raise TransportFailed(f"{self.peer} refused the IBB fallback", "failed-transport")
        got = parse_ibb(transport_of(answer))
        if got.block_size > offer.block_size:
            raise TransportFailed("the peer raised the IBB block size", "failed-transport")
        return IBBTransport(offer.sid, got.block_size)

    def replace_received(
        self, replace: JingleMessage, our_block_size: int
    ) -> tuple[IBBTransport, JingleMessage]:
        """The peer replaced the failed transport by IBB: the agreed transport (open it
        before answering) and our transport-accept."""
        self.step(Step.FALLBACK)
        offered = parse_ibb(transport_of(replace))
        agreed = IBBTransport(offered.sid, answer_block_size(offered.block_size, our_block_size))
        return agreed, self.jingle.transport_accept([self._content(build_ibb(agreed))])


class S5BExchange:
    """The XEP-0260 candidate exchange of one session, without I/O.

    Each side connects to the other's candidates (:meth:`connect`), reports the one that
    worked or that none did (:meth:`connected` gives the transport-info to send) and takes
    the peer's report (:meth:`take`); then :meth:`decide` applies the nomination rules and
    says what to do: use our connection, take the peer's on our listener, activate our
    proxy, wait for the peer to activate its proxy, or fall back to IBB.
    """

    def __init__(self, session: FileSession, ours: S5BTransport, theirs: S5BTransport) -> None:
        self.session = session
        self.ours = ours
        self.theirs = theirs
        me, peer = session.jingle.own_jid, session.peer
        self.their_dst = theirs.dstaddr or dstaddr(theirs.sid, peer, me)
        self.picked: Candidate | None = None  # the peer's candidate we connected to
        self.their_report: CandidateUsed | CandidateError | None = None

    def connect(self) -> ConnectCandidates | None:
        """What to connect to (``None``: the peer offered no candidate)."""
        if not self.theirs.candidates:
            return None
        return ConnectCandidates(self.theirs.candidates, self.their_dst)

    def connected(self, picked: Candidate | None) -> JingleMessage:
        """We connected to the peer's candidate ``picked`` (``None``: to none): the
        candidate-used or candidate-error to send."""
        info: CandidateUsed | CandidateError = CandidateError()
        if picked is not None:
            self.picked = picked
            info = CandidateUsed(picked.cid)
        transport = build_s5b(S5BTransport(self.theirs.sid, info=info), include_mode=False)
        return self.session.transport_info(transport)

    def _info(
        self, msg: JingleMessage, kinds: tuple[type, ...]
    ) -> CandidateUsed | CandidateError | Activated | None:
        for content in msg.contents:
            if content.transport is None:
                continue
            info = parse_s5b(content.transport).info
            if isinstance(info, kinds):
                assert isinstance(info, (CandidateUsed, CandidateError, Activated))
                return info
            if info is not None and not isinstance(
                info, (CandidateUsed, CandidateError, Activated)
            ):
                raise TransportFailed(
                    f"{self.session.peer} reported a proxy error", "failed-transport"
                )
        return None

    def take(self, msg: JingleMessage) -> bool:
        """Take a transport-info of the peer; ``True`` once its candidate-used or
        candidate-error is known (other transport-infos are ignored)."""
        info = self._info(msg, (CandidateUsed, CandidateError))
        if isinstance(info, (CandidateUsed, CandidateError)):
            self.their_report = info
        return self.their_report is not None

    def take_activated(self, msg: JingleMessage) -> bool:
        """Take a transport-info of the peer; ``True`` if it says our pick is activated."""
        return self._info(msg, (Activated,)) is not None

    def decide(self) -> Command:
        """Both reports are in: what to do (XEP-0260 §2.3 nomination)."""
        assert self.their_report is not None
        ours_used: Candidate | None = None
        if isinstance(self.their_report, CandidateUsed):
            cid = self.their_report.cid
            ours_used = next((c for c in self.ours.candidates if c.cid == cid), None)
            if ours_used is None:
                raise TransportFailed(
                    f"{self.session.peer} used an S5B candidate we never offered",
                    "failed-transport",
                )
        role = self.session.role
        nomination: Nomination | None
        if role is Role.INITIATOR:
            nomination = nominate(initiator_used=self.picked, responder_used=ours_used)
        else:
            nomination = nominate(initiator_used=ours_used, responder_used=self.picked)
        if nomination is None:
            return FallBack()
        cand = nomination.candidate
        if nomination.offered_by == role.value:
            assert self.ours.dstaddr is not None
            if cand.type == "proxy":
                return ActivateProxy(cand, self.ours.dstaddr, self.ours.sid)
            return AcceptDirect(cand, self.ours.dstaddr)
        assert self.picked is not None
        if cand.type == "proxy":
            return AwaitActivated(cand)
        return UsePicked(cand)

    def activated(self, cand: Candidate) -> JingleMessage:
        """The transport-info telling the peer that our proxy ``cand`` is activated."""
        info = build_s5b(S5BTransport(self.ours.sid, info=Activated(cand.cid)), include_mode=False)
        return self.session.transport_info(info)
