"""The sans-IO file-transfer session: every protocol decision of one Jingle file transfer.

A :class:`FileSession` wraps one :class:`~jet_trio._jingle.machine.JingleSession` (XEP-0166)
and adds what XEP-0234 (file transfer), XEP-0260 (SOCKS5 bytestreams), XEP-0261 (in-band
bytestreams) and XEP-0391 (JET) decide: which peer messages are kept for a later step and
which are dropped or refused, the ``<checksum/>`` session-info, the candidate-used /
candidate-error / activated exchange and the nomination (:class:`S5BExchange`), the fallback
to IBB by transport-replace, offer validation (:func:`parse_offer`), and how a session ends
(:meth:`FileSession.after_error`), and, for the WebRTC data channel (Conversations' dialect),
the choice of the transport (:func:`choose_transport`), the trickled candidates and the
fallback after a failed connection (:class:`WebRTCExchange`). It does no I/O: it consumes
parsed Jingle messages (:meth:`FileSession.receive`) and local intents
(:meth:`FileSession.step`, the methods of :class:`S5BExchange`...) and returns Jingle
messages to send and commands to run (:class:`Command`). The trio driver in :mod:`.service`
runs them.

The session's phases and the steps between them are one table, :data:`PHASES`; which peer
actions a phase keeps for later is :data:`KEEPS`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

from lxml import etree

from .._errors import SecurityError
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
from .._transports.ibb import IBBError, IBBTransport, answer_block_size, check_answered_block_size
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
from .._transports.webrtc_element import (
    WEBRTC_DATACHANNEL_NS,
    IceCandidate,
    WebRTCElementError,
    WebRTCTransportInfo,
    parse_trickle,
    trickle_infos,
)
from .._transports.webrtc_element import build_transport as build_webrtc
from .._transports.webrtc_element import parse_transport as parse_webrtc
from .._xmpp import ns as _ns
from .._xmpp.jid import JID
from .description import (
    Checksum,
    FileDescription,
    FileTransferError,
    Range,
    build_checksum,
    parse_description,
    parse_info,
    parse_range,
)
from .hashes import Hash
from .reasons import condition, consequence_of_ending, error_for, reason_for
from .types import (
    EncryptionFailed,
    TransferCancelled,
    TransferError,
    TransferResult,
    TransportFailed,
    TransportName,
)

__all__ = [
    "FALLBACK_OF",
    "KEEPS",
    "MAX_BACKLOG",
    "MAX_TRICKLED",
    "PHASES",
    "PREFERENCE",
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
    "ReportProgress",
    "ReportResult",
    "S5BExchange",
    "Step",
    "TransportKind",
    "UsePicked",
    "WebRTCExchange",
    "accepted_range",
    "choose_transport",
    "kind_of",
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
    CONNECTING = "connecting"  # accepted with the data channel: ICE/DTLS/SCTP, trickling
    REPLACING = "replacing"  # S5B or the data channel failed: replacing it by IBB
    TRANSFERRING = "transferring"  # the transport is settled and data flows
    CLOSING = "closing"  # the data is through: waiting for the checksum or the end
    ENDED = "ended"  # a session-terminate was sent or received


class Step(Enum):
    """What moves a session from one phase to the next."""

    ACCEPTED = "accepted"  # session-accept sent or received
    CONNECT = "connect"  # the data channel's offer and answer are set: ICE starts
    FALLBACK = "fallback"  # no S5B candidate / no data channel: transport-replace to IBB
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
        (_P.NEGOTIATING, _S.CONNECT): _P.CONNECTING,
        (_P.CONNECTING, _S.DATA): _P.TRANSFERRING,
        (_P.CONNECTING, _S.FALLBACK): _P.REPLACING,
        # No (REPLACING, FALLBACK): a session is replaced once, by IBB; IBB failing ends it.
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
        _P.CONNECTING: _SETUP,
        _P.REPLACING: _SETUP,
        _P.TRANSFERRING: frozenset(),
        _P.CLOSING: frozenset(),
        _P.ENDED: frozenset(),
    }
)


#: Phases in which candidates trickled for the data channel (``transport-info``) are taken;
#: in any later phase they are answered and dropped (the data channel was given up).
TRICKLING: Final = frozenset({_P.OFFERED, _P.NEGOTIATING, _P.CONNECTING})

#: Candidates a peer may trickle in one session (Conversations sends one per
#: ``transport-info``: host, server-reflexive and relayed, IPv4 and IPv6, a dozen at most).
MAX_TRICKLED: Final = 64

TransportKind = Literal["webrtc", "s5b", "ibb"]
"""The transports of a session: the WebRTC data channel, SOCKS5 bytestreams, in-band."""

#: The order in which an initiator picks its transport (as Conversations does): the data
#: channel when both sides have it, else S5B, else IBB.
PREFERENCE: Final[tuple[TransportKind, ...]] = ("webrtc", "s5b", "ibb")

#: What a transport that cannot be set up is replaced with (``transport-replace``): always
#: IBB, through the servers. The data channel falls back to IBB, not S5B, as Conversations
#: does: S5B would reveal the addresses a relay-only user hides, would add a second
#: candidate exchange of its own (up to twice the negotiation timeout) after the failed
#: ICE, and is what already failed when both sides could not reach each other; IBB always
#: works where the signalling does. Never anything unencrypted: the JET secret of the
#: session stays the same. IBB failing ends the session.
FALLBACK_OF: Final[Mapping[TransportKind, TransportKind | None]] = MappingProxyType(
    {"webrtc": "ibb", "s5b": "ibb", "ibb": None}
)

_TAGS: Final[Mapping[str, TransportKind]] = MappingProxyType(
    {
        f"{{{WEBRTC_DATACHANNEL_NS}}}transport": "webrtc",
        f"{{{_ns.JINGLE_S5B}}}transport": "s5b",
        f"{{{_ns.JINGLE_IBB}}}transport": "ibb",
    }
)
_FEATURES: Final[Mapping[TransportKind, str]] = MappingProxyType(
    {"webrtc": WEBRTC_DATACHANNEL_NS, "s5b": _ns.JINGLE_S5B, "ibb": _ns.JINGLE_IBB}
)


class SessionStateError(TransferError):
    """A step the session's phase does not allow (a bug of the driver)."""


