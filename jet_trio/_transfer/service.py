"""Jingle file transfer sessions on a client: offers, S5B/IBB transports, JET encryption.

The Jingle state machine, the file-transfer codec, the transports and the JET stream wrappers
are sans-IO or self-contained; this module is the trio shell that wires them to the client.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import time
import warnings
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import trio
from lxml import etree

from .._errors import JetError, SecurityError
from .._jet.cipher import Cipher, TransportSecret
from .._jet.element import build_security, parse_security
from .._jet.envelope import EnvelopeMethod, check_envelope_sender
from .._jingle.machine import JingleSession, SessionRegistry, SessionState, new_sid
from .._jingle.message import (
    Content,
    ErrorReply,
    JingleAction,
    JingleMessage,
    JingleProtocolError,
    Reason,
    ReasonCondition,
    Role,
    build_error,
    find_jingle,
    parse_jingle,
)
from .._plugins.hookspecs import PluginConfig
from .._plugins.manager import PluginManager
from .._transports.ibb import IBBError, IBBStream, IBBTransport, open_ibb_stream
from .._transports.ibb import build_transport as build_ibb
from .._transports.ibb import parse_transport as parse_ibb
from .._transports.s5b import (
    Candidate,
    CandidateConnectError,
    S5BTransport,
    StreamHost,
    build_activate,
    build_streamhost_query,
    connect_any,
    connect_candidate,
    parse_streamhosts,
)
from .._transports.s5b import build_transport as build_s5b
from .._transports.s5b import parse_transport as parse_s5b
from .._transports.s5b_direct import DirectAddresses, DirectCandidates, open_direct_candidates
from .._transports.socks5 import Socks5Error, dstaddr
from .._trio_util import unwrapped_errors
from .._xmpp import ns as _ns
from .._xmpp.client import Client
from .._xmpp.disco import DiscoInfo
from .._xmpp.jid import JID
from .._xmpp.stanza import IQ, E, StanzaError, make_iq, make_result, stanza_from
from .description import (
    FileDescription,
    FileTransferError,
    Range,
    build_description,
    file_not_available,
    safe_filename,
)
from .driver import (
    Digests,
    Established,
    Pace,
    SessionShell,
    _within,
    _within_or_never,
    receive_into,
    send_data,
)
from .files import HashCache, Partial, deliver, find_partials, lock_part, unique_name
from .hashes import Hash
from .reasons import cut_short, error_for, leaves, reason_for
from .session import (
    CONTENT_NAME,
    REQUEST_NAME,
    AcceptDirect,
    ActivateProxy,
    AwaitActivated,
    FallBack,
    FileSession,
    KeptDownload,
    Offer,
    UsePicked,
    accepted_file,
    accepted_range,
    is_ibb,
    offers_ranges,
    parse_offer,
    refusal_reason,
    resume_offset,
)
from .types import (
    IntegrityError,
    JETError,
    NameTaken,
    ProgressCallback,
    TransferDeclined,
    TransferError,
    TransferResult,
    TransportName,
)

__all__ = ["FileTransfer", "IncomingOffer", "envelope_strength", "open_file_transfer"]

log = logging.getLogger("jet_trio.transfer")

_JINGLE: Final = f"{{{_ns.JINGLE}}}jingle"
_IBB_TAGS: Final = tuple(f"{{{_ns.IBB}}}{n}" for n in ("open", "data", "close"))
DEFAULT_CIPHER: Final = _ns.CIPHER_AES256_GCM
_STANDARD_CIPHERS: Final = frozenset({_ns.CIPHER_AES128_GCM, _ns.CIPHER_AES256_GCM})
Transport = Literal["auto", "s5b", "ibb"]
DEFAULT_ACCEPT_TIMEOUT: Final = 300.0
"""Seconds a sender waits for the receiver to accept or decline (a person deciding)."""


class _Default:
    """The type of a "use the service's setting" default."""


_DEFAULT: Final = _Default()


class IncomingOffer:
    """A file offered to us. :meth:`accept` to receive it, or :meth:`reject`.

    ``peer`` is the sender's full JID, ``file`` the description (``file.name`` is the name the
    peer proposed; the accepted file is stored under :attr:`safe_name`, see :meth:`target`),
    ``envelope`` the JET envelope namespace (``None``: unencrypted), ``cipher`` the cipher URN.

    Every offer gets an answer: one that is garbage-collected unanswered, or still unanswered
    when its :func:`open_file_transfer` block ends, is rejected (``decline``) with a warning
    logged; the sender also stops waiting after its ``accept_timeout``.
    """

    def __init__(
        self,
        service: FileTransfer,
        session: SessionShell,
        offer: Offer,
        envelope: str | None,
        cipher: str | None,
    ):
        self._service = service
        self._session = session
        self._offer = offer
        self.peer = session.peer
        self.file = offer.file
        self.envelope = envelope
        self.cipher = cipher
        self._answered = False
        self._expiry = trio.CancelScope()  # cancelled once the application takes the offer
        service._unanswered.add(self)

    def __del__(self) -> None:
        if getattr(self, "_answered", True):
            return
        service = self._service
        log.warning(
            "an offer of %r from %s was dropped without an answer: rejecting it",
            self.name,
            self.peer,
        )
        with contextlib.suppress(RuntimeError, trio.RunFinishedError):
            service._token.run_sync_soon(service._refuse_soon, self._session)

    @property
    def safe_name(self) -> str:
        """The name the file gets inside a directory: :attr:`~jet_trio.IncomingOffer.name`
        without any directory part, control characters or surrounding blanks, within 255
        bytes."""
        return safe_filename(self.name)

    def target(self, destination: str | os.PathLike[str], *, rename: bool = False) -> Path:
        """The path :meth:`accept` with these arguments would store the file at, were it
        accepted now: ``destination/safe_name`` for a directory, else ``destination`` itself;
        with ``rename=True`` the first of ``name (1).ext``, ``name (2).ext``... that is free if
        the name is taken. (A quick blocking ``stat``: another program may still take the name
        before the transfer ends; :meth:`accept` never replaces it then.)"""
        dest = Path(destination)
        if dest.is_dir():
            dest = dest / self.safe_name
        if rename:
            n = 0
            while os.path.lexists(dest if n == 0 else dest.with_name(unique_name(dest.name, n))):
                n += 1
            dest = dest if n == 0 else dest.with_name(unique_name(dest.name, n))
        return dest

    @property
    def name(self) -> str:
        """The file name the sender gave, as it gave it (may contain a directory part or
        control characters: store under :attr:`safe_name`)."""
        return self.file.name or "unnamed"

    @property
    def size(self) -> int:
        """The size the sender announced, in bytes (0 when it gave none)."""
        return self.file.size or 0

    @property
    def encrypted(self) -> bool:
        """Whether the offer is end-to-end encrypted (JET)."""
        return self.envelope is not None

    def __repr__(self) -> str:
        enc = f", encrypted with {self.envelope}" if self.envelope else ""
        return f"<IncomingOffer {self.name!r} ({self.size} bytes) from {self.peer}{enc}>"

    async def reject(self, reason: str = "decline", text: str | None = None) -> None:
        """Decline the offer."""
        self._check_unanswered()
        await self._end(reason, text)

    def _check_unanswered(self) -> None:
        if self._answered:
            raise TransferError("this offer was already accepted or rejected", "general-error")
        self._answered = True
        self._service._unanswered.discard(self)

    async def _end(self, reason: str, text: str | None) -> None:
        await self._session.terminate(reason, text)
        self._service._forget(self._session)

    async def accept(
        self,
        destination: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
        overwrite: bool = False,
        rename: bool = False,
        resume: bool = True,
    ) -> TransferResult:
        """Receive the file into ``destination`` (a directory, or the file path to create).

        Data goes to a temporary file beside the target; only after the size, the hash and (for
        JET) the GCM tag verified is it given the target name, with an operation that fails if
        the name exists: nothing is ever replaced unless ``overwrite=True`` (then atomically).
        ``rename=True`` stores it under the first free ``name (1).ext``, ``name (2).ext``... if
        the name is taken, when accepting or when the transfer ends. Without either, a name
        taken when accepting raises :class:`FileExistsError`, and a name taken during the
        transfer raises :class:`NameTaken` (the verified file is kept under a unique name).

        Any error answers the offer: the session is terminated with a reason the sender sees
        (an :class:`OSError` here, ``FileExistsError`` included: ``failed-application``); the
        offer cannot be accepted again. Cancelling (through a cancel scope) terminates the
        session with ``cancel``.

        An interrupted download is kept beside the target (unless its data is known bad).
        With ``resume=True``, when this offer is of a file kept so (the same sender account,
        name, size and, where both say one, SHA-256) and the sender honours ranges, only the
        rest is asked for (XEP-0234 ranged transfer, under the fresh transport secret of this
        session) and appended to it; the whole file is then verified against the offered hash,
        or the ``<checksum/>`` sent after the data, before it gets its name.
        :attr:`TransferResult.reused_bytes` says how much was kept. ``resume=False`` receives
        the whole file again. When the sender
        already has ``max_transfers_per_peer`` transfers running here, the offer is refused
        with ``busy`` and :class:`TransferDeclined` raised.
        """
        self._check_unanswered()
        try:
            if (withdrawn := self._session.machine.ended_by_peer()) is not None:
                raise error_for(withdrawn, str(self.peer))  # e.g. its accept_timeout
            dest = await trio.to_thread.run_sync(
                lambda: self.target(destination, rename=rename and not overwrite)
            )
            # With ``rename`` the name was free a moment ago; if something takes it before
            # the file is stored, the next free one is used then (never an error here).
            if not (overwrite or rename) and await trio.to_thread.run_sync(os.path.lexists, dest):
                raise FileExistsError(
                    errno.EEXIST,
                    f"{dest} already exists (pass overwrite=True to replace it, or "
                    "rename=True to store the file under a free name)",
                )
        except BaseException as exc:
            # Not accepted after all: answer the offer, so the sender is not left waiting.
            if isinstance(exc, FileExistsError):
                reason, text = "failed-application", f"{self.safe_name} already exists here"
            elif any(isinstance(e, trio.Cancelled) for e in leaves(exc)):
                reason, text = "cancel", None
            else:
                reason, text = reason_for(exc)
                text = f"the offer could not be accepted: {text}" if text else None
            await self._end(reason, text)
            raise
        service = self._service
        if not service._start_transfer(self._session):
            text = f"{self.peer.bare} has {service._max_transfers_per_peer} transfers running"
            await self._end("busy", text)
            raise TransferDeclined(f"refused {self.name!r}: {text}", "busy")
        return await service._run_receive(
            self, dest, progress, overwrite=overwrite, rename=rename, resume=resume
        )


@dataclass(frozen=True, slots=True)
class ServedRequest:
    """A request for a shared file, once served (``error`` is ``None``) or failed: what
    :meth:`FileTransfer.share`'s ``on_served`` callback is given."""

    peer: JID
    """Who requested it."""
    name: str
    """The shared file's name."""
    sha256: str
    """Its SHA-256, in hex."""
    offset: int
    """Where the requested range starts."""
    length: int
    """How many bytes were requested."""
    error: Exception | None = None
    """Why serving it failed, or ``None``."""


