"""The XMPP client: a thin trio shell over the sans-IO parser and negotiation.

One reader task and one writer path live in the nursery opened by :func:`open_client`. Sending
never depends on the reader task; incoming requests are answered from tasks in the same nursery.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import trio
from lxml import etree

from .._errors import JetError, RemoteProtocolError, XMLError
from .._trio_util import unwrapped_errors
from . import ns as _ns
from .connect import (
    DEFAULT_LOGIN_TIMEOUT,
    RECEIVE_SIZE,
    Security,
    close_forcefully,
    connect_stream,
    make_ssl_context,
    send_stream_error,
)
from .disco import CAPS_NODE, DiscoInfo, DiscoItem, Identity, caps_element, caps_ver, parse_caps
from .disco import parse_items as parse_disco_items
from .jid import JID, InvalidJID
from .negotiation import ConnectionLost
from .pubsub import (
    TEMPORARY_FAILURE_ATTEMPTS,
    TEMPORARY_FAILURE_PAUSE,
    PublishRecovery,
    PubSubEvent,
    PubSubItem,
    configure_request,
    create_request,
    is_temporary_failure,
    items_request,
    parse_event,
    publish_recovery,
    publish_request,
    retract_request,
)
from .pubsub import parse_items as parse_pubsub_items
from .sasl import DEFAULT_MECHANISMS
from .stanza import (
    IQ,
    MESSAGE,
    PRESENCE,
    E,
    IqType,
    StanzaError,
    error_reply,
    make_iq,
    make_result,
    parse_stanza_error,
    parse_stream_error,
)
from .xml import (
    DEFAULT_MAX_STANZA_BYTES,
    Event,
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    XMLStreamParser,
    serialize,
    stream_footer,
)

__all__ = ["Client", "InlineIqHandler", "IqHandler", "open_client"]

log = logging.getLogger("jet_trio.client")

IqHandler = Callable[[etree._Element], Awaitable[etree._Element | None]]
"""Handles an incoming get/set iq; returns the result payload (or ``None``), or raises
:class:`StanzaError` to answer with that error."""

InlineIqHandler = Callable[[etree._Element], Awaitable[None]]
"""Runs in the reader task, in stanza order; must answer the iq itself (see
:meth:`Client.register_inline_iq_handler`)."""

_STREAM_ERROR: Final = f"{{{_ns.STREAM}}}error"
_CLOSE_GRACE: Final = 2.0
_SEND_TIMEOUT: Final = 60.0  # writing one stanza (shielded from cancellation, see send())
DEFAULT_IDENTITY: Final = Identity("client", "pc", "", "jet-trio")
BASE_FEATURES: Final = (_ns.DISCO_INFO, _ns.DISCO_ITEMS, _ns.CAPS, _ns.PING)


@dataclass(eq=False, slots=True)
class _Batch:
    """Stanzas queued while another task writes: written together, then ``written`` is set."""

    written: trio.Event = field(default_factory=trio.Event)
    error: str | None = None


@dataclass(slots=True)
class _Pending:
    expected_from: frozenset[str | None]
    done: trio.Event = field(default_factory=trio.Event)
    reply: etree._Element | None = None
    error: BaseException | None = None


class Client:
    """A connected, authenticated XMPP client. Obtain one from :func:`open_client`."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        parser: XMLStreamParser,
        jid: JID,
        nursery: trio.Nursery,
        *,
        features: Iterable[str] = (),
        identity: Identity = DEFAULT_IDENTITY,
    ) -> None:
        self._stream = stream
        self._parser = parser
        self._jid = jid
        self._nursery = nursery
        self._send_lock = trio.Lock()  # held by the task writing (see send())
        self._outbox: list[bytes] = []
        self._batch = _Batch()  # what the stanzas in the outbox will be written with
        self._pending: dict[str, _Pending] = {}
        self._iq_handlers: dict[tuple[str, str], IqHandler] = {}
        self._inline_handlers: dict[tuple[str, str], InlineIqHandler] = {}
        self._message_handlers: list[Callable[[etree._Element], None]] = []
        self._presence_handlers: list[Callable[[etree._Element], None]] = []
        self._pep_handlers: dict[str, list[Callable[[JID, PubSubEvent], None]]] = {}
        self._identities = {identity}
        self._features = set(BASE_FEATURES) | set(features)
        self._presence_sent: etree._Element | None = None
        self._presences: dict[JID, dict[JID, etree._Element]] = {}
        self._presence_changed = trio.Event()
        self._peer_caps: dict[JID, tuple[str, str, str]] = {}
        self._caps_cache: dict[str, DiscoInfo] = {}
        self._options_refused: set[frozenset[str]] = set()  # publish-options the server refused
        self._closing = False
        self._closed_by_server = trio.Event()
        self._broken: BaseException | None = None
        #: How the login authenticated: the SASL mechanism and the channel-binding type.
        self.sasl_mechanism: str | None = None
        self.channel_binding: str | None = None
        self.register_iq_handler("get", f"{{{_ns.DISCO_INFO}}}query", self._on_disco_info)
        self.register_iq_handler("get", f"{{{_ns.DISCO_ITEMS}}}query", self._on_disco_items)
        self.register_iq_handler("get", f"{{{_ns.PING}}}ping", self._on_ping)

    # -- identity and features -------------------------------------------------------------

    @property
    def jid(self) -> JID:
        """Our full JID as bound by the server."""
        return self._jid

    @property
    def nursery(self) -> trio.Nursery:
        """The client's nursery: tasks started here end when the client closes."""
        return self._nursery

    @property
    def disco_info(self) -> DiscoInfo:
        """What we advertise in disco#info (and in caps)."""
        return DiscoInfo(frozenset(self._identities), frozenset(self._features))

    async def add_features(self, *features: str) -> None:
        """Advertise more disco features; re-sends presence (new caps) if already available."""
        before = len(self._features)
        self._features.update(features)
        if len(self._features) != before and self._presence_sent is not None:
            await self.send_presence()

    # -- sending ---------------------------------------------------------------------------

    async def send(self, stanza: etree._Element) -> None:
        """Send one stanza. Safe to call from several tasks at once: stanzas are written in
        the order of the calls, those queued while another is being written together with
        one write (one TLS record). The stanza is queued before the call first yields;
        cancelling the call stops it only until then."""
        data = serialize(stanza)
        if self._broken is not None:
            raise ConnectionLost(f"cannot send: {self._broken}")
        await trio.lowlevel.checkpoint_if_cancelled()
        self._outbox.append(data)
        batch = self._batch
        if self._send_lock.locked():
            await batch.written.wait()  # the writing task writes ours too
        else:
            self._send_lock.acquire_nowait()  # no checkpoint: the stanza has a writer
            try:
                await self._flush()
            finally:
                self._send_lock.release()
        if batch.error is not None:
            raise ConnectionLost(batch.error)

    async def _flush(self) -> None:
        """Write the outbox until it is empty; call holding the send lock.

        A stanza handed to the stream must be written whole: a cancellation in the middle
        would leave half a stanza in the XML stream, and an SSLStream whose send_all was
        cancelled is broken for good, which would end the connection for every user of this
        client. So the writes are shielded, and bounded: a server that stops reading for
        that long is treated as gone.
        """
        while self._outbox:
            data = b"".join(self._outbox)
            self._outbox.clear()
            batch, self._batch = self._batch, _Batch()
            try:
                with trio.move_on_after(_SEND_TIMEOUT, shield=True) as writing:
                    await self._stream.send_all(data)
                if writing.cancelled_caught:
                    batch.error = f"the server did not read a stanza for {_SEND_TIMEOUT} s"
                    self._fail(ConnectionLost(batch.error))
                    await close_forcefully(self._stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                batch.error = f"the connection to the server is gone ({exc})"
            finally:
                batch.written.set()
            if batch.error is not None:
                self._fail_queued(batch.error)
                return

    def _fail_queued(self, error: str) -> None:
        """Fail every stanza still queued (their tasks raise ConnectionLost)."""
        self._outbox.clear()
        batch, self._batch = self._batch, _Batch()
        batch.error = error
        batch.written.set()

    async def iq(self, iq: etree._Element) -> etree._Element:
        """Send an ``get``/``set`` iq and wait for its answer.

        Returns the ``result`` iq; raises :class:`StanzaError` for an ``error`` answer and
        :class:`ConnectionLost` if the connection ends first. Bound the wait with a cancel
        scope; an abandoned request is forgotten (a late answer is dropped).
        """
        iq_id = iq.get("id")
        if not iq_id or iq.get("type") not in ("get", "set"):
            raise ValueError("iq() needs an iq of type get or set with an id")
        if iq_id in self._pending:
            raise ValueError(f"an iq with id {iq_id!r} is already waiting for its answer")
        pending = _Pending(self._reply_sources(iq.get("to")))
        self._pending[iq_id] = pending
        try:
            await self.send(iq)
            await pending.done.wait()
        finally:
            del self._pending[iq_id]
        if pending.error is not None:
            raise ConnectionLost(str(pending.error))
        assert pending.reply is not None
        if pending.reply.get("type") == "error":
            raise parse_stanza_error(pending.reply)
        return pending.reply

    async def request(
        self, type_: IqType, payload: etree._Element, to: JID | str | None = None
    ) -> etree._Element | None:
        """Send ``payload`` in an iq and return the payload of the result (``None`` if empty)."""
        reply = await self.iq(make_iq(type_, payload, to=to))
        return next((c for c in reply if isinstance(c.tag, str)), None)

    def _reply_sources(self, to: str | None) -> frozenset[str | None]:
        own = {None, str(self._jid), str(self._jid.bare), self._jid.domain}
        if to is None:
            return frozenset(own)
        try:
            target = JID(to)
        except InvalidJID:
            return frozenset({to})
        if target == self._jid.bare:
            return frozenset(own)
        return frozenset({str(target)})

    # -- handlers --------------------------------------------------------------------------

    def register_iq_handler(self, type_: IqType, payload_tag: str, handler: IqHandler) -> None:
        """Answer incoming ``type_`` iqs whose payload has ``payload_tag`` (Clark notation)."""
        if type_ not in ("get", "set"):
            raise ValueError("iq handlers are for 'get' or 'set'")
        self._iq_handlers[(type_, payload_tag)] = handler

    def register_inline_iq_handler(
        self, type_: IqType, payload_tag: str, handler: InlineIqHandler
    ) -> None:
        """Like :meth:`register_iq_handler`, but ``handler`` runs in the reader task, so iqs are
        handled strictly in the order they arrived (Jingle actions, IBB data).

        The handler answers the iq itself (:meth:`send`) and must not wait for other stanzas:
        while it runs, nothing else is read. Raising :class:`StanzaError` answers with it.
        """
        if type_ not in ("get", "set"):
            raise ValueError("iq handlers are for 'get' or 'set'")
        self._inline_handlers[(type_, payload_tag)] = handler

    def unregister_iq_handler(self, type_: IqType, payload_tag: str) -> None:
        """Remove the handler of ``type_`` requests with this payload (none: nothing to do)."""
        self._iq_handlers.pop((type_, payload_tag), None)
        self._inline_handlers.pop((type_, payload_tag), None)

    def on_message(self, callback: Callable[[etree._Element], None]) -> Callable[[], None]:
        """Call ``callback`` for each incoming message; returns a function that unregisters it."""
        self._message_handlers.append(callback)
        return lambda: self._message_handlers.remove(callback)

    def on_presence(self, callback: Callable[[etree._Element], None]) -> Callable[[], None]:
        """Call ``callback`` for each incoming presence; returns an unregister function."""
        self._presence_handlers.append(callback)
        return lambda: self._presence_handlers.remove(callback)

    async def on_pep(
        self, node: str, callback: Callable[[JID, PubSubEvent], None], *, notify: bool = True
    ) -> Callable[[], None]:
        """Follow PEP ``node``: ``callback(publisher_bare_jid, event)`` for each notification.

        With ``notify`` (the default) ``node+notify`` is advertised in caps, so the server sends
        us contacts' items (XEP-0163).
        """
        self._pep_handlers.setdefault(node, []).append(callback)
        if notify:
            await self.add_features(f"{node}+notify")
        return lambda: self._pep_handlers[node].remove(callback)

    # -- presence, disco, caps, ping -------------------------------------------------------

    async def send_presence(
        self,
        *,
        to: JID | str | None = None,
        type_: str | None = None,
        show: str | None = None,
        status: str | None = None,
        priority: int | None = None,
    ) -> None:
        """Send presence; broadcast presence carries our entity caps."""
        p = E(PRESENCE, {"to": None if to is None else str(to), "type": type_})
        if show:
            p.append(E(f"{{{_ns.CLIENT}}}show", text=show))
        if status:
            p.append(E(f"{{{_ns.CLIENT}}}status", text=status))
        if priority is not None:
            p.append(E(f"{{{_ns.CLIENT}}}priority", text=str(priority)))
        if type_ is None:
            p.append(caps_element(self.disco_info))
        if to is None:
            self._presence_sent = None if type_ == "unavailable" else p
        await self.send(p)

    def resources(self, bare: JID) -> list[JID]:
        """Full JIDs of ``bare`` currently available, as seen in presence."""
        return list(self._presences.get(bare.bare, {}))

    async def wait_available(self, jid: JID | str) -> JID:
        """Wait until ``jid`` (a full JID, or any resource of a bare JID) is available; return
        the full JID. Bound the wait with a cancel scope."""
        jid = JID(jid)
        while True:
            found = [r for r in self.resources(jid.bare) if jid.is_bare or r == jid]
            if found:
                return found[-1]
            await self._presence_changed.wait()

    async def disco(self, jid: JID | str, node: str | None = None) -> DiscoInfo:
        """disco#info of ``jid`` (optionally a node)."""
        result = await self.request("get", E(f"{{{_ns.DISCO_INFO}}}query", {"node": node}), jid)
        if result is None:
            raise RemoteProtocolError(f"{jid} sent an empty disco#info result")
        return DiscoInfo.from_element(result)

    async def disco_items(self, jid: JID | str, node: str | None = None) -> list[DiscoItem]:
        """disco#items of ``jid``."""
        result = await self.request("get", E(f"{{{_ns.DISCO_ITEMS}}}query", {"node": node}), jid)
        return [] if result is None else parse_disco_items(result)

    async def features_of(self, jid: JID) -> DiscoInfo:
        """What ``jid`` supports, from its entity caps cache when possible (XEP-0115).

        A caps ``ver`` is cached only after the disco#info result was checked to hash to it.
        """
        caps = self._peer_caps.get(jid)
        if caps is not None and caps[2] in self._caps_cache:
            return self._caps_cache[caps[2]]
        if caps is None:
            return await self.disco(jid)
        algo, node, ver = caps
        info = await self.disco(jid, f"{node}#{ver}")
        if algo == "sha-1" and caps_ver(info) == ver:
            self._caps_cache[ver] = info
        return info

    async def ping(self, jid: JID | str | None = None) -> float:
        """XEP-0199 ping (the server if ``jid`` is ``None``); returns the round trip in seconds."""
        start = trio.current_time()
        await self.request("get", E(f"{{{_ns.PING}}}ping"), jid or self._jid.domain)
        return trio.current_time() - start

    async def _on_disco_info(self, iq: etree._Element) -> etree._Element:
        query = iq[0]
        node = query.get("node")
        info = self.disco_info
        # Any caps node of ours gets the current info: a peer may ask about a ver we just
        # replaced; it will not cache the answer under the old ver (the hash won't match).
        if node is not None and not node.startswith(f"{CAPS_NODE}#"):
            raise StanzaError("item-not-found")
        el = info.to_element()
        if node is not None:
            el.set("node", node)
        return el

    async def _on_disco_items(self, iq: etree._Element) -> etree._Element:
        return E(f"{{{_ns.DISCO_ITEMS}}}query", {"node": iq[0].get("node")})

    async def _on_ping(self, iq: etree._Element) -> None:
        return None

    # -- PEP -------------------------------------------------------------------------------

    async def publish(
        self,
        node: str,
        payload: etree._Element,
        *,
        item_id: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> None:
        """Publish ``payload`` to our PEP ``node`` with optional publish-options.

        Servers differ in which publish-options they take, so they are negotiated: if the node
        exists with another configuration (``precondition-not-met``), it is reconfigured to
        ``options`` and the publish is retried once; if the server refuses the publish-options
        form itself (ejabberd 23.01 takes no ``pubsub#max_items`` there), the node is
        configured (or created configured) first and the item published without the form,
        which is done directly for later publishes with the same option fields. If the node
        is missing and the server did not create it for the publish (``item-not-found``), it is
        created configured and the publish retried once. The item is never published to a
        node the options could not be applied to: that raises the server's
        :class:`StanzaError`. A request answered with a temporary server failure (see
        ``is_temporary_failure``) is sent again, a bounded number of
        times.
        """
        created = False
        while True:
            if options and frozenset(options) in self._options_refused:
                await self._configure_node(node, options, None)
                await self._pep_set(publish_request(node, payload, item_id))
                return
            try:
                await self._pep_set(publish_request(node, payload, item_id, options))
                return
            except StanzaError as exc:
                step = publish_recovery(exc.condition, exc.app_condition, bool(options))
                if step is PublishRecovery.RAISE or not options:
                    raise
                if step is PublishRecovery.CREATE_AND_RETRY:
                    if created:
                        raise
                    # ejabberd: its creation of the node for this publish failed.
                    await self._configure_node(node, options, None)
                    created = True
                    continue
                await self._configure_node(node, options, exc)
                if step is PublishRecovery.CONFIGURE_AND_RETRY:
                    await self._pep_set(publish_request(node, payload, item_id, options))
                else:
                    self._options_refused.add(frozenset(options))
                    await self._pep_set(publish_request(node, payload, item_id))
                return

    async def _pep_set(self, payload: etree._Element) -> None:
        """Send a PEP ``set`` request, again after a pause if it failed only for the moment.

        ejabberd 23.01 aborts a node creation that deadlocked with another account's (a
        temporary ``internal-server-error``); the same request then succeeds. The pauses are
        jittered so that two clients that collided do not collide again in step.
        """
        for attempt in range(1, TEMPORARY_FAILURE_ATTEMPTS + 1):
            try:
                await self.request("set", payload)
                return
            except StanzaError as exc:
                if attempt == TEMPORARY_FAILURE_ATTEMPTS or not is_temporary_failure(
                    exc.condition, exc.type
                ):
                    raise
                pause = TEMPORARY_FAILURE_PAUSE * 2 ** (attempt - 1)
                log.debug("PEP request failed for the moment (%s), sending it again", exc)
                await trio.sleep(pause * random.uniform(0.5, 1.5))

    async def _configure_node(
        self, node: str, options: Mapping[str, str], refused: StanzaError | None
    ) -> None:
        """Configure our PEP ``node`` to ``options``, creating it configured if it is missing."""
        try:
            try:
                await self._pep_set(configure_request(node, options))
            except StanzaError as exc:
                if exc.condition != "item-not-found":
                    raise
                try:
                    await self._pep_set(create_request(node, options))
                except StanzaError as exc:
                    if exc.condition != "conflict":
                        raise
                    # Created meanwhile (another client of the account): configure it.
                    await self._pep_set(configure_request(node, options))
        except StanzaError as exc:
            why = f"publish-options refused ({refused}), " if refused is not None else ""
            raise StanzaError(
                exc.condition,
                exc.type,
                f"PEP node {node!r}: {why}node configuration refused: {exc.text or exc}",
                exc.app_condition,
                exc.element,
                exc.sender,
            ) from exc

    async def get_items(
        self,
        jid: JID | str,
        node: str,
        *,
        item_ids: Sequence[str] = (),
        max_items: int | None = None,
    ) -> list[PubSubItem]:
        """Items of ``jid``'s PEP ``node`` (all, the given ids, or the last ``max_items``)."""
        result = await self.request("get", items_request(node, item_ids, max_items), JID(jid).bare)
        return parse_pubsub_items(result, node)

    async def retract(self, node: str, item_id: str, *, notify: bool = True) -> None:
        """Retract one item of our PEP ``node``."""
        await self.request("set", retract_request(node, item_id, notify))

    # -- the reader task -------------------------------------------------------------------

    async def _run_reader(self, leftover: Sequence[Event]) -> None:
        try:
            for event in leftover:
                await self._dispatch(event)
            while not self._closed_by_server.is_set():
                try:
                    data = await self._stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    if self._closing:
                        return
                    raise ConnectionLost(f"the connection to the server broke: {exc}") from None
                if not data:
                    if self._closing:
                        return
                    raise ConnectionLost("the server closed the connection")
                for event in self._parser.feed(data):
                    await self._dispatch(event)
        except XMLError as exc:
            self._fail(exc)
            await send_stream_error(self._stream, exc.condition, str(exc))
            await close_forcefully(self._stream)
            raise
        except JetError as exc:
            self._fail(exc)
            await close_forcefully(self._stream)
            raise

    def _fail(self, exc: BaseException) -> None:
        self._broken = exc
        for pending in self._pending.values():
            pending.error = exc
            pending.done.set()

    async def _dispatch(self, event: Event) -> None:
        if isinstance(event, StreamClosed):
            self._closed_by_server.set()
            if not self._closing:
                raise ConnectionLost("the server closed the stream")
            return
        if isinstance(event, StreamOpened):
            raise RemoteProtocolError("unexpected second stream header")
        assert isinstance(event, StanzaReceived)
        el = event.element
        if el.tag == IQ:
            await self._on_iq(el)
        elif el.tag == MESSAGE:
            self._on_message(el)
        elif el.tag == PRESENCE:
            self._on_presence(el)
        elif el.tag == _STREAM_ERROR:
            raise parse_stream_error(el)
        else:
            log.debug("ignoring unknown top-level element %s", el.tag)

    async def _on_iq(self, iq: etree._Element) -> None:
        type_ = iq.get("type")
        if type_ in ("result", "error"):
            pending = self._pending.get(iq.get("id", ""))
            if pending is None:
                log.debug("dropping an answer to no pending request: id=%s", iq.get("id"))
                return
            if _normalise(iq.get("from")) not in pending.expected_from:
                log.warning("dropping an iq answer from unexpected %s", iq.get("from"))
                return
            pending.reply = iq
            pending.done.set()
            return
        payload = next((c for c in iq if isinstance(c.tag, str)), None)
        handler = None
        if type_ in ("get", "set") and payload is not None:
            key = (type_, str(payload.tag))
            inline = self._inline_handlers.get(key)
            if inline is not None:
                try:
                    await inline(iq)
                except StanzaError as exc:
                    await self._send_quietly(error_reply(iq, exc.condition, exc.type, exc.text))
                return
            handler = self._iq_handlers.get(key)
        if handler is None:
            if type_ in ("get", "set"):
                self._nursery.start_soon(self._send_quietly, error_reply(iq, "service-unavailable"))
            return
        self._nursery.start_soon(self._answer, handler, iq)

    async def _answer(self, handler: IqHandler, iq: etree._Element) -> None:
        try:
            payload = await handler(iq)
        except StanzaError as exc:
            reply = error_reply(iq, exc.condition, exc.type, exc.text)
        except JetError as exc:
            log.warning("handler for %s failed: %s", iq[0].tag, exc)
            reply = error_reply(iq, "bad-request", None, str(exc))
        else:
            reply = make_result(iq, payload)
        await self._send_quietly(reply)

    async def _send_quietly(self, stanza: etree._Element) -> None:
        with contextlib.suppress(ConnectionLost):  # the reader reports the broken connection
            await self.send(stanza)

    def _on_message(self, message: etree._Element) -> None:
        event = parse_event(message)
        if event is not None:
            sender = _normalise(message.get("from"))
            try:
                publisher = JID(sender).bare if sender else self._jid.bare
            except InvalidJID:
                return
            for cb in list(self._pep_handlers.get(event.node, ())):
                cb(publisher, event)
        for handler in list(self._message_handlers):
            handler(message)

    def _on_presence(self, presence: etree._Element) -> None:
        raw = presence.get("from")
        try:
            sender = JID(raw) if raw else None
        except InvalidJID:
            sender = None
        if sender is not None and not sender.is_bare:
            type_ = presence.get("type")
            if type_ is None:
                self._presences.setdefault(sender.bare, {})[sender] = presence
                caps = parse_caps(presence)
                if caps is not None:
                    self._peer_caps[sender] = caps
            elif type_ == "unavailable":
                self._presences.get(sender.bare, {}).pop(sender, None)
                self._peer_caps.pop(sender, None)
        self._presence_changed.set()
        self._presence_changed = trio.Event()
        for handler in list(self._presence_handlers):
            handler(presence)

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the stream cleanly (waits briefly for the server's closing tag)."""
        if self._closing:
            return
        self._closing = True
        with trio.move_on_after(_CLOSE_GRACE, shield=True):
            if self._broken is None:
                try:
                    async with self._send_lock:
                        await self._flush()  # what other tasks queued goes first
                        self._outbox.append(stream_footer())
                        await self._flush()
                    await self._closed_by_server.wait()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        self._fail_queued("the stream is closed")
        await close_forcefully(self._stream)


def _normalise(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return str(JID(raw))
    except InvalidJID:
        return raw


@asynccontextmanager
async def open_client(
    jid: JID | str,
    password: str,
    *,
    host: str | None = None,
    port: int | None = None,
    security: Security = "starttls",
    ca_file: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    mechanisms: Sequence[str] = DEFAULT_MECHANISMS,
    allow_plain: bool = True,
    features: Iterable[str] = (),
    presence: bool = True,
    max_stanza_bytes: int = DEFAULT_MAX_STANZA_BYTES,
    login_timeout: float = DEFAULT_LOGIN_TIMEOUT,
    stage_timeout: float | None = None,
) -> AsyncIterator[Client]:
    """Connect and log in; the client lives as long as the ``async with`` block.

    ``host``/``port`` override the SRV lookup. ``security`` is ``"starttls"`` (the default) or
    ``"direct"`` (TLS from the first byte, XEP-0368; SRV targets without direct TLS then need
    STARTTLS). Whatever the path, nothing of the account is sent before TLS is established and
    the certificate verified for the account's domain (against the system store, ``ca_file``,
    or the given ``ssl_context``; subject alternative names only). ``INSECURE_TEST_ONLY`` lets
    SCRAM run without TLS against a test server; never use it elsewhere. ``allow_plain=False``
    refuses SASL PLAIN even over TLS. SCRAM ``-PLUS`` with channel binding is used when the
    server offers it. With ``presence`` (default) initial presence with our caps is sent.

    The whole login takes at most ``login_timeout`` seconds; each stage of one attempt
    (connect, TLS, stream header, features, SASL, bind) at most ``stage_timeout`` (default: a
    third of ``login_timeout``), after which the next SRV target is tried.

    Errors: :class:`DNSError`, :class:`ConnectionFailed` (and :class:`LoginTimeout`),
    :class:`TLSError`, :class:`AuthenticationError` (and :class:`NoCommonMechanism`,
    :class:`DowngradeDetected`), :class:`StreamError`, :class:`ConnectionLost`,
    :class:`XMLError`, :class:`RemoteProtocolError`: each raised alone, not in an exception group.
    """
    jid = JID(jid)
    ctx = ssl_context or make_ssl_context(ca_file)
    if not allow_plain:
        mechanisms = [m for m in mechanisms if m.upper() != "PLAIN"]
    stream, parser, negotiated, leftover = await connect_stream(
        jid,
        password,
        host=host,
        port=port,
        security=security,
        ssl_context=ctx,
        mechanisms=mechanisms,
        max_stanza_bytes=max_stanza_bytes,
        login_timeout=login_timeout,
        stage_timeout=stage_timeout,
    )
    client: Client | None = None
    try:
        with unwrapped_errors():
            async with trio.open_nursery() as nursery:
                client = Client(stream, parser, negotiated.jid, nursery, features=features)
                client.sasl_mechanism = negotiated.mechanism
                client.channel_binding = negotiated.channel_binding
                nursery.start_soon(client._run_reader, leftover)
                try:
                    if presence:
                        await client.send_presence()
                    yield client
                finally:
                    await client.aclose()
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Several failures because the connection broke: the lost connection is the cause.
        if client is not None and client._broken is not None:
            raise client._broken from group
        raise