def kind_of(transport: etree._Element) -> TransportKind | None:
    """Which transport the element ``transport`` is (``None``: none we know)."""
    return _TAGS.get(str(transport.tag))


def choose_transport(
    asked: str, usable: Collection[TransportKind], advertises: Callable[[str], bool]
) -> TransportKind:
    """The transport an initiator offers: ``asked`` itself (``"webrtc"``, ``"s5b"`` or
    ``"ibb"``), or for ``"auto"`` the first of :data:`PREFERENCE` that we can use
    (``usable``) and the peer advertises (``advertises(feature)``). S5B is offered in
    ``"auto"`` even to a peer that does not advertise it (it falls back to IBB), as before
    the data channel existed. Raises :class:`TransportFailed` (``unsupported-transports``)
    for a transport asked for that either side lacks."""
    if asked == "auto":
        for kind in PREFERENCE:
            if kind in usable and (kind == "s5b" or advertises(_FEATURES[kind])):
                return kind
        return "ibb"
    if asked not in _FEATURES:
        raise ValueError(f"unknown transport {asked!r} (auto, webrtc, s5b or ibb)")
    kind = asked  # type: ignore[assignment]
    if kind not in usable:
        raise TransportFailed(f"the {kind} transport is not enabled here", "unsupported-transports")
    if kind == "webrtc" and not advertises(_FEATURES[kind]):
        raise TransportFailed(
            "the peer does not advertise the WebRTC data-channel transport",
            "unsupported-transports",
        )
    return kind


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
class ReportProgress:
    """Tell the application how far the data got: ``progress(done, total)``."""

    done: int
    total: int


@dataclass(frozen=True, slots=True)
class ReportResult:
    """Tell the application the outcome of a session that ended in success."""

    result: TransferResult


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