class FileTransfer:
    """Send and receive files over Jingle on one client; make one with
    :func:`open_file_transfer`."""

    def __init__(
        self,
        client: Client,
        nursery: trio.Nursery,
        plugins: PluginManager,
        direct: DirectCandidates | None,
        *,
        use_proxies: bool,
        ibb_block_size: int,
        ibb_window: int,
        cipher_preference: Sequence[str],
        negotiation_timeout: float,
        stall_timeout: float | None,
        max_pending_offers: int,
        max_offers_per_peer: int = 4,
        max_transfers_per_peer: int = 4,
        offer_timeout: float | None = 120.0,
        min_throughput: float | None = None,
        throughput_window: float = 60.0,
        accept_timeout: float | None = DEFAULT_ACCEPT_TIMEOUT,
    ) -> None:
        self.client = client
        self.plugins = plugins
        self._nursery = nursery
        self._direct = direct
        self._listener = direct.listener if direct is not None else None
        self._use_proxies = use_proxies
        self._ibb_block_size = ibb_block_size
        self._ibb_window = ibb_window
        self._cipher_preference = tuple(cipher_preference)
        self._timeout = negotiation_timeout
        self._stall_timeout = stall_timeout
        self._pace = Pace(stall_timeout, min_throughput, throughput_window)
        self._accept_timeout = accept_timeout
        self._token = trio.lowlevel.current_trio_token()
        self._unanswered: weakref.WeakSet[IncomingOffer] = weakref.WeakSet()
        self._registry = SessionRegistry(client.jid)
        self._sessions: dict[tuple[JID, str], SessionShell] = {}
        self._ibb: dict[tuple[JID, str], IBBStream] = {}
        self._max_pending_offers = max_pending_offers
        self._max_offers_per_peer = max_offers_per_peer
        self._max_transfers_per_peer = max_transfers_per_peer
        self._offer_timeout = offer_timeout
        self._min_throughput = min_throughput
        self._throughput_window = throughput_window
        self._queue: deque[IncomingOffer] = deque()
        self._queued = trio.Event()  # set when an offer is queued or the service closes
        self._closed = False
        self._offers_of: Counter[JID] = Counter()  # unanswered offers per bare JID
        self._transfers_of: Counter[JID] = Counter()  # transfers running per bare JID
        self._proxies: list[StreamHost] | None = None
        self._hashes = HashCache()
        self._shares: dict[bytes, tuple[Path, frozenset[JID] | None]] = {}
        #: share(on_served=): told of each request served or failed, per shared file.
        self._served: dict[bytes, Callable[[ServedRequest], None]] = {}

    # -- features and handlers -------------------------------------------------------------

    @property
    def features(self) -> list[str]:
        """The disco features this service advertises."""
        feats = [_ns.JINGLE, _ns.JINGLE_FT, _ns.JINGLE_IBB, _ns.IBB, _ns.HASH_SHA256]
        if self._listener is not None or self._use_proxies:
            feats += [_ns.JINGLE_S5B, _ns.BYTESTREAMS]
        if self.plugins.envelopes:
            feats.append(_ns.JET)
            feats += [c.urn for c in self.plugins.ciphers]  # so peers can pick a common cipher
        return feats + self.plugins.disco_features()

    def _install(self) -> None:
        self.client.register_inline_iq_handler("set", _JINGLE, self._on_jingle)
        for tag in _IBB_TAGS:
            self.client.register_inline_iq_handler("set", tag, self._on_ibb)
        self._unwatch_presence = self.client.on_presence(self._on_presence)

    def _on_presence(self, presence: etree._Element) -> None:
        """A peer going offline ends its sessions (``gone``): otherwise a receiver would wait
        forever for in-band data, or a sender for an answer, that can no longer come."""
        if presence.get("type") != "unavailable":
            return
        with contextlib.suppress(JetError):
            gone = stanza_from(presence)
            reason = Reason(ReasonCondition.GONE, "the peer went offline")
            for peer, sid in [k for k in self._sessions if k[0] == gone]:
                msg = JingleMessage(JingleAction.SESSION_TERMINATE, sid, reason=reason)
                self._deliver(peer, sid, msg)

    async def _reject_unanswered(self) -> None:
        """Answer every offer still open when the service ends (queued or held by the
        application), so that no sender is left waiting."""
        # Every offer is in ``_unanswered`` from its creation (queued ones are kept alive by the
        # queue): take strong references before the queue lets go of them.
        offers = [o for o in self._unanswered if not o._answered]
        self._queue.clear()
        if not offers:
            return
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as n:
                for offer in offers:
                    log.warning(
                        "the offer of %r from %s was not answered before the file transfer "
                        "service ended: rejecting it",
                        offer.name,
                        offer.peer,
                    )
                    offer._check_unanswered()
                    n.start_soon(offer._end, "decline", "the receiver stopped receiving files")

    def _uninstall(self) -> None:
        self._unwatch_presence()
        self.client.unregister_iq_handler("set", _JINGLE)
        for tag in _IBB_TAGS:
            self.client.unregister_iq_handler("set", tag)
        self._closed = True
        self._queued.set()
        for session in self._sessions.values():
            session.deliver(None)

    async def _reply_error(self, iq: etree._Element, error: etree._Element) -> None:
        reply = E(IQ, {"type": "error", "id": iq.get("id"), "to": iq.get("from")})
        reply.append(error)
        with contextlib.suppress(JetError):
            await self.client.send(reply)

    async def _on_jingle(self, iq: etree._Element) -> None:
        sender = stanza_from(iq) or self.client.jid.bare
        jingle = find_jingle(iq)
        assert jingle is not None
        try:
            msg = parse_jingle(jingle, sender)
        except JingleProtocolError as exc:
            await self._reply_error(iq, build_error(exc.reply))
            return
        # Before the session's state machine sees it: a refused message changes nothing.
        refusal = self._refusal(sender, msg)
        if refusal is not None:
            await self._reply_error(iq, build_error(refusal))
            return
        incoming = self._registry.receive(msg, sender)
        if incoming.error is not None:
            await self._reply_error(iq, build_error(incoming.error))
            return
        if incoming.superseded is not None:
            self._deliver(incoming.superseded.peer, incoming.superseded.sid, None)
        if incoming.is_new_session and incoming.session is not None:
            self._new_incoming(incoming.session, msg)
        else:
            self._deliver(sender, msg.sid, msg)
        # Answered after delivering, so that the message is in the session's inbox before
        # anything the peer does once it has our answer (closing the bytestream, say) can be
        # seen here. send() queues the answer before it first yields: it still goes out
        # before whatever the session sends in response.
        await self.client.send(make_result(iq))

    def _refusal(self, peer: JID, msg: JingleMessage) -> ErrorReply | None:
        """Why a message for an existing session is answered with an error instead of being
        kept for it (see :meth:`FileSession.refusal`)."""
        session = self._sessions.get((peer, msg.sid))
        return None if session is None else session.machine.refusal(msg)

    def _deliver(self, peer: JID, sid: str, msg: JingleMessage | None) -> None:
        session = self._sessions.get((peer, sid))
        if session is not None:
            session.deliver(msg)  # None: lost a tie-break, no more messages come

    def _new_incoming(self, jingle: JingleSession, msg: JingleMessage) -> None:
        session = self._open_session(jingle)
        try:
            offer = parse_offer(msg, self._cipher_if_known)
            busy = self._over_quota(session.peer.bare, request=offer.request)
            if busy is not None:
                self._nursery.start_soon(self._refuse, session, "busy", busy)
                return
            if offer.request:
                self._start_transfer(session)
                self._nursery.start_soon(self._serve_request, session, offer)
                return
            envelope = cipher = None
            if offer.security is not None:
                envelope = offer.security.get("type")
                cipher = offer.security.get("cipher")
            self._enqueue(IncomingOffer(self, session, offer, envelope, cipher))
        except (FileTransferError, JingleProtocolError, TransferError) as exc:
            self._nursery.start_soon(self._refuse, session, refusal_reason(exc), str(exc))

    # -- offers waiting for the application, and per-peer quotas ---------------------------

    def _over_quota(self, peer: JID, *, request: bool) -> str | None:
        """Why a new session from ``peer`` (a bare JID) is refused with ``busy``, if it is."""
        if self._transfers_of[peer] >= self._max_transfers_per_peer:
            return f"too many transfers from {peer} at once"
        if request:
            return None
        if self._offers_of[peer] >= self._max_offers_per_peer:
            return f"too many offers from {peer} waiting for an answer"
        if len(self._queue) >= self._max_pending_offers:
            return "too many pending offers"
        return None

    def _enqueue(self, offer: IncomingOffer) -> None:
        session = offer._session
        session.quota = "offer"
        self._offers_of[session.peer.bare] += 1
        self._queue.append(offer)
        self._queued.set()
        if self._offer_timeout is not None:
            self._nursery.start_soon(self._expire, offer, self._offer_timeout)

    async def _expire(self, offer: IncomingOffer, seconds: float) -> None:
        """Refuse ``offer`` (reason ``timeout``) if the application has not taken it within
        ``seconds``: a queued offer never holds its place, nor its sender, for ever."""
        with offer._expiry:
            await trio.sleep(seconds)
            if offer in self._queue and not offer._answered:
                self._queue.remove(offer)
                offer._answered = True
                self._unanswered.discard(offer)
                self._release_quota(offer._session)  # its place is free at once
                await self._refuse(
                    offer._session, "timeout", f"the offer was not answered within {seconds:g} s"
                )

    def _start_transfer(self, session: SessionShell) -> bool:
        """Count ``session`` as a running transfer of its peer (no longer as an offer);
        ``False`` if the peer already has as many as it may."""
        peer = session.peer.bare
        if session.quota == "offer":
            self._offers_of[peer] -= 1
            session.quota = None
        if session.quota is None:
            if self._transfers_of[peer] >= self._max_transfers_per_peer:
                return False
            self._transfers_of[peer] += 1
            session.quota = "transfer"
        return True

    def _release_quota(self, session: SessionShell) -> None:
        peer = session.peer.bare
        counter = {"offer": self._offers_of, "transfer": self._transfers_of}.get(
            session.quota or ""
        )
        if counter is not None:
            counter[peer] -= 1
            if counter[peer] <= 0:
                del counter[peer]
        session.quota = None

    def _refuse_soon(self, session: SessionShell) -> None:
        """Decline a dropped offer (called soon after its garbage collection)."""
        with contextlib.suppress(RuntimeError):  # the service ended (and answered its offers)
            self._nursery.start_soon(
                self._refuse, session, "decline", "the offer was dropped without an answer"
            )

    async def _refuse(self, session: SessionShell, reason: str, text: str) -> None:
        log.info("refusing offer from %s: %s", session.peer, text)
        await session.terminate(reason, text)
        self._forget(session)

    def _cipher_if_known(self, urn: str | None) -> Cipher | None:
        try:
            return self.plugins.cipher((urn or "").strip())
        except SecurityError:
            return None  # refused when the envelope is opened, with its own reason

    async def _on_ibb(self, iq: etree._Element) -> None:
        sender = stanza_from(iq)
        payload = iq[0]
        stream = self._ibb.get((sender, payload.get("sid", ""))) if sender else None
        if stream is None:
            raise StanzaError("item-not-found", "cancel", "no such in-band bytestream")
        try:
            ack = stream.feed(payload)
        except IBBError as exc:
            raise StanzaError(exc.condition, exc.error_type, str(exc)) from None
        if ack.is_set():
            await self.client.send(make_result(iq))
        else:
            self._nursery.start_soon(self._ack_later, ack, iq)

    async def _ack_later(self, ack: trio.Event, iq: etree._Element) -> None:
        await ack.wait()
        with contextlib.suppress(JetError):
            await self.client.send(make_result(iq))

    # -- sessions --------------------------------------------------------------------------

    def _open_session(self, jingle: JingleSession) -> SessionShell:
        session = SessionShell(self.client, self._timeout, FileSession(jingle))
        self._sessions[(jingle.peer, jingle.sid)] = session
        return session

    def _forget(self, session: SessionShell) -> None:
        self._sessions.pop((session.peer, session.jingle.sid), None)
        session.machine.close(drop=True)
        session.deliver(None)
        self._release_quota(session)
        if self._listener is not None:
            for dst in session.listening:
                self._listener.forget(dst)
        session.listening.clear()

    async def incoming(self) -> AsyncIterator[IncomingOffer]:
        """Offers as they arrive: ``async for offer in ft.incoming(): ...``."""
        while True:
            try:
                offer = await self.next_offer()
            except trio.EndOfChannel:
                return
            yield offer

    async def next_offer(self) -> IncomingOffer:
        """Wait for the next offer (the oldest one queued). Offers not taken within the
        service's ``offer_timeout`` are refused on their own; raises
        :class:`trio.EndOfChannel` once the service is closing."""
        while not self._queue:
            if self._closed:
                raise trio.EndOfChannel
            if self._queued.is_set():
                self._queued = trio.Event()
            await self._queued.wait()
        offer = self._queue.popleft()
        offer._expiry.cancel()
        return offer

    # -- choosing peers, envelopes, ciphers ------------------------------------------------

    async def resolve_peer(self, to: JID | str) -> JID:
        """``to`` if it is a full JID, else the available resource of it that supports file
        transfer (most recently seen first)."""
        jid = JID(to)
        if not jid.is_bare:
            return jid
        for full in reversed(self.client.resources(jid)):
            with contextlib.suppress(JetError):
                if (await self._features_of(full)).has(_ns.JINGLE_FT):
                    return full
                # The caps we saw may predate the peer enabling file transfer: ask afresh.
                with _within(self._timeout, f"{full} did not answer our disco#info"):
                    fresh = await self.client.disco(full)
                if fresh.has(_ns.JINGLE_FT):
                    return full
        raise TransferError(
            f"{jid} has no available resource that supports Jingle file transfer", "gone"
        )

    async def _features_of(self, peer: JID) -> DiscoInfo:
        """What ``peer`` supports (its caps, or a disco#info query bounded by the timeout)."""
        with _within(self._timeout, f"{peer} did not say what it supports"):
            return await self.client.features_of(peer)

    async def _choose_envelope(
        self, peer: JID, encrypt: str | None
    ) -> tuple[EnvelopeMethod | None, str]:
        """The envelope method to use and why: ``encrypt`` itself, or for ``"auto"`` the
        strongest one (:func:`envelope_strength`) that the peer advertises, the earliest
        installed on a tie."""
        if encrypt is None:
            return None, "not encrypted: encrypt=None"
        if encrypt != "auto":
            return self.plugins.envelope(encrypt), "envelope asked for"
        try:
            info = await self._features_of(peer)
        except StanzaError as exc:
            raise TransferError(f"cannot ask {peer} what it supports: {exc}", "gone") from None
        common = [m for m in self.plugins.envelopes if info.has(*m.features)]
        if common:
            best = max(common, key=envelope_strength)  # max keeps the first of equals
            others = [m.namespace for m in common if m is not best]
            why = f"the strongest envelope {peer} advertises"
            if others:
                why += f" (also common: {', '.join(others)})"
            return best, why
        raise JETError(
            f"{peer} supports none of our JET envelope methods "
            f"({', '.join(m.namespace for m in self.plugins.envelopes) or 'none loaded'}); "
            "pass encrypt=None to send unencrypted",
            "unsupported-applications",
        )

    # -- transports ------------------------------------------------------------------------

    async def _proxy_hosts(self) -> list[StreamHost]:
        if not self._use_proxies:
            return []
        if self._proxies is None:
            found: list[StreamHost] = []
            with trio.move_on_after(self._timeout):
                for item in await self.client.disco_items(self.client.jid.domain):
                    with contextlib.suppress(JetError):
                        if (await self.client.disco(item.jid)).has(_ns.BYTESTREAMS):
                            answer = await self.client.request(
                                "get", build_streamhost_query(), item.jid
                            )
                            if answer is not None:
                                found.extend(parse_streamhosts(answer))
            self._proxies = found
        return self._proxies

    async def _our_s5b(self, session: SessionShell, sid: str) -> S5BTransport:
        me = self.client.jid
        dst = dstaddr(sid, me, session.peer)
        candidates: list[Candidate] = []
        if self._direct is not None:
            self._direct.listener.expect(dst)
            session.listening.append(dst)  # forgotten (unused connections closed) at the end
            candidates.extend(self._direct.candidates(me))
        for i, host in enumerate(await self._proxy_hosts()):
            candidates.append(host.to_candidate(new_sid(), 100 - i))
        return S5BTransport(sid, dst, candidates=tuple(candidates))

    async def _establish_s5b(
        self,
        session: SessionShell,
        ours: etree._Element,
        theirs: etree._Element,
        cleanup: contextlib.AsyncExitStack,
    ) -> Established | None:
        """Run the candidate exchange (XEP-0260) the session's machine decides; ``None``
        when no candidate worked on either side."""
        exchange = session.machine.s5b(ours, theirs)
        peer = session.peer
        picked: trio.SocketStream | None = None
        connected = trio.Event()

        async def connect_theirs() -> None:
            nonlocal picked
            used: Candidate | None = None
            if (connect := exchange.connect()) is not None:
                try:
                    used, picked = await connect_any(connect.candidates, connect.dstaddr)
                    cleanup.push_async_callback(trio.aclose_forcefully, picked)
                except (CandidateConnectError, Socks5Error) as exc:
                    log.info("S5B: no candidate of %s worked: %s", peer, exc)
            await session.send(exchange.connected(used))
            connected.set()

        with (
            _within(self._timeout * 2, f"{peer} did not finish the SOCKS5 candidate exchange"),
            unwrapped_errors(),
        ):
            async with trio.open_nursery() as n:
                n.start_soon(connect_theirs)
                while not exchange.take(await session.expect(JingleAction.TRANSPORT_INFO)):
                    pass
                await connected.wait()
        command = exchange.decide()
        if isinstance(command, FallBack):
            return None
        if isinstance(command, ActivateProxy):
            cand = command.candidate
            with _within(self._timeout, f"the SOCKS5 proxy {cand.jid} did not connect us"):
                stream: trio.abc.Stream = await connect_candidate(
                    cand.host, cand.port, command.dstaddr
                )
            cleanup.push_async_callback(trio.aclose_forcefully, stream)
            with _within(self._timeout, f"the SOCKS5 proxy {cand.jid} did not activate"):
                await self.client.request("set", build_activate(command.sid, peer), cand.jid)
            await session.send(exchange.activated(cand))
            return Established(stream, command.transport, cleanup)
        if isinstance(command, AcceptDirect):
            assert self._listener is not None
            with _within(self._timeout, f"{peer} did not connect to our candidate"):
                stream = await self._listener.accept(command.dstaddr, command.candidate.host)
            cleanup.push_async_callback(trio.aclose_forcefully, stream)
            return Established(stream, command.transport, cleanup)
        assert picked is not None and isinstance(command, AwaitActivated | UsePicked)
        if isinstance(command, AwaitActivated):
            with _within(self._timeout, f"{peer} did not activate the SOCKS5 proxy"):
                while not exchange.take_activated(
                    await session.expect(JingleAction.TRANSPORT_INFO)
                ):
                    pass
        return Established(picked, command.transport, cleanup)

    async def _open_ibb(
        self,
        session: SessionShell,
        transport: IBBTransport,
        opener: bool,
        cleanup: contextlib.AsyncExitStack,
    ) -> Established:
        peer = session.peer
        client = self.client

        class Sender:
            async def send_iq(self, payload: etree._Element) -> etree._Element:
                return await client.iq(make_iq("set", payload, to=peer))

        stream = await cleanup.enter_async_context(
            open_ibb_stream(
                Sender(),
                transport.sid,
                transport.block_size,
                window=self._ibb_window,
                close_timeout=self._timeout,
            )
        )
        key = (peer, transport.sid)
        self._ibb[key] = stream
        cleanup.callback(self._ibb.pop, key, None)
        if opener:
            with _within(self._timeout, f"{peer} did not answer our IBB <open>"):
                await stream.open()
        return Established(stream, "ibb", cleanup)

    async def _fallback_to_ibb(
        self, session: SessionShell, cleanup: contextlib.AsyncExitStack
    ) -> Established:
        """XEP-0260 fallback: the initiator replaces S5B by IBB (transport-replace)."""
        machine = session.machine
        if machine.role is Role.INITIATOR:
            replace, offer = machine.replace_with_ibb(self._ibb_block_size)
            await session.send(replace)
            with _within(self._timeout, f"{session.peer} did not answer our transport-replace"):
                answer = await session.expect(
                    JingleAction.TRANSPORT_ACCEPT, JingleAction.TRANSPORT_REJECT
                )
            agreed = machine.replace_answered(answer, offer)
            return await self._open_ibb(session, agreed, True, cleanup)
        with _within(self._timeout, f"{session.peer} did not replace the failed transport"):
            replace = await session.expect(JingleAction.TRANSPORT_REPLACE)
        agreed, accept = machine.replace_received(replace, self._ibb_block_size)
        established = await self._open_ibb(session, agreed, False, cleanup)
        await session.send(accept)
        return established

    async def _establish(
        self,
        session: SessionShell,
        ours: etree._Element,
        theirs: etree._Element,
        cleanup: contextlib.AsyncExitStack,
    ) -> Established:
        if is_ibb(theirs):  # we initiated: we open
            return await self._open_ibb(session, parse_ibb(theirs), True, cleanup)
        started = trio.current_time()
        established = await self._establish_s5b(session, ours, theirs, cleanup)
        took = trio.current_time() - started
        if established is not None:
            log.info("S5B: %s ready with %s in %.2f s", established.transport, session.peer, took)
            return established
        log.info("S5B failed with %s after %.2f s, falling back to IBB", session.peer, took)
        return await self._fallback_to_ibb(session, cleanup)

    # -- sending ---------------------------------------------------------------------------

    async def send_file(
        self,
        path: str | os.PathLike[str],
        to: JID | str,
        *,
        encrypt: str | None = "auto",
        cipher: str | None = None,
        transport: Transport = "auto",
        name: str | None = None,
        media_type: str | None = None,
        progress: ProgressCallback | None = None,
        accept_timeout: float | _Default | None = _DEFAULT,
    ) -> TransferResult:
        """Offer the file at ``path`` to ``to`` and send it once accepted.

        ``encrypt`` is ``"auto"`` (the strongest JET envelope method both sides support, see
        :func:`envelope_strength`; an error if there is none), an envelope namespace, or
        ``None`` for an explicit unencrypted transfer. ``cipher`` defaults to AES-256-GCM unless
        only the envelope method's own preference is safe (legacy OMEMO to a peer that does not
        advertise AES-256-GCM: AES-128-GCM, as Dino and Conversations need);
        :attr:`TransferResult.choice` says which was used and why.
        ``accept_timeout`` bounds the wait for the receiver to accept or decline (default: the
        service's, 300 s; ``None``: no bound): then :class:`TransferTimeout` is raised and the
        session is terminated with ``timeout``.
        ``transport`` is ``"auto"`` (SOCKS5, falling back to in-band), ``"s5b"`` or ``"ibb"``.
        The file's SHA-256 is computed first (in a thread, cached) and sent in the offer, so the
        receiver can verify and resume. Cancel with a cancel scope: the session is then
        terminated with ``cancel``.

        The offer says that ranges are honoured (XEP-0234 ``<range/>``): a receiver that kept
        part of this file from an earlier, interrupted offer asks for the rest only, which is
        all that is sent (:attr:`TransferResult.reused_bytes` says how much it kept). Sending
        the same file again is how an interrupted transfer is completed.
        """
        src = Path(path)
        if not await trio.Path(src).is_file():
            raise FileNotFoundError(f"{src} is not a file")
        peer = await self.resolve_peer(to)
        method, why = await self._choose_envelope(peer, encrypt)
        secret, security, why_cipher = await self._make_security(method, cipher, peer, CONTENT_NAME)
        choice = _describe_choice(method, secret, why, why_cipher)
        size = (await trio.Path(src).stat()).st_size
        digest = await self._hashes.sha256(src)
        desc = FileDescription(
            name=name or src.name,
            size=size,
            media_type=media_type,
            hashes=(Hash("sha-256", digest),),
            range=Range(),  # <range/>: we honour a range in the session-accept (XEP-0234 6.1)
        )
        session = self._open_session(self._registry.create(peer))
        start = time.monotonic()
        async with self._session_scope(session) as cleanup:
            ours = await self._initiate(session, transport, desc, security, request=False)
            wait = self._accept_timeout if isinstance(accept_timeout, _Default) else accept_timeout
            with _within_or_never(wait, f"{peer} did not accept or decline the offer"):
                answer = await session.expect(JingleAction.SESSION_ACCEPT)
            theirs = session.machine.accepted(answer)
            # A receiver that kept part of the file from an earlier try asks for the rest;
            # ``secret`` was made for this session alone (XEP-0391 4.3).
            offset, length = accepted_range(answer, size)
            if offset:
                log.info("%s kept %d bytes of %s: sending the rest", peer, offset, desc.name)
            established = await self._establish(session, ours, theirs, cleanup)
            shown = _whole_file_progress(progress, offset, size)
            wire = await self._send_data(session, established, src, offset, length, secret, shown)
            await self._expect_success(session)
        return _result(
            "send",
            session,
            name=desc.name or src.name,
            size=size,
            sha256=digest.hex(),
            transport=established.transport,
            envelope=method.namespace if method else None,
            secret=secret,
            started=start,
            path=src,
            wire_bytes=wire,
            verified=True,
            choice=choice,
            reused=offset,
        )

    async def _make_security(
        self, method: EnvelopeMethod | None, cipher: str | None, peer: JID, content_name: str
    ) -> tuple[TransportSecret | None, etree._Element | None, str]:
        """A fresh transport secret and its ``<security>`` element (none if unencrypted), and
        why that cipher."""
        if method is None:
            return None, None, ""
        chosen, why = await self._choose_cipher(method, cipher, peer)
        secret = TransportSecret.generate(chosen)
        with _within(self._timeout, f"encrypting the transport secret for {peer} took too long"):
            envelope = await method.encrypt(secret, peer)
        return secret, build_security(content_name, secret.cipher, envelope), why

    async def _choose_cipher(
        self, method: EnvelopeMethod, wanted: str | None, peer: JID
    ) -> tuple[Cipher, str]:
        """``wanted``, else the first of our preferences the peer supports, else AES-256-GCM
        unless the envelope method prefers another cipher (legacy OMEMO: AES-128-GCM, the only
        one Dino and Conversations accept) and the peer does not advertise AES-256-GCM. The
        XEP-0391 ciphers are assumed with JET; any other cipher is used only if the peer
        advertises its URN. Returns the cipher and why it was chosen."""
        try:
            info = await self._features_of(peer)
        except StanzaError as exc:
            raise TransferError(f"cannot ask {peer} what it supports: {exc}", "gone") from None

        def usable(urn: str) -> Cipher | None:
            try:
                c = self.plugins.cipher(urn)
            except SecurityError:
                return None
            return c if c.urn in _STANDARD_CIPHERS or info.has(c.urn) else None

        if wanted is not None:
            chosen = usable(wanted)
            if chosen is None:
                self.plugins.cipher(wanted)  # raises UnknownCipher if we lack it ourselves
                raise JETError(
                    f"{peer} does not support the cipher {wanted}", "unsupported-applications"
                )
            return chosen, "cipher asked for"
        for urn in self._cipher_preference:
            if (chosen := usable(urn)) is not None:
                return chosen, "first of cipher_preference the peer supports"
        preferred = str(getattr(method, "preferred_cipher", DEFAULT_CIPHER))
        if self.plugins.cipher(preferred).urn == DEFAULT_CIPHER:
            return self.plugins.cipher(DEFAULT_CIPHER), "the strongest standard cipher"
        if info.has(DEFAULT_CIPHER):
            return (
                self.plugins.cipher(DEFAULT_CIPHER),
                f"the strongest standard cipher, advertised by {peer}",
            )
        return (
            self.plugins.cipher(preferred),
            f"the cipher {method.namespace} prefers; {peer} does not advertise AES-256-GCM "
            "(Dino and Conversations accept only AES-128-GCM)",
        )

    async def _initiate(
        self,
        session: SessionShell,
        transport: Transport,
        file: FileDescription,
        security: etree._Element | None,
        *,
        request: bool,
    ) -> etree._Element:
        """Send session-initiate with one content: an offer of ``file`` (we send) or a
        request for it (the peer sends). Returns our transport element."""
        ours = await self._initial_transport(transport, session)
        description = build_description(file, request=request)
        await session.send(session.machine.initiate(description, ours, security, request=request))
        return ours

    async def _initial_transport(
        self, transport: Transport, session: SessionShell
    ) -> etree._Element:
        if transport == "ibb":
            return build_ibb(IBBTransport(new_sid(), self._ibb_block_size))
        return build_s5b(await self._our_s5b(session, new_sid()))

    async def _responder_transport(
        self, session: SessionShell, theirs: etree._Element
    ) -> etree._Element:
        if is_ibb(theirs):
            return session.machine.answer_ibb(theirs, self._ibb_block_size)
        return build_s5b(await self._our_s5b(session, parse_s5b(theirs).sid))

    async def _accept_and_establish(
        self,
        session: SessionShell,
        content: Content,
        description: etree._Element,
        cleanup: contextlib.AsyncExitStack,
    ) -> Established:
        """Send session-accept for ``content`` and set up the transport (we are the responder)."""
        theirs = content.transport
        assert theirs is not None
        ours = await self._responder_transport(session, theirs)
        accept = session.machine.accept(content, description, ours)
        if is_ibb(ours):
            # Listen before accepting: the initiator opens the IBB as soon as it may.
            established = await self._open_ibb(session, parse_ibb(ours), False, cleanup)
            await session.send(accept)
            return established
        await session.send(accept)
        return await self._establish(session, ours, theirs, cleanup)

    async def _expect_success(self, session: SessionShell) -> None:
        with _within(self._timeout, f"{session.peer} did not confirm the transfer"):
            end = await session.expect(JingleAction.SESSION_TERMINATE)
        session.machine.check_success(end)

    async def _end_after_error(
        self, session: SessionShell, exc: BaseException
    ) -> TransferError | None:
        """End the session after ``exc`` as its machine decides (:meth:`FileSession.after_error`).
        Returns the error to raise instead of ``exc`` when the peer had already ended the
        session and ``exc`` is only a consequence."""
        ending = session.machine.after_error(exc)
        if ending.reason is not None:
            await session.terminate_with(ending.reason)
        return ending.instead

    @asynccontextmanager
    async def _session_scope(
        self, session: SessionShell, download: _Download | None = None
    ) -> AsyncIterator[contextlib.AsyncExitStack]:
        """The one lifecycle of every session (sending or receiving, initiated or answered):
        the transports it opens are closed at the end (the yielded exit stack); any error
        ends the session with the reason it maps to (or is replaced by the peer's reason when
        it is only a consequence of the peer ending first), keeps or discards the partial file
        of a ``download``; and the session is forgotten."""
        async with contextlib.AsyncExitStack() as cleanup:
            try:
                yield cleanup
            except BaseException as exc:
                instead = await self._end_after_error(session, exc)
                if download is not None and download.partial is not None:
                    _keep_or_discard(download.partial, instead or exc, download.resumable)
                if instead is not None:
                    raise instead from exc
                raise
            finally:
                self._forget(session)

    async def _send_data(
        self,
        session: SessionShell,
        established: Established,
        src: Path,
        offset: int,
        length: int,
        secret: TransportSecret | None,
        progress: ProgressCallback | None,
    ) -> int:
        """Send ``length`` bytes of ``src`` from ``offset`` (encrypted if ``secret``)."""
        return await send_data(
            session, established, src, offset, length, secret, progress, self._pace
        )

    # -- sharing files and answering requests ----------------------------------------------

    async def share(
        self,
        path: str | os.PathLike[str],
        *,
        to: Iterable[JID | str] | None = None,
        on_served: Callable[[ServedRequest], None] | None = None,
    ) -> str:
        """Let peers request the file at ``path`` by its SHA-256 (XEP-0234 file request,
        XEP-0391 4.2), and resume downloads of it (4.3). ``to`` limits it to those bare JIDs;
        ``None`` serves anyone who knows the hash. ``on_served`` is called after each request
        for it was served (or failed). Returns the hex SHA-256."""
        src = Path(path)
        digest = await self._hashes.sha256(src)
        allowed = None if to is None else frozenset(JID(j).bare for j in to)
        self._shares[digest] = (src, allowed)
        if on_served is not None:
            self._served[digest] = on_served
        return digest.hex()

    def unshare(self, sha256: str) -> None:
        """Stop serving the file with this hex SHA-256."""
        self._shares.pop(bytes.fromhex(sha256), None)

    async def _serve_request(self, session: SessionShell, offer: Offer) -> None:
        """Answer a file request from the files we share. Runs in the service's nursery."""
        try:
            async with self._session_scope(session) as cleanup:
                await self._serve_request_in(session, offer, cleanup)
        except Exception as exc:  # a failed request must not end the service
            # Several tasks may fail at once (an exception group); anything but our typed
            # errors and I/O errors is a bug and still propagates.
            if not all(isinstance(e, (JetError, OSError)) for e in leaves(exc)):
                raise
            log.info("request from %s failed: %s", session.peer, exc)

    async def _serve_request_in(
        self, session: SessionShell, offer: Offer, cleanup: contextlib.AsyncExitStack
    ) -> None:
        wanted = next((h.digest for h in offer.file.hashes if h.algo == "sha-256"), b"")
        entry = self._shares.get(wanted)
        if entry is None or (entry[1] is not None and session.peer.bare not in entry[1]):
            await session.terminate_with(file_not_available("no such file is shared with you"))
            return
        src = entry[0]
        if await self._hashes.sha256(src) != wanted:
            await session.terminate_with(file_not_available("the shared file has changed"))
            return
        size = (await trio.Path(src).stat()).st_size
        rng = offer.file.range
        offset = rng.offset if rng else 0
        length = rng.length if rng and rng.length is not None else size - offset
        if offset + length > size:
            raise TransferError(
                "the requested range is beyond the end of the file", "failed-application"
            )
        secret = await self._open_security(offer.security, session)
        desc = FileDescription(
            name=src.name, size=size, hashes=(Hash("sha-256", wanted),), range=rng
        )
        established = await self._accept_and_establish(
            session, offer.content, build_description(desc), cleanup
        )
        try:
            await self._send_data(session, established, src, offset, length, secret, None)
            await self._expect_success(session)
        except Exception as exc:
            if (told := self._served.get(wanted)) is not None:
                told(ServedRequest(session.peer, src.name, wanted.hex(), offset, length, exc))
            raise
        if (told := self._served.get(wanted)) is not None:
            told(ServedRequest(session.peer, src.name, wanted.hex(), offset, length))

    # -- receiving -------------------------------------------------------------------------

    async def _open_security(
        self, security: etree._Element | None, session: SessionShell
    ) -> TransportSecret | None:
        """Open the envelope the session's initiator sent (authenticated as the initiator)."""
        if security is None:
            return None
        try:
            info = parse_security(security, self.plugins)
            method = self.plugins.envelope(info.envelope_type)
            with _within(self._timeout, f"opening the envelope of {session.peer} took too long"):
                opened = await method.decrypt(info.envelope, session.peer, info.cipher)
            check_envelope_sender(opened, session.jingle.initiator)
        except (SecurityError, JetError) as exc:
            # The envelope method's typed error stays available as __cause__.
            raise JETError(f"cannot decrypt the transfer from {session.peer}: {exc}") from exc
        return opened.secret

    async def _run_receive(
        self,
        offer: IncomingOffer,
        dest: Path,
        progress: ProgressCallback | None,
        *,
        overwrite: bool,
        rename: bool,
        resume: bool = True,
    ) -> TransferResult:
        session = offer._session
        start = time.monotonic()
        size = offer.size
        file = offer.file
        sha = next((h.digest.hex() for h in file.hashes if h.algo == "sha-256"), None)
        # Kept after a failure when it can be completed: requested by its hash (resume), or
        # offered again by a sender that honours ranges and says how to verify the file.
        ranged = offers_ranges(file) and bool(file.hashes or file.hash_used)
        download = _Download(resumable=sha is not None or ranged)
        async with self._session_scope(session, download) as cleanup:
            kept: _Kept | None = None
            if resume and ranged:
                kept = await trio.to_thread.run_sync(
                    _find_kept, dest, session.peer, file, offer.envelope is not None
                )
            offset = 0
            if kept is not None:
                cleanup.callback(os.close, kept.lock)
                offset = kept.offset
                # The record names the sender's resource of this session from now on, and
                # the hash if this offer gives the first one.
                partial = dataclasses.replace(
                    kept.partial, peer=session.peer, sha256=kept.partial.sha256 or sha or ""
                )
                log.info(
                    "%s offered %s again: continuing the %d bytes kept in %s",
                    session.peer,
                    offer.name,
                    offset,
                    partial.part,
                )
            else:
                # e.g. an unwritable directory: still ends the session
                partial = download.partial = Partial.create(
                    dest, session.peer, offer.name, size, sha or "", offer.envelope
                )
                if (lock := lock_part(partial.part)) is not None:
                    cleanup.callback(os.close, lock)
            if session.jingle.state is SessionState.ENDED:
                await session.expect()  # the peer withdrew the offer: raises its reason
            secret = await self._open_security(offer._offer.security, session)
            c = offer._offer.content
            assert c.description is not None
            description = c.description
            if offset:
                # XEP-0234 6.1: the rest of the file, from the kept bytes on.
                description = build_description(dataclasses.replace(file, range=Range(offset)))
            established = await self._accept_and_establish(session, c, description, cleanup)
            # From here on a failure keeps or discards the kept partial as any other (before,
            # e.g. an envelope this session could not open, says nothing of its data).
            download.partial = partial
            if download.resumable:
                partial.save()
            digests = await self._receive_into(
                session, established, partial, offset, size - offset, secret, progress, file
            )
            verified = await self._verify_hash(session, file, digests)
            got = digests.plain["sha-256"].hex()
            if offset and not verified:
                raise IntegrityError(
                    f"the {offset} bytes kept from an earlier transfer cannot be verified: "
                    f"{session.peer} gave no hash of the file",
                    "media-error",
                )
            if offset and partial.sha256 and partial.sha256.lower() != got:
                raise IntegrityError(
                    "the file offered again is not the one the kept bytes came from", "media-error"
                )
            dest, taken = await _deliver_or_keep(partial, overwrite, rename)
            await trio.to_thread.run_sync(_discard_stale, partial, got)
            await session.terminate("success")
        return _result(
            "receive",
            session,
            name=offer.name,
            size=size,
            sha256=got,
            transport=established.transport,
            envelope=offer.envelope,
            secret=secret,
            started=start,
            path=dest,
            wire_bytes=size - offset + (secret.cipher.tag_size if secret else 0),
            verified=verified,
            choice=f"chosen by the sender {session.peer}"
            if secret
            else "the sender did not encrypt",
            taken=taken,
            reused=offset,
        )

    async def request_file(
        self,
        peer: JID | str,
        sha256: str,
        destination: str | os.PathLike[str],
        *,
        encrypt: str | None = "auto",
        cipher: str | None = None,
        transport: Transport = "auto",
        progress: ProgressCallback | None = None,
        overwrite: bool = False,
        rename: bool = False,
    ) -> TransferResult:
        """Request the file with this hex SHA-256 from ``peer`` (XEP-0234 file request; with
        JET, XEP-0391 4.2: we make the transport secret and the peer encrypts with it).

        ``destination`` is a directory (the peer's file name is used) or a file path. If the
        download is interrupted, the data so far is kept for :meth:`resume`. A taken name is
        never replaced unless ``overwrite``; with ``rename`` the file is stored under the next
        free ``name (1).ext`` instead of being refused.
        """
        try:
            want = bytes.fromhex(sha256)
        except ValueError:
            raise ValueError(f"not a hex SHA-256: {sha256!r}") from None
        if len(want) != 32:
            raise ValueError(f"not a hex SHA-256: {sha256!r}")
        return await self._request(
            peer,
            want,
            Path(destination),
            None,
            encrypt,
            cipher,
            transport,
            progress,
            overwrite,
            rename=rename and not overwrite,
        )

    async def resume(
        self,
        partial: Partial | str | os.PathLike[str],
        *,
        encrypt: str | None = "auto",
        cipher: str | None = None,
        transport: Transport = "auto",
        progress: ProgressCallback | None = None,
    ) -> TransferResult:
        """Resume an interrupted download (XEP-0391 4.3): request the rest of the file with a
        ``<range offset>`` and a fresh transport secret; the whole file is verified against its
        SHA-256 before it is renamed to its destination.

        The request goes to the sender's full JID recorded in the partial; if that resource is
        not available but another resource of the same account is (the sender reconnected
        under another name), to the best of those that support file transfer."""
        p = partial if isinstance(partial, Partial) else Partial.load(partial)
        if not p.sha256:
            raise TransferError(
                f"{p.name} was offered without a hash, so it cannot be requested by one: the "
                f"sender completes it by sending it again",
                "failed-application",
            )
        # A record is confined to its directory when loaded; check again (the caller may
        # have built it) and apply the no-overwrite rule of every download.
        p.check_confined()
        if await trio.Path(p.dest).exists():  # (not a symbolic link: checked)
            raise FileExistsError(f"{p.dest} already exists: resuming never replaces a file")
        peer = p.peer
        online = self.client.resources(peer.bare)
        if not peer.is_bare and peer not in online and online:
            peer = peer.bare
        return await self._request(
            peer, bytes.fromhex(p.sha256), p.dest, p, encrypt, cipher, transport, progress, False
        )

    async def _request(
        self,
        to: JID | str,
        want: bytes,
        dest: Path,
        partial: Partial | None,
        encrypt: str | None,
        cipher: str | None,
        transport: Transport,
        progress: ProgressCallback | None,
        overwrite: bool,
        *,
        rename: bool = False,
    ) -> TransferResult:
        peer = await self.resolve_peer(to)
        method, why = await self._choose_envelope(peer, encrypt)
        secret, security, why_cipher = await self._make_security(method, cipher, peer, REQUEST_NAME)
        choice = _describe_choice(method, secret, why, why_cipher)
        offset = partial.received if partial is not None else 0
        request = FileDescription(
            hashes=(Hash("sha-256", want),), range=Range(offset) if offset else None
        )
        session = self._open_session(self._registry.create(peer))
        start = time.monotonic()
        download = _Download(partial, resumable=True)
        async with self._session_scope(session, download) as cleanup:
            ours = await self._initiate(session, transport, request, security, request=True)
            with _within(self._timeout, f"{peer} did not answer our file request"):
                accept = await session.expect(JingleAction.SESSION_ACCEPT)
            theirs = session.machine.accepted(accept)
            file = accepted_file(accept)
            assert file.size is not None
            if partial is None:
                if await trio.Path(dest).is_dir():
                    dest = dest / safe_filename(file.name or want.hex())
                exists = await trio.to_thread.run_sync(os.path.lexists, dest)
                if exists and not (overwrite or rename):
                    raise FileExistsError(errno.EEXIST, f"{dest} already exists")
                partial = download.partial = Partial.create(
                    dest,
                    peer,
                    file.name or want.hex(),
                    file.size,
                    want.hex(),
                    method.namespace if method else None,
                )
            elif partial.size != file.size:
                raise IntegrityError("the peer's file has another size than the partial one")
            lock = await trio.to_thread.run_sync(lock_part, partial.part)
            if lock is None:
                raise TransferError(
                    f"{partial.name} is being received by another download", "failed-application"
                )
            cleanup.callback(os.close, lock)
            partial.save()
            established = await self._establish(session, ours, theirs, cleanup)
            expected = FileDescription(size=file.size, hashes=(Hash("sha-256", want),))
            digests = await self._receive_into(
                session,
                established,
                partial,
                offset,
                file.size - offset,
                secret,
                progress,
                expected,
            )
            await self._verify_hash(session, expected, digests)
            dest, taken = await _deliver_or_keep(partial, overwrite, rename)
            await session.terminate("success")
        return _result(
            "receive",
            session,
            name=partial.name,
            size=partial.size,
            sha256=want.hex(),
            transport=established.transport,
            envelope=method.namespace if method else None,
            secret=secret,
            started=start,
            path=dest,
            wire_bytes=partial.size - offset + (secret.cipher.tag_size if secret else 0),
            verified=True,
            choice=choice,
            taken=taken,
            reused=offset,
        )

    async def _receive_into(
        self,
        session: SessionShell,
        established: Established,
        partial: Partial,
        offset: int,
        length: int,
        secret: TransportSecret | None,
        progress: ProgressCallback | None,
        file: FileDescription,
    ) -> Digests:
        """Receive ``length`` bytes into the partial file at ``offset``; return the hashes of
        the whole file (the kept prefix included)."""
        proxy = self._proxy_name(established)
        return await receive_into(
            session, established, partial, offset, length, secret, progress, file, self._pace, proxy
        )

    def _proxy_name(self, established: Established) -> str | None:
        """The SOCKS5 proxy ``established`` goes through (its JID if it is one of ours, and
        its address), or None for a direct connection or IBB."""
        if established.transport != "s5b-proxy":
            return None
        sock = getattr(established.stream, "socket", None)  # a SocketStream or a wrapper
        try:
            assert isinstance(sock, trio.socket.SocketType)
            host, port = sock.getpeername()[:2]
        except (AssertionError, OSError):
            return "(address unknown)"
        for known in self._proxies or ():
            if known.port == port and known.host == host:
                return f"{known.jid} ({host}:{port})"
        return f"{host}:{port}"

    async def _verify_hash(
        self, session: SessionShell, file: FileDescription, got: Digests
    ) -> bool:
        """Check the received data against the announced hashes; ``False`` if there were none
        we know (the GCM tag, when encrypted, still authenticated the data)."""
        hashes = file.hashes
        if not hashes and file.hash_used:
            with trio.move_on_after(self._timeout):
                await session.wait_checksum()
            hashes = session.machine.checksum
        known = [h for h in hashes if h.algo in got.plain]
        for h in known:
            if got.plain[h.algo] != h.digest and got.wire.get(h.algo) != h.digest:
                raise IntegrityError(
                    f"the {h.algo} hash of the received file does not match", "media-error"
                )
        return bool(known)


