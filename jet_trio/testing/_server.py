"""The in-process XMPP server's trio shell: listener, per-connection tasks, delivery queues."""

from __future__ import annotations

import inspect
import math
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import trio

from .._errors import XMLError
from .._xmpp.jid import JID, InvalidJID
from .._xmpp.negotiation import _end_point_hash
from .._xmpp.xml import (
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    XMLStreamParser,
    serialize,
    stream_footer,
)
from ._elements import (
    IQ,
    MESSAGE,
    PRESENCE,
    Element,
    StanzaError,
    error_reply,
    stanza,
    stream_error,
)
from ._negotiation import (
    Action,
    BindRequested,
    Close,
    Phase,
    Restart,
    Send,
    ServerNegotiation,
    StartTLS,
)
from ._router import Activate, Deliver, Disconnect, ProxyInfo, Router, RouterAction, Session

_STANZAS = frozenset({IQ, MESSAGE, PRESENCE})
_RECEIVE_SIZE = 65536
_CLOSE_TIMEOUT = 1.0


class Proxy65Like(Protocol):
    """What the server needs from a XEP-0065 proxy, such as :func:`serve_proxy65`'s."""

    @property
    def jid(self) -> str | JID:
        """The proxy's JID (the server lists it in disco#items)."""
        ...

    @property
    def host(self) -> str:
        """The address clients connect to."""
        ...

    @property
    def port(self) -> int:
        """The port clients connect to."""
        ...

    def activate(self, sid: str, requester: JID, target: JID) -> object:
        """Pair the two connections of ``sid``; may be a coroutine function. Raise on failure."""
        ...


@dataclass
class ServerStats:
    """A snapshot of the server's counters (``server.stats``)."""

    #: Client connections accepted.
    connections: int = 0
    #: TLS handshakes completed.
    tls_handshakes: int = 0
    #: Successful logins.
    auth_successes: int = 0
    #: Failed logins.
    auth_failures: int = 0
    #: Resources bound.
    binds: int = 0
    #: Connections dropped by :meth:`Server.kick`.
    kicks: int = 0
    #: The conditions of the stream errors the server sent.
    stream_errors: list[str] = field(default_factory=list)
    #: Stanzas received from clients.
    stanzas_received: int = 0
    #: Stanzas delivered to clients.
    stanzas_delivered: int = 0
    #: disco#info queries the server sent to learn a client's entity capabilities.
    caps_queries: int = 0
    #: PEP notifications sent.
    notifications: int = 0
    #: SOCKS5 bytestream activations relayed to the proxy.
    activations: int = 0
    #: (SASL mechanism, channel-binding type or None) of each successful login.
    logins: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass(frozen=True)
class _CloseWith:
    condition: str | None