def parse_offer(
    msg: JingleMessage,
    cipher: Callable[[str | None], Cipher | None],
    transports: Collection[TransportKind] = ("s5b", "ibb"),
) -> Offer:
    """Validate a session-initiate as a single-file offer or request (XEP-0234) over one of
    ``transports`` (the data channel only when it is enabled here), with at most one
    ``<security/>`` (XEP-0391). ``cipher`` finds a cipher by URN
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
    if content.transport is None or kind_of(content.transport) not in transports:
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
        self._offered: etree._Element | None = None  # our transport in session-initiate
        self._reported = -1  # the bytes last reported as progress
        self._ending: Reason | None = None  # the reason of our session-terminate
        self._data_done = False  # every byte was sent or received
        self._transport: TransportKind | None = None
        self._trickled: list[etree._Element] = []  # the peer's candidates, not yet taken
        self.trickled = 0  # candidates the peer trickled in this session

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

    @property
    def transport(self) -> TransportKind | None:
        """The session's current transport (the offered one until it is replaced)."""
        if self._transport is None:
            for content in self.jingle.contents.values():
                if content.transport is not None:
                    self._transport = kind_of(content.transport)
                    break
        return self._transport

    def step(self, step: Step) -> Phase:
        """Move on by ``step`` (see :data:`PHASES`)."""
        try:
            self.phase = PHASES[(self.phase, step)]
        except KeyError:
            raise SessionStateError(f"{step.value} in phase {self.phase.value}") from None
        if step is Step.DATA_DONE:
            self._data_done = True
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
        if (found := _trickle_of(msg)) is not None:
            if not self._taking_trickle():
                return None  # answered, then dropped: the data channel was given up
            if self.trickled + _count_candidates(found) > MAX_TRICKLED:
                return ErrorReply(
                    "resource-constraint",
                    "cancel",
                    text=f"more than {MAX_TRICKLED} candidates trickled in this session",
                )
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
        if (found := _trickle_of(msg)) is not None:
            if self._taking_trickle():
                self.trickled += _count_candidates(found)
                self._trickled.append(found)
            else:
                log.debug("dropping a data-channel candidate from %s: not needed now", self.peer)
            return True
        self._arrived.append(msg)
        return True

    def _taking_trickle(self) -> bool:
        return self.phase in TRICKLING and self.transport == "webrtc"

    def pending(self, action: JingleAction) -> bool:
        """Whether a message with ``action`` (or a session-terminate) has arrived and is
        waiting to be asked for (a responder connecting the data channel stops as soon as
        the initiator's transport-replace or session-terminate is in)."""
        return any(m.action in (action, A.SESSION_TERMINATE) for m in (*self._kept, *self._arrived))

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
        self._offered = transport
        self._transport = kind_of(transport)
        return self.jingle.initiate([content])

    def accept(
        self, content: Content, description: etree._Element, transport: etree._Element
    ) -> JingleMessage:
        """The session-accept of the offered ``content`` with our ``transport``."""
        self.step(Step.ACCEPTED)
        self._transport = kind_of(transport)
        return self.jingle.accept(
            [Content(content.creator, content.name, content.senders, description, transport)]
        )

    def accepted(self, msg: JingleMessage) -> etree._Element:
        """The peer accepted our offer or request: its transport element (an IBB answer
        checked against our offer: :class:`TransportFailed` if it raised the block size)."""
        self.step(Step.ACCEPTED)
        theirs = transport_of(msg)
        if self._offered is not None and is_ibb(self._offered) and is_ibb(theirs):
            _agreed_block_size(parse_ibb(self._offered), parse_ibb(theirs))
        return theirs

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
        self._ending = reason
        self.step(Step.END)
        return msg

    # -- what the application is told -----------------------------------------------------

    def data_moved(self, done: int, total: int) -> ReportProgress | None:
        """``done`` of ``total`` bytes of the file moved: the progress to report, if any.
        Only while data flows (:attr:`Phase.TRANSFERRING`), never backwards nor beyond
        ``total``, and once per value: a late or repeated count reports nothing."""
        if self.phase is not Phase.TRANSFERRING or not self._reported < done <= total:
            return None
        self._reported = done
        return ReportProgress(done, total)

    def succeeded(self, direction: Literal["send", "receive"]) -> bool:
        """Whether the transfer succeeded (XEP-0234: the receiver ends the session with
        ``success`` once it verified the file). A sender: the peer's session-terminate said
        ``success``. A receiver: every byte arrived (it was verified before) and we did not
        end the session with another reason; a peer that ended the session after the last
        byte changes nothing (its end is moot, the file is whole)."""
        if direction == "send":
            return (
                self.peer_reason is not None
                and self.peer_reason.condition is ReasonCondition.SUCCESS
            )
        return self._data_done and (
            self._ending is None or self._ending.condition is ReasonCondition.SUCCESS
        )

    def result(
        self,
        direction: Literal["send", "receive"],
        *,
        name: str,
        size: int,
        sha256: str,
        transport: TransportName,
        envelope: str | None,
        cipher: str | None,
        seconds: float,
        path: Path,
        wire_bytes: int,
        verified: bool,
        choice: str,
        reused_bytes: int = 0,
    ) -> ReportResult:
        """The result to report, built in this one place; only for a transfer that
        :meth:`succeeded` (:class:`SessionStateError` otherwise: a bug of the driver)."""
        if not self.succeeded(direction):
            raise SessionStateError(
                f"a result of a transfer that did not succeed ({direction}, phase "
                f"{self.phase.value})"
            )
        return ReportResult(
            TransferResult(
                direction=direction,
                peer=self.peer,
                name=name,
                size=size,
                sha256=sha256,
                transport=transport,
                envelope=envelope,
                cipher=cipher,
                seconds=seconds,
                path=path,
                wire_bytes=wire_bytes,
                hash_verified=verified,
                choice=choice,
                reused_bytes=reused_bytes,
            )
        )

    def checksum_info(self, hashes: tuple[Hash, ...]) -> JingleMessage | None:
        """The ``<checksum/>`` session-info with the hashes of the data just sent (announced
        with ``<hash-used/>`` in the offer), or ``None`` if the session has ended already."""
        if self.jingle.state is SessionState.ENDED:
            return None
        contents = self.jingle.contents
        content = next(iter(contents.values()), None)
        creator, name = (content.creator, content.name) if content else (None, CONTENT_NAME)
        return self.jingle.info(build_checksum(Checksum(creator, name, hashes)))

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
        self._drop_trickle()
        offer = IBBTransport(new_sid(), block_size)
        return self.jingle.transport_replace([self._content(build_ibb(offer))]), offer

    def _drop_trickle(self) -> None:
        self._transport = "ibb"
        self._trickled.clear()

    # -- the WebRTC data channel -----------------------------------------------------------

    def webrtc(self, theirs: etree._Element) -> WebRTCExchange:
        """The data-channel exchange with the peer's offer or answer ``theirs``."""
        return WebRTCExchange(self, WebRTCExchange.parse(theirs))

    def trickle(self, local: WebRTCTransportInfo) -> list[JingleMessage]:
        """Our candidates, one ``transport-info`` each, as Conversations trickles them (it
        ignores candidates inside ``session-initiate`` and ``session-accept``)."""
        return [self.transport_info(el) for el in trickle_infos(local)]

    def replace_answered(self, answer: JingleMessage, offer: IBBTransport) -> IBBTransport:
        """The IBB transport agreed by the peer's transport-accept of our ``offer``; raises
        :class:`TransportFailed` for a transport-reject or a raised block size."""
        if answer.action is A.TRANSPORT_REJECT or not answer.contents:
            raise TransportFailed(f"{self.peer} refused the IBB fallback", "failed-transport")
        got = parse_ibb(transport_of(answer))
        return IBBTransport(offer.sid, _agreed_block_size(offer, got))

    def replace_received(
        self, replace: JingleMessage, our_block_size: int
    ) -> tuple[IBBTransport, JingleMessage]:
        """The peer replaced the failed transport by IBB: the agreed transport (open it
        before answering) and our transport-accept."""
        self.step(Step.FALLBACK)
        self._drop_trickle()
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