_ENVELOPE_STRENGTH: Final = {
    "urn:xmpp:omemo:2": 30,
    "eu.siacs.conversations.axolotl": 20,
    "urn:xmpp:openpgp:0": 15,  # no forward secrecy, and no deployed client speaks it
    _ns.JET_STUB: 0,
}


def envelope_strength(method: EnvelopeMethod) -> int:
    """How ``encrypt="auto"`` ranks an envelope method: its ``strength`` attribute if it has
    one, else OMEMO 2 30, legacy OMEMO 20, OpenPGP 15 (no forward secrecy, and only jet-trio
    speaks it), other methods 10, the stub 0."""
    strength = getattr(method, "strength", None)
    if isinstance(strength, int):
        return strength
    return _ENVELOPE_STRENGTH.get(method.namespace, 10)


def _describe_choice(
    method: EnvelopeMethod | None, secret: TransportSecret | None, why: str, why_cipher: str
) -> str:
    if method is None or secret is None:
        return why
    return f"{method.namespace}: {why}; {secret.cipher.urn}: {why_cipher}"


async def _deliver(partial: Partial, overwrite: bool, rename: bool) -> Path:
    """Give the verified download its name (never replacing anything unless ``overwrite``)."""
    part, dest = partial.part, partial.dest
    return await trio.to_thread.run_sync(
        lambda: deliver(part, dest, overwrite=overwrite, rename=rename)
    )