class _Connection:
    """One client connection: the reader runs in the handler, a writer task drains ``outbox``."""

    def __init__(self, server: Server, stream: trio.abc.Stream) -> None:
        self.server = server
        self.stream = stream
        # Until bound, the connection has limited time (a client that never finishes is dropped).
        deadline = trio.current_time() + server.negotiation_timeout
        self.cancel_scope = trio.CancelScope(deadline=deadline)
        self.session: Session | None = None
        self.abrupt = False
        self._outbox, self._outbox_receive = trio.open_memory_channel[bytes | _CloseWith](math.inf)
        self._queued = 0  # bytes in the outbox
        self._overflowed = False
        self._writing = False
        self._negotiation = ServerNegotiation(
            server.domain,
            server.router.password_of,
            tls_offered=server.tls is not None,
            tls_required=server.require_tls,
            secure=server.direct_tls,
            allow_plain_without_tls=server.allow_plain_without_tls,
            binding_types=server.binding_types,
            announce_bindings=server.announce_bindings,
            downgrade_protection=server.downgrade_protection,
        )
        self._parser = XMLStreamParser()

    def enqueue(self, item: bytes | _CloseWith) -> None:
        """Queue bytes (or the end of the stream) for the writer; never blocks. A client that
        does not read what it is sent is disconnected once ``max_queued`` bytes wait for it,
        with the stream error ``resource-constraint`` (what ejabberd does, too)."""
        if isinstance(item, bytes):
            if self._overflowed:
                return
            if self._queued + len(item) > self.server.max_queued:
                self._overflowed = True
                self.server._stats.stream_errors.append("resource-constraint")
                self.kick()
                return
            self._queued += len(item)
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            self._outbox.send_nowait(item)

    def kick(self) -> None:
        self.abrupt = True
        self.cancel_scope.cancel()

    async def run(self) -> None:
        if self.server.direct_tls:
            await self._start_tls()
        async with trio.open_nursery() as nursery:
            try:
                await self._read(nursery)
            finally:
                self._leave()
                self.enqueue(_CloseWith(None))

    async def _read(self, nursery: trio.Nursery) -> None:
        while True:
            data = await self.stream.receive_some(_RECEIVE_SIZE)
            if not data:
                return
            try:
                events = self._parser.feed(data)
            except XMLError as exc:
                await self._perform(self._negotiation.stream_error(exc.condition), nursery)
                return
            for event in events:
                if isinstance(event, StreamOpened):
                    actions = self._negotiation.stream_opened(event.attrs, event.default_namespace)
                elif isinstance(event, StreamClosed):
                    actions = self._negotiation.stream_closed()
                elif self._negotiation.phase is Phase.BOUND:
                    actions = await self._stanza(event)
                else:
                    actions = self._negotiation.receive(event.element)
                if not await self._perform(actions, nursery):
                    return
                if any(isinstance(a, StartTLS | Restart) for a in actions):
                    break  # whatever followed belongs to the old stream: discard it

    async def _stanza(self, event: StanzaReceived) -> list[Action]:
        assert self.session is not None
        element = event.element
        if element.tag not in _STANZAS:
            return self._negotiation.stream_error("unsupported-stanza-type")
        for action in self.server._dispatch(self.server.router.receive(self.session, element)):
            await self.server._activate(action)
        return []

    async def _perform(self, actions: list[Action], nursery: trio.Nursery) -> bool:
        """Carry out negotiation actions; False when the connection is to close."""
        stats = self.server._stats
        for action in actions:
            if isinstance(action, Send):
                await self._send(action.data)
            elif isinstance(action, StartTLS):
                await self._start_tls()
                self._negotiation.tls_established()
                self._parser = XMLStreamParser()
            elif isinstance(action, Restart):
                stats.auth_successes += 1
                neg = self._negotiation
                stats.logins.append((neg.mechanism or "?", neg.channel_binding))
                self._parser = XMLStreamParser()
            elif isinstance(action, Close):
                if self._negotiation.error_condition is not None:
                    stats.stream_errors.append(self._negotiation.error_condition)
                return False
            elif isinstance(action, BindRequested):
                await self._bind(action, nursery)
        stats.auth_failures += self._negotiation.auth_failures
        self._negotiation.auth_failures = 0
        return True

    async def _bind(self, request: BindRequested, nursery: trio.Nursery) -> None:
        user = self._negotiation.user
        assert user is not None
        try:
            session, actions = self.server.router.bind(user, request.resource)
        except InvalidJID:
            iq = stanza("iq", {"id": request.iq_id})
            error = error_reply(iq, self.server.domain, StanzaError("bad-request", "modify"))
            await self._send(serialize(error))
            return
        self.session = session
        self.cancel_scope.deadline = math.inf
        self.server._connections[session] = self
        self.server._stats.binds += 1
        for action in self._negotiation.bound(request.iq_id, session.jid):
            assert isinstance(action, Send)
            await self._send(action.data)
        self._writing = True
        nursery.start_soon(self._write)
        self.server._dispatch(actions)

    async def _send(self, data: bytes) -> None:
        if self._writing:
            self.enqueue(data)
        else:
            await self.stream.send_all(data)

    async def _write(self) -> None:
        async with self._outbox_receive:
            async for item in self._outbox_receive:
                if isinstance(item, bytes):
                    await self.stream.send_all(item)
                    self._queued -= len(item)
                    continue
                if item.condition is not None:
                    self.server._stats.stream_errors.append(item.condition)
                    await self.stream.send_all(
                        serialize(stream_error(item.condition)) + stream_footer()
                    )
                self.cancel_scope.cancel()
                return

    async def _start_tls(self) -> None:
        assert self.server.tls is not None
        tls_stream = trio.SSLStream(self.stream, self.server.tls, server_side=True)
        self.stream = tls_stream
        await tls_stream.do_handshake()
        self.server._stats.tls_handshakes += 1
        bindings = self._negotiation.bindings
        bindings.clear()
        if tls_stream.version() == "TLSv1.2":  # tls-unique is undefined for TLS 1.3
            unique = tls_stream.get_channel_binding("tls-unique")
            if unique:
                bindings["tls-unique"] = unique
        if self.server.tls_certificate is not None:
            bindings["tls-server-end-point"] = _end_point_hash(self.server.tls_certificate)

    def _leave(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            if self.server._connections.get(session) is self:
                del self.server._connections[session]
            self.server._dispatch(self.server.router.unbind(session))

    async def aclose(self) -> None:
        self._leave()
        if self.abrupt:
            await trio.aclose_forcefully(self.stream)
            return
        with trio.move_on_after(_CLOSE_TIMEOUT) as scope:
            await self.stream.aclose()
        if scope.cancelled_caught:
            await trio.aclose_forcefully(self.stream)


class Server:
    """A running in-process XMPP server; see :func:`serve`."""

    def __init__(
        self,
        domain: str,
        *,
        host: str,
        tls: ssl.SSLContext | None,
        require_tls: bool,
        direct_tls: bool,
        accounts: Mapping[str, str],
        proxy65: Proxy65Like | None,
        allow_plain_without_tls: bool,
        negotiation_timeout: float,
        max_queued: int,
        tls_certificate: bytes | None = None,
        binding_types: tuple[str, ...] = ("tls-unique", "tls-server-end-point"),
        announce_bindings: bool = True,
        downgrade_protection: bool = True,
    ) -> None:
        self.domain = str(JID(domain))
        self.tls_certificate = tls_certificate
        self.binding_types = binding_types
        self.announce_bindings = announce_bindings
        self.downgrade_protection = downgrade_protection
        self.host = host
        self.port = 0
        self.tls = tls
        self.require_tls = require_tls
        self.direct_tls = direct_tls
        self.allow_plain_without_tls = allow_plain_without_tls
        self.negotiation_timeout = negotiation_timeout
        self.max_queued = max_queued
        self.proxy65 = proxy65
        info = None
        if proxy65 is not None:
            info = ProxyInfo(JID(str(proxy65.jid)), proxy65.host, proxy65.port)
        self.router = Router(self.domain, accounts, info)
        self._stats = ServerStats()
        self._connections: dict[Session, _Connection] = {}

    # -- public API -----------------------------------------------------------------------------

    def add_account(self, user: str, password: str) -> JID:
        """Create an account (or change its password); returns its bare JID."""
        return self.router.add_account(user, password)

    def jid(self, user: str, resource: str | None = None) -> JID:
        """The bare JID of account ``user`` (full with ``resource``)."""
        return JID.from_parts(user, self.domain, resource)

    def connected_resources(self, user: str) -> list[str]:
        """The bound resources of account ``user``."""
        local = self.jid(user).local
        return [str(s.jid.resource) for s in self.router.sessions(local)]

    def kick(self, who: str | JID) -> int:
        """Drop connections abruptly (no stream error, no TLS close_notify); returns how many.

        ``who`` is an account (all its resources) or one full JID.
        """
        jid = JID(who) if "@" in str(who) or isinstance(who, JID) else self.jid(str(who))
        kicked = 0
        for session, connection in list(self._connections.items()):
            if session.jid == jid or (jid.is_bare and session.jid.bare == jid):
                connection.kick()
                kicked += 1
        self._stats.kicks += kicked
        return kicked

    def pep_items(self, user: str, node: str) -> list[Element]:
        """The ``<item/>`` elements of a PEP node, oldest first (empty if there is no node)."""
        found = self.router.pep.nodes(self.jid(user)).get(node)
        return list(found.items.values()) if found is not None else []

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the counters."""
        routed = self.router.stats
        return ServerStats(
            connections=self._stats.connections,
            tls_handshakes=self._stats.tls_handshakes,
            auth_successes=self._stats.auth_successes,
            auth_failures=self._stats.auth_failures,
            binds=self._stats.binds,
            kicks=self._stats.kicks,
            stream_errors=list(self._stats.stream_errors),
            stanzas_received=routed.stanzas_received,
            stanzas_delivered=routed.stanzas_delivered,
            caps_queries=routed.caps_queries,
            notifications=routed.notifications,
            activations=self._stats.activations,
            logins=list(self._stats.logins),
        )

    # -- internals ------------------------------------------------------------------------------

    def _dispatch(self, actions: list[RouterAction]) -> list[Activate]:
        """Queue deliveries and disconnections; return the proxy activations left to await."""
        pending: list[Activate] = []
        for action in actions:
            if isinstance(action, Activate):
                pending.append(action)
                continue
            connection = self._connections.get(action.session)
            if connection is None:
                continue
            if isinstance(action, Deliver):
                connection.enqueue(serialize(action.element))
            elif isinstance(action, Disconnect):
                connection.enqueue(_CloseWith(action.condition))
        return pending

    async def _activate(self, action: Activate) -> None:
        assert self.proxy65 is not None
        error: str | None = None
        try:
            outcome = self.proxy65.activate(action.sid, action.session.jid, action.target)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:  # any refusal by the proxy becomes a stanza error
            condition = getattr(exc, "condition", None)
            error = condition if isinstance(condition, str) else "item-not-found"
        else:
            self._stats.activations += 1
        self._dispatch(self.router.activation_done(action, error))

    async def _handle(self, stream: trio.SocketStream) -> None:
        self._stats.connections += 1
        connection = _Connection(self, stream)
        try:
            with connection.cancel_scope:
                await connection.run()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away or TLS failed: nothing to tell anyone
        finally:
            await connection.aclose()


@asynccontextmanager
async def serve(
    domain: str = "localhost",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
    require_tls: bool | None = None,
    direct_tls: bool = False,
    accounts: Mapping[str, str] | None = None,
    proxy65: Proxy65Like | None = None,
    allow_plain_without_tls: bool = False,
    negotiation_timeout: float = 30.0,
    max_queued: int = 16 << 20,
    tls_certificate: bytes | None = None,
    binding_types: Sequence[str] = ("tls-unique", "tls-server-end-point"),
    announce_bindings: bool = True,
    downgrade_protection: bool = True,
) -> AsyncIterator[Server]:
    """Run an in-process XMPP server for ``domain`` on ``host:port`` (0: any free port).

    ``tls`` enables STARTTLS (required unless ``require_tls=False``), or TLS from the first byte
    with ``direct_tls``. ``accounts`` maps localparts to passwords; every account is a contact of
    every other. A connection not bound within ``negotiation_timeout`` seconds is dropped; one
    that leaves more than ``max_queued`` bytes unread is disconnected. All connections are
    closed when the block exits.

    Channel binding: over TLS 1.2 the server offers SCRAM ``-PLUS`` with ``tls-unique``; with
    ``tls_certificate`` (the DER certificate of ``tls``, e.g. :attr:`TestTLS.certificate_der`)
    also with ``tls-server-end-point``. ``binding_types`` limits the types offered,
    ``announce_bindings`` advertises them (XEP-0440), ``downgrade_protection`` adds XEP-0474's
    hash to SCRAM.
    """
    if tls is None and (direct_tls or require_tls):
        raise ValueError("direct_tls and require_tls need a tls context")
    server = Server(
        domain,
        host=host,
        tls=tls,
        require_tls=tls is not None if require_tls is None else require_tls,
        direct_tls=direct_tls,
        accounts=accounts or {},
        proxy65=proxy65,
        allow_plain_without_tls=allow_plain_without_tls,
        negotiation_timeout=negotiation_timeout,
        max_queued=max_queued,
        tls_certificate=tls_certificate,
        binding_types=tuple(binding_types),
        announce_bindings=announce_bindings,
        downgrade_protection=downgrade_protection,
    )
    try:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, server._handle, port, host=host)
            )
            server.port = listeners[0].socket.getsockname()[1]
            try:
                yield server
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Show the caller its own exception, not the group our internal nursery wrapped it in.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
