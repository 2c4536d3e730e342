"""Routing a client's Jingle and IBB requests to the file-transfer sessions they belong to.

The :class:`Switchboard` owns the table of running sessions and of in-band bytestreams, answers
the iqs that carry them, turns a new session-initiate into an offer for the application (or a
request to serve), keeps offers waiting in a bounded queue, and counts what each contact holds
of this receiver (offers waiting, transfers running). It decides nothing about a session's
protocol: each message goes to its :class:`~jet_trio._transfer.session.FileSession`
(which may refuse it) through the session's :class:`SessionShell`.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Final, Protocol

import trio
from lxml import etree

from .._errors import JetError, SecurityError
from .._jet.cipher import Cipher
from .._jingle.machine import JingleSession, SessionRegistry
from .._jingle.message import (
    ErrorReply,
    JingleAction,
    JingleMessage,
    JingleProtocolError,
    Reason,
    ReasonCondition,
    build_error,
    find_jingle,
    parse_jingle,
)
from .._plugins.manager import PluginManager
from .._transports.ibb import IBBError, IBBStream
from .._transports.s5b import S5BListener
from .._xmpp import ns as _ns
from .._xmpp.client import Client
from .._xmpp.jid import JID
from .._xmpp.stanza import IQ, E, StanzaError, make_result, stanza_from
from .description import FileTransferError
from .driver import SessionShell
from .session import FileSession, Offer, TransportKind, parse_offer, refusal_reason
from .types import TransferError

__all__ = ["PendingOffer", "Quotas", "Switchboard"]

log = logging.getLogger("jet_trio.transfer")

_JINGLE: Final = f"{{{_ns.JINGLE}}}jingle"
_IBB_TAGS: Final = tuple(f"{{{_ns.IBB}}}{n}" for n in ("open", "data", "close"))


class PendingOffer(Protocol):
    """What the switchboard needs of an offer waiting for the application's answer."""

    peer: JID
    _session: SessionShell
    _answered: bool
    _expiry: trio.CancelScope

    @property
    def name(self) -> str: ...

    def _check_unanswered(self) -> None: ...

    async def _end(self, reason: str, text: str | None) -> None: ...


@dataclass(frozen=True, slots=True)
class Quotas:
    """What one contact may hold of this receiver (see :func:`open_file_transfer`)."""

    max_pending_offers: int = 16
    max_offers_per_peer: int = 4
    max_transfers_per_peer: int = 4
    offer_timeout: float | None = 120.0