def _whole_file_progress(
    progress: ProgressCallback | None, offset: int, size: int
) -> ProgressCallback | None:
    """``progress`` counting the bytes the receiver kept as done: a resumed transfer's bar
    starts where the interrupted one stopped."""
    if progress is None or not offset:
        return progress
    return lambda done, _total: progress(offset + done, size)


def _keep_or_discard(partial: Partial, exc: BaseException, resumable: bool) -> None:
    """Keep an interrupted download for resuming, unless its data is known bad. A stream cut
    short is kept like a broken connection: the whole file's hash is checked on resume."""
    bad = any(
        isinstance(e, (IntegrityError, FileExistsError))
        or (isinstance(e, SecurityError) and not cut_short(e))
        for e in leaves(exc)
    )
    if resumable and not bad and partial.received > 0 and partial.sidecar.exists():
        log.info(
            "kept %d bytes of %s for resuming: %s", partial.received, partial.name, partial.sidecar
        )
        return
    partial.discard()


@dataclass(frozen=True, slots=True)
class _Kept:
    """A kept partial download a new offer continues, held (``lock``) for this download."""

    partial: Partial
    lock: int
    offset: int


def _kept_download(p: Partial) -> KeptDownload:
    return KeptDownload(p.peer, p.name, p.size, p.sha256, p.envelope is not None, p.received)


