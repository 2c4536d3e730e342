"""Setting up a session's transport: what the facade offers or answers (the WebRTC data
channel, SOCKS5 bytestreams, in-band bytestreams), and running the exchange the session
machine decides until one stream is established (XEP-0260 candidates and proxy activation,
XEP-0261 IBB, the data channel, and the fallback to IBB by transport-replace).

The decisions (which transport, which candidate, when to fall back) are the session
machine's (``session.py``); this is the trio shell that carries them out.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

import trio
from lxml import etree

from .._errors import JetError
from .._jingle.machine import new_sid
from .._jingle.message import Content, JingleAction, Role
from .._transports.ibb import IBBStream, IBBTransport, open_ibb_stream
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
from .._transports.s5b_direct import DirectCandidates
from .._transports.socks5 import Socks5Error, dstaddr
from .._trio_util import unwrapped_errors
from .._xmpp import ns as _ns
from .._xmpp.client import Client
from .._xmpp.disco import DiscoInfo
from .._xmpp.jid import JID
from .._xmpp.stanza import make_iq
from .datachannel import WebRTCSettings, connect_data_channel, open_data_channel
from .driver import Established, SessionShell, _within
from .session import (
    AcceptDirect,
    ActivateProxy,
    AwaitActivated,
    FallBack,
    TransportKind,
    UsePicked,
    WebRTCExchange,
    choose_transport,
    is_ibb,
    kind_of,
)
from .types import TransportFailed

__all__ = ["Transport", "TransportSetup"]

log = logging.getLogger("jet_trio.transfer")

Transport = Literal["auto", "webrtc", "s5b", "ibb"]
_WEBRTC = "urn:xmpp:jingle:transports:webrtc-datachannel:1"


class TransportSetup:
    """The transports of one :class:`~jet_trio.FileTransfer`: its direct SOCKS5 listener,
    the server's proxies (asked once), IBB settings, the data channel's settings
    (``webrtc``: ``None`` when off) and ``relay_only`` (no address of ours reaches a peer:
    no direct S5B candidate, no S5B offered). ``ibb`` is the switchboard's table of open IBB
    streams (where their iqs are routed); ``features_of`` what a peer advertises."""

    def __init__(
        self,
        client: Client,
        *,
        timeout: float,
        direct: DirectCandidates | None,
        use_proxies: bool,
        ibb_block_size: int,
        ibb_window: int,
        relay_only: bool,
        webrtc: WebRTCSettings | None,
        ibb: dict[tuple[JID, str], IBBStream],
        features_of: Callable[[JID], Awaitable[DiscoInfo]],
    ) -> None:
        self.client = client
        self._timeout = timeout
        self._direct = direct
        self._listener = direct.listener if direct is not None else None
        self._use_proxies = use_proxies
        self._ibb_block_size = ibb_block_size
        self._ibb_window = ibb_window
        self._relay_only = relay_only
        self._webrtc = webrtc
        self._ibb = ibb
        self._features_of = features_of
        self._proxies: list[StreamHost] | None = None

    def features(self) -> list[str]:
        """The disco features of the transports beyond IBB (which is always there)."""
        feats: list[str] = []
        if self._listener is not None or self._use_proxies:
            feats += [_ns.JINGLE_S5B, _ns.BYTESTREAMS]
        if self._webrtc is not None:
            feats.append(_WEBRTC)
        return feats

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
        if self._direct is not None and not self._relay_only:
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

    async def establish(
        self,
        session: SessionShell,
        ours: etree._Element,
        theirs: etree._Element,
        cleanup: contextlib.AsyncExitStack,
    ) -> Established:
        if session.machine.transport == "webrtc":
            return await self._establish_webrtc(session, ours, theirs, cleanup)
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

    def usable(self) -> frozenset[TransportKind]:
        """The transports this service may use (offered, or accepted in an offer)."""
        kinds: set[TransportKind] = {"s5b", "ibb"}
        if self._webrtc is not None:
            kinds.add("webrtc")
        return frozenset(kinds)

    async def _establish_webrtc(
        self,
        session: SessionShell,
        ours: etree._Element,
        theirs: etree._Element,
        cleanup: contextlib.AsyncExitStack,
    ) -> Established:
        """Connect the data channel of the offer and answer ``ours``/``theirs``; replace
        it by IBB (``transport-replace``) when it cannot be set up within its bound."""
        assert self._webrtc is not None and session.webrtc is not None
        local = session.webrtc.local
        assert local is not None
        exchange = session.machine.webrtc(theirs)
        established = await connect_data_channel(session, exchange, local, cleanup)
        if established is not None:
            return established
        return await self._fallback_to_ibb(session, cleanup)

    async def initial(self, transport: Transport, session: SessionShell) -> etree._Element:
        usable = self.usable()
        if self._relay_only:
            usable -= {"s5b"}  # S5B would reveal our addresses
        if transport != "ibb" and "webrtc" in usable:
            features = await self._features_of(session.peer)
            kind = choose_transport(transport, usable, features.has)
        else:
            kind = choose_transport(transport, usable, lambda _: False)
        if kind == "ibb":
            return build_ibb(IBBTransport(new_sid(), self._ibb_block_size))
        if kind == "webrtc":
            assert self._webrtc is not None and session.cleanup is not None
            try:
                local = await open_data_channel(session, self._webrtc, session.cleanup)
            except TransportFailed as exc:
                if transport == "webrtc":
                    raise
                # Nothing offered yet: the next transport in the order (not S5B if relay-only).
                log.info("no data channel to offer %s (%s): the next transport", session.peer, exc)
                if session.webrtc is not None:
                    await session.webrtc.aclose()
                kind = choose_transport("auto", usable - {"webrtc"}, lambda _: False)
            else:
                return WebRTCExchange.element(local)
        if kind == "ibb":
            return build_ibb(IBBTransport(new_sid(), self._ibb_block_size))
        return build_s5b(await self._our_s5b(session, new_sid()))

    async def _responder_transport(
        self, session: SessionShell, theirs: etree._Element
    ) -> etree._Element:
        if is_ibb(theirs):
            return session.machine.answer_ibb(theirs, self._ibb_block_size)
        if kind_of(theirs) == "webrtc":
            assert self._webrtc is not None and session.cleanup is not None
            offer = WebRTCExchange.parse(theirs)
            local = await open_data_channel(session, self._webrtc, session.cleanup, offer)
            return WebRTCExchange.element(local)
        return build_s5b(await self._our_s5b(session, parse_s5b(theirs).sid))

    async def accept_and_establish(
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
        return await self.establish(session, ours, theirs, cleanup)

    def proxy_name(self, established: Established) -> str | None:
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