def _agreed_block_size(offer: IBBTransport, answer: IBBTransport) -> int:
    """The block size the responder answered to our IBB ``offer`` (XEP-0261: it may lower it,
    never raise it): the one check for a session-accept and a fallback's transport-accept."""
    try:
        return check_answered_block_size(offer.block_size, answer.block_size)
    except IBBError as exc:
        raise TransportFailed(f"the peer {exc}", "failed-transport") from None


def _trickle_of(msg: JingleMessage) -> etree._Element | None:
    """The data-channel transport of a ``transport-info`` (``None``: it is no trickle)."""
    if msg.action is not A.TRANSPORT_INFO:
        return None
    for content in msg.contents:
        if content.transport is not None and kind_of(content.transport) == "webrtc":
            return content.transport
    return None


def _count_candidates(transport: etree._Element) -> int:
    return sum(1 for el in transport.iter() if etree.QName(el).localname == "candidate")


class WebRTCExchange:
    """The WebRTC data-channel negotiation of one session (Conversations' dialect), without
    I/O.

    The offer and the answer travel without candidates (:meth:`element`); each side's
    candidates follow in ``transport-info`` (:meth:`FileSession.trickle`), which the session
    takes while the data channel is being set up (:data:`TRICKLING`, at most
    :data:`MAX_TRICKLED`) and :meth:`candidates` hands over, validated against the peer's
    ICE credentials. :meth:`connecting` starts ICE (phase CONNECTING); when the connection
    cannot be made, :meth:`failed` says what follows: a transport-replace by IBB
    (:class:`FallBack`), or, for a DTLS failure (a certificate that is not the one the
    signalling announced: a man in the middle), the end of the session with a security
    error and no fallback.
    """

    def __init__(self, session: FileSession, remote: WebRTCTransportInfo) -> None:
        self.session = session
        self.remote = remote

    @staticmethod
    def parse(theirs: etree._Element) -> WebRTCTransportInfo:
        """The peer's offer or answer; :class:`TransportFailed` if it is malformed."""
        try:
            return parse_webrtc(theirs)
        except WebRTCElementError as exc:
            raise TransportFailed(
                f"the peer's data-channel transport is malformed: {exc}", "failed-transport"
            ) from None

    @staticmethod
    def element(local: WebRTCTransportInfo) -> etree._Element:
        """Our offer or answer as sent in ``session-initiate``/``session-accept``: without
        candidates, which follow in ``transport-info``."""
        return build_webrtc(replace(local, candidates=()))

    def connecting(self) -> None:
        """Both descriptions are set: ICE starts (NEGOTIATING → CONNECTING)."""
        self.session.step(Step.CONNECT)

    def candidates(self) -> tuple[IceCandidate, ...]:
        """The peer's candidates trickled since the last call (in arrival order), checked
        against its ICE credentials; :class:`TransportFailed` for a malformed one."""
        found: list[IceCandidate] = []
        trickled, self.session._trickled = self.session._trickled, []
        for el in trickled:
            try:
                found.extend(parse_trickle(el, self.remote))
            except WebRTCElementError as exc:
                raise TransportFailed(
                    f"{self.session.peer} trickled a malformed candidate: {exc}",
                    "failed-transport",
                ) from None
        return tuple(found)

    def failed(self, exc: Exception) -> FallBack:
        """The data channel could not be set up (``exc``): fall back by transport-replace
        (:data:`FALLBACK_OF`), unless DTLS failed, which raises :class:`EncryptionFailed`."""
        if isinstance(exc, SecurityError):
            raise EncryptionFailed(
                f"the data channel to {self.session.peer} is not authenticated: {exc}; "
                "no fallback (a DTLS certificate other than the announced one is a man in "
                "the middle)",
                "security-error",
            ) from exc
        log.info("data channel to %s failed (%s): replacing it by IBB", self.session.peer, exc)
        return FallBack()