def _find_kept(dest: Path, peer: JID, file: FileDescription, encrypted: bool) -> _Kept | None:
    """The partial download kept for ``dest`` that a new offer of ``file`` from ``peer``
    continues (:func:`resume_offset` decides), the one with the most bytes if several may,
    held for this download; ``None`` if there is none. Only the receiver's own
    authenticated records in the target's directory are read. Blocking: run it in a thread."""
    target = Path(os.path.abspath(dest))
    scored: list[tuple[int, Partial]] = []
    for p in find_partials(target.parent):
        if Path(os.path.abspath(p.dest)) != target:
            continue
        if (offset := resume_offset(file, peer, encrypted, _kept_download(p))) > 0:
            scored.append((offset, p))
    for _, p in sorted(scored, key=lambda t: -t[0]):
        try:
            lock = lock_part(p.part)
        except (OSError, TransferError):  # gone, or replaced by something not ours
            continue
        if lock is None:
            continue  # another download appends to it now
        # Read again under the lock: it may have grown until its download let go of it.
        offset = resume_offset(file, peer, encrypted, _kept_download(p))
        if offset > 0:
            return _Kept(p, lock, offset)
        os.close(lock)
    return None


def _discard_stale(delivered: Partial, sha256: str) -> None:
    """``delivered`` got its name: discard the other partial downloads of the same file from
    the same sender kept for that target (one left by an earlier try that could not be
    continued: its sender did not do ranges, or ``resume=False``). Blocking."""
    target = Path(os.path.abspath(delivered.dest))
    with contextlib.suppress(OSError, TransferError):
        for p in find_partials(target.parent):
            if p.part == delivered.part or Path(os.path.abspath(p.dest)) != target:
                continue
            same = (delivered.peer.bare, delivered.name, delivered.size)
            if (p.peer.bare, p.name, p.size) != same:
                continue
            if p.sha256 and p.sha256.lower() != sha256:
                continue
            lock = lock_part(p.part)
            if lock is None:
                continue
            try:
                p.discard()
            finally:
                os.close(lock)