class Switchboard:
    """The sessions of one :class:`~jet_trio.FileTransfer` and the iq handlers that feed them.

    ``make_offer`` wraps a new offer for the application (it must add itself to
    :attr:`unanswered`); ``serve_request`` serves a file request (run in ``nursery``).
    """

    def __init__(
        self,
        client: Client,
        nursery: trio.Nursery,
        plugins: PluginManager,
        timeout: float,
        listener: S5BListener | None,
        quotas: Quotas,
        *,
        make_offer: Callable[[SessionShell, Offer], PendingOffer],
        serve_request: Callable[[SessionShell, Offer], Awaitable[None]],
        transports: Callable[[], Collection[TransportKind]],
    ) -> None:
        self.client = client
        self.plugins = plugins
        self.quotas = quotas
        self._nursery = nursery
        self._timeout = timeout
        self._listener = listener
        self._make_offer = make_offer
        self._serve_request = serve_request
        self._transports = transports  # those an offer may use (the data channel if enabled)
        self.token = trio.lowlevel.current_trio_token()
        self.registry = SessionRegistry(client.jid)
        self.sessions: dict[tuple[JID, str], SessionShell] = {}
        self.ibb: dict[tuple[JID, str], IBBStream] = {}
        #: Every offer not answered yet, from its creation (queued or held by the application).
        self.unanswered: weakref.WeakSet[PendingOffer] = weakref.WeakSet()
        self.queue: deque[PendingOffer] = deque()
        self._queued = trio.Event()  # set when an offer is queued or the service closes
        self._closed = False
        self.offers_of: Counter[JID] = Counter()  # unanswered offers per bare JID
        self.transfers_of: Counter[JID] = Counter()  # transfers running per bare JID

    # -- handlers --------------------------------------------------------------------------

    def install(self) -> None:
        self.client.register_inline_iq_handler("set", _JINGLE, self._on_jingle)
        for tag in _IBB_TAGS:
            self.client.register_inline_iq_handler("set", tag, self._on_ibb)
        self._unwatch_presence = self.client.on_presence(self._on_presence)

    def uninstall(self) -> None:
        self._unwatch_presence()
        self.client.unregister_iq_handler("set", _JINGLE)
        for tag in _IBB_TAGS:
            self.client.unregister_iq_handler("set", tag)
        self._closed = True
        self._queued.set()
        for session in self.sessions.values():
            session.deliver(None)

    def _on_presence(self, presence: etree._Element) -> None:
        """A peer going offline ends its sessions (``gone``): otherwise a receiver would wait
        forever for in-band data, or a sender for an answer, that can no longer come."""
        if presence.get("type") != "unavailable":
            return
        with contextlib.suppress(JetError):
            gone = stanza_from(presence)
            reason = Reason(ReasonCondition.GONE, "the peer went offline")
            for peer, sid in [k for k in self.sessions if k[0] == gone]:
                msg = JingleMessage(JingleAction.SESSION_TERMINATE, sid, reason=reason)
                self.deliver(peer, sid, msg)

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
        incoming = self.registry.receive(msg, sender)
        if incoming.error is not None:
            await self._reply_error(iq, build_error(incoming.error))
            return
        if incoming.superseded is not None:
            self.deliver(incoming.superseded.peer, incoming.superseded.sid, None)
        if incoming.is_new_session and incoming.session is not None:
            self._new_incoming(incoming.session, msg)
        else:
            self.deliver(sender, msg.sid, msg)
        # Answered after delivering, so that the message is in the session's inbox before
        # anything the peer does once it has our answer (closing the bytestream, say) can be
        # seen here. send() queues the answer before it first yields: it still goes out
        # before whatever the session sends in response.
        await self.client.send(make_result(iq))

    def _refusal(self, peer: JID, msg: JingleMessage) -> ErrorReply | None:
        """Why a message for an existing session is answered with an error instead of being
        kept for it (see :meth:`FileSession.refusal`)."""
        session = self.sessions.get((peer, msg.sid))
        return None if session is None else session.machine.refusal(msg)

    def deliver(self, peer: JID, sid: str, msg: JingleMessage | None) -> None:
        session = self.sessions.get((peer, sid))
        if session is not None:
            session.deliver(msg)  # None: lost a tie-break, no more messages come

    def _new_incoming(self, jingle: JingleSession, msg: JingleMessage) -> None:
        session = self.open_session(jingle)
        try:
            offer = parse_offer(msg, self._cipher_if_known, self._transports())
            busy = self._over_quota(session.peer.bare, request=offer.request)
            if busy is not None:
                self._nursery.start_soon(self.refuse, session, "busy", busy)
                return
            if offer.request:
                self.start_transfer(session)
                self._nursery.start_soon(self._serve_request, session, offer)
                return
            self._enqueue(self._make_offer(session, offer))
        except (FileTransferError, JingleProtocolError, TransferError) as exc:
            self._nursery.start_soon(self.refuse, session, refusal_reason(exc), str(exc))

    def _cipher_if_known(self, urn: str | None) -> Cipher | None:
        try:
            return self.plugins.cipher((urn or "").strip())
        except SecurityError:
            return None  # refused when the envelope is opened, with its own reason

    async def _on_ibb(self, iq: etree._Element) -> None:
        sender = stanza_from(iq)
        payload = iq[0]
        stream = self.ibb.get((sender, payload.get("sid", ""))) if sender else None
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

    def open_session(self, jingle: JingleSession) -> SessionShell:
        session = SessionShell(self.client, self._timeout, FileSession(jingle))
        self.sessions[(jingle.peer, jingle.sid)] = session
        return session

    def forget(self, session: SessionShell) -> None:
        self.sessions.pop((session.peer, session.jingle.sid), None)
        session.machine.close(drop=True)
        session.deliver(None)
        self._release_quota(session)
        if self._listener is not None:
            for dst in session.listening:
                self._listener.forget(dst)
        session.listening.clear()

    # -- offers waiting for the application, and per-peer quotas ---------------------------

    def _over_quota(self, peer: JID, *, request: bool) -> str | None:
        """Why a new session from ``peer`` (a bare JID) is refused with ``busy``, if it is."""
        q = self.quotas
        if self.transfers_of[peer] >= q.max_transfers_per_peer:
            return f"too many transfers from {peer} at once"
        if request:
            return None
        if self.offers_of[peer] >= q.max_offers_per_peer:
            return f"too many offers from {peer} waiting for an answer"
        if len(self.queue) >= q.max_pending_offers:
            return "too many pending offers"
        return None

    def _enqueue(self, offer: PendingOffer) -> None:
        session = offer._session
        session.quota = "offer"
        self.offers_of[session.peer.bare] += 1
        self.queue.append(offer)
        self._queued.set()
        if self.quotas.offer_timeout is not None:
            self._nursery.start_soon(self._expire, offer, self.quotas.offer_timeout)

    async def _expire(self, offer: PendingOffer, seconds: float) -> None:
        """Refuse ``offer`` (reason ``timeout``) if the application has not taken it within
        ``seconds``: a queued offer never holds its place, nor its sender, for ever."""
        with offer._expiry:
            await trio.sleep(seconds)
            if offer in self.queue and not offer._answered:
                self.queue.remove(offer)
                offer._answered = True
                self.unanswered.discard(offer)
                self._release_quota(offer._session)  # its place is free at once
                await self.refuse(
                    offer._session, "timeout", f"the offer was not answered within {seconds:g} s"
                )

    def start_transfer(self, session: SessionShell) -> bool:
        """Count ``session`` as a running transfer of its peer (no longer as an offer);
        ``False`` if the peer already has as many as it may."""
        peer = session.peer.bare
        if session.quota == "offer":
            self.offers_of[peer] -= 1
            session.quota = None
        if session.quota is None:
            if self.transfers_of[peer] >= self.quotas.max_transfers_per_peer:
                return False
            self.transfers_of[peer] += 1
            session.quota = "transfer"
        return True

    def _release_quota(self, session: SessionShell) -> None:
        peer = session.peer.bare
        counter = {"offer": self.offers_of, "transfer": self.transfers_of}.get(session.quota or "")
        if counter is not None:
            counter[peer] -= 1
            if counter[peer] <= 0:
                del counter[peer]
        session.quota = None

    def refuse_soon(self, session: SessionShell) -> None:
        """Decline a dropped offer (called soon after its garbage collection)."""
        with contextlib.suppress(RuntimeError):  # the service ended (and answered its offers)
            self._nursery.start_soon(
                self.refuse, session, "decline", "the offer was dropped without an answer"
            )

    async def refuse(self, session: SessionShell, reason: str, text: str) -> None:
        log.info("refusing offer from %s: %s", session.peer, text)
        await session.terminate(reason, text)
        self.forget(session)

    async def next_offer(self) -> PendingOffer:
        """The oldest offer queued (waiting for one); :class:`trio.EndOfChannel` once the
        service is closing."""
        while not self.queue:
            if self._closed:
                raise trio.EndOfChannel
            if self._queued.is_set():
                self._queued = trio.Event()
            await self._queued.wait()
        offer = self.queue.popleft()
        offer._expiry.cancel()
        return offer

    async def reject_unanswered(self) -> None:
        """Answer every offer still open when the service ends (queued or held by the
        application), so that no sender is left waiting."""
        # Every offer is in ``unanswered`` from its creation (queued ones are kept alive by the
        # queue): take strong references before the queue lets go of them.
        offers = [o for o in self.unanswered if not o._answered]
        self.queue.clear()
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