@dataclass(slots=True)
class _Download:
    """The partial file of a download, once it exists, for the session scope to keep (for
    resuming) or discard when the session fails."""

    partial: Partial | None = None
    resumable: bool = True


async def _deliver_or_keep(
    partial: Partial, overwrite: bool, rename: bool
) -> tuple[Path, NameTaken | None]:
    """Give the verified download its name; if the name was taken meanwhile, where it was
    kept instead and the :class:`NameTaken` to raise once the session ended well."""
    try:
        dest = await _deliver(partial, overwrite, rename)
    except NameTaken as exc:
        partial.discard()
        return exc.kept, exc
    partial.discard()
    return dest, None


def _result(
    direction: Literal["send", "receive"],
    session: SessionShell,
    *,
    name: str,
    size: int,
    sha256: str,
    transport: TransportName,
    envelope: str | None,
    secret: TransportSecret | None,
    started: float,
    path: Path,
    wire_bytes: int,
    verified: bool,
    choice: str,
    taken: NameTaken | None = None,
    reused: int = 0,
) -> TransferResult:
    """The result of a finished transfer (raised inside ``taken`` when the name was taken)."""
    result = TransferResult(
        direction=direction,
        peer=session.peer,
        name=name,
        size=size,
        sha256=sha256,
        transport=transport,
        envelope=envelope,
        cipher=secret.cipher.urn if secret else None,
        seconds=time.monotonic() - started,
        path=path,
        wire_bytes=wire_bytes,
        hash_verified=verified,
        choice=choice,
        reused_bytes=reused,
    )
    if taken is not None:
        taken.result = result
        raise taken
    return result


class _Unset:
    pass


_UNSET: Final = _Unset()


@asynccontextmanager
async def open_file_transfer(
    client: Client,
    *,
    plugins: PluginManager | None = None,
    allow_stub_envelope: bool = False,
    extra_plugins: Iterable[object] = (),
    direct_addresses: DirectAddresses = "auto",
    direct_host: str | _Unset | None = _UNSET,
    use_proxies: bool = True,
    ibb_block_size: int = 16384,
    ibb_window: int = 8,
    cipher_preference: Sequence[str] = (),
    data_dir: str | os.PathLike[str] | None = None,
    negotiation_timeout: float = 30.0,
    stall_timeout: float | None = 60.0,
    max_pending_offers: int = 16,
    max_offers_per_peer: int = 4,
    max_transfers_per_peer: int = 4,
    offer_timeout: float | None = 120.0,
    min_throughput: float | None = 1024.0,
    throughput_window: float = 60.0,
    accept_timeout: float | None = DEFAULT_ACCEPT_TIMEOUT,
) -> AsyncIterator[FileTransfer]:
    """Jingle file transfer on ``client`` for the duration of the ``async with`` block.

    Plugins (envelope methods, ciphers) come from the ``jet_trio`` entry points plus
    ``extra_plugins``, or from ``plugins``. ``direct_addresses`` are the addresses offered as
    direct SOCKS5 candidates: ``"auto"`` (every usable address of every interface that is up,
    IPv4 and IPv6, loopback only when there is nothing else), a list of addresses or host names
    (best first; an ``"auto"`` entry adds the gathered ones), or ``None`` (offer none).
    ``direct_host`` is its deprecated one-address form. ``use_proxies`` offers the server's
    SOCKS5 proxies.
    In-band transfers use blocks of ``ibb_block_size`` bytes (the peer may lower it) with up to
    ``ibb_window`` blocks awaiting acknowledgement. ``cipher_preference`` lists cipher URNs to
    use when the peer supports them (e.g. a plugin's ChaCha20-Poly1305); otherwise AES-256-GCM
    (or the envelope method's preferred cipher) is used. ``data_dir`` is where plugins keep
    their state (keys, sessions), each in a subdirectory of its own.

    ``negotiation_timeout`` bounds every wait for the peer's answer while a session is set up
    and ended; ``stall_timeout`` ends a transfer during which no data moved for that long (a
    peer that stopped reading or sending; ``None``: wait forever), and ``min_throughput``
    (bytes per second, ``None``: no minimum) one whose data moved slower than that over any
    ``throughput_window`` seconds (a peer dripping a byte now and then). ``accept_timeout``
    bounds how long :meth:`~FileTransfer.send_file` waits for the receiver to accept or decline
    (a person deciding: 300 s by default; ``None``: wait forever). All raise
    :class:`TransferTimeout` and end the session with the reason ``timeout``.

    What one contact may hold of a receiver is bounded: at most ``max_pending_offers`` offers
    wait for the application (from all contacts), at most ``max_offers_per_peer`` unanswered
    offers and ``max_transfers_per_peer`` running transfers (received files and served
    requests) per contact (bare JID); more are refused with ``busy``. An offer the
    application has not taken within ``offer_timeout`` seconds is refused with ``timeout``.
    When the block ends, offers still unanswered are rejected (``decline``).
    """
    if plugins is None:
        config = PluginConfig(
            allow_stub_envelope=allow_stub_envelope,
            account=client.jid,
            data_dir=None if data_dir is None else Path(data_dir),
            client=client,
        )
        plugins = PluginManager(config, plugins=extra_plugins)
    if not isinstance(direct_host, _Unset):
        warnings.warn(
            "open_file_transfer(direct_host=...) is deprecated: use direct_addresses",
            DeprecationWarning,
            stacklevel=3,
        )
        direct_addresses = None if direct_host is None else [direct_host]
    with unwrapped_errors():
        async with (
            open_direct_candidates(direct_addresses) as direct,
            trio.open_nursery() as nursery,
        ):
            ft = FileTransfer(
                client,
                nursery,
                plugins,
                direct,
                use_proxies=use_proxies,
                ibb_block_size=ibb_block_size,
                ibb_window=ibb_window,
                cipher_preference=cipher_preference,
                negotiation_timeout=negotiation_timeout,
                stall_timeout=stall_timeout,
                max_pending_offers=max_pending_offers,
                max_offers_per_peer=max_offers_per_peer,
                max_transfers_per_peer=max_transfers_per_peer,
                offer_timeout=offer_timeout,
                min_throughput=min_throughput,
                throughput_window=throughput_window,
                accept_timeout=accept_timeout,
            )
            ft._install()
            try:
                # E.g. publish keys before we advertise support; a method whose start() fails
                # with a bug of its plugin is unloaded (see PluginManager.load_errors).
                await plugins._start_envelopes()
                await client.add_features(*ft.features)
                yield ft
            finally:
                ft._uninstall()  # no new offers from here on
                await ft._reject_unanswered()
                nursery.cancel_scope.cancel()
