"""The Jingle WebRTC data-channel transport as a trio stream (optional extra ``jet-trio[webrtc]``).

ICE, DTLS and SCTP come from aiortc and aioice, which run on asyncio. They live in one dedicated
asyncio event loop in a thread of its own, owned by :func:`open_webrtc_session`:

* trio calls into the loop with :meth:`_AsyncioThread.call`: the coroutine runs as an asyncio
  task; cancelling the trio caller cancels that task.
* received messages cross back through :class:`_Inbox`: the asyncio thread hands each message
  to trio and, once more than ``receive_buffer`` bytes wait unread, blocks until trio reads.
  While it blocks, the SCTP association stops acknowledging, so the peer's congestion window
  closes: that is the backpressure on receive.
* sending waits (in asyncio) while the channel has more than :data:`MAX_BUFFERED` bytes
  buffered, as Conversations does.
* leaving the ``async with`` closes the peer connection inside the loop, stops the loop and
  joins the thread: nothing outlives the block, whatever ended it.

Signalling is the caller's (the Jingle session driver's): :class:`WebRTCSession` produces our
offer or answer as a :class:`~jet_trio._transports.webrtc_element.WebRTCTransportInfo`, takes
the peer's and its trickled candidates, and :meth:`WebRTCSession.connect` returns the
:class:`WebRTCStream` once both data channels are open. The DTLS fingerprint from the
signalling is enforced: a peer presenting another certificate is a man in the middle and
:class:`DtlsFingerprintMismatch` aborts the session.

aiortc is imported only when a session is opened.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import operator
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import trio

from .._errors import JetError, RemoteProtocolError, SecurityError
from .._xmpp.extdisco import ExternalService
from .ice import IceServer
from .webrtc_element import (
    SDP_MID,
    IceCandidate,
    WebRTCTransportInfo,
    candidate_to_sdp,
    from_sdp,
    to_sdp,
)

if TYPE_CHECKING:
    from aiortc import RTCDataChannel, RTCPeerConnection

__all__ = [
    "CHANNEL_LABEL",
    "CHANNEL_PROTOCOL",
    "MAX_BUFFERED",
    "WRITE_SIZE",
    "DataChannelError",
    "DataChannelStalled",
    "DataChannelTimeout",
    "DtlsFailed",
    "DtlsFingerprintMismatch",
    "IceFailed",
    "IceGatheringTimeout",
    "IceServer",
    "NoRelayServer",
    "TooManyRemoteCandidates",
    "WebRTCConfig",
    "WebRTCConnectError",
    "WebRTCError",
    "WebRTCSession",
    "WebRTCStream",
    "WebRTCUnavailable",
    "ice_servers_from_services",
    "open_webrtc_session",
]

T = TypeVar("T")

#: What Conversations opens: one channel per direction, this label and sub-protocol (DCEP).
CHANNEL_LABEL: Final = "test"
CHANNEL_PROTOCOL: Final = "xmpp-jingle"
#: Bytes per data-channel message we send (the interoperable size across WebRTC stacks;
#: Conversations writes 4 KiB messages and accepts up to its max-message-size).
WRITE_SIZE: Final = 16 * 1024
#: Sending pauses while more than this is buffered in the channel (Conversations' limit).
MAX_BUFFERED: Final = 256 * 1024
_LOW_BUFFERED: Final = 64 * 1024


# --- errors ----------------------------------------------------------------------------------


class WebRTCError(JetError):
    """Base class of the data-channel transport's errors."""


class WebRTCUnavailable(WebRTCError):
    """aiortc is not installed: ``pip install 'jet-trio[webrtc]'``."""


class NoRelayServer(WebRTCError, ValueError):
    """``relay_only`` was asked for without any TURN server to relay through."""


class TooManyRemoteCandidates(WebRTCError, RemoteProtocolError):
    """The peer trickled more candidates than a session accepts."""


class DataChannelError(WebRTCError, RemoteProtocolError):
    """The peer's data channel is not what the protocol says (label, sub-protocol, text)."""


class WebRTCConnectError(WebRTCError):
    """The data channel could not be set up; the driver may replace the transport."""


class IceFailed(WebRTCConnectError):
    """No ICE candidate pair worked within the bound (UDP blocked, no usable relay...)."""


class IceGatheringTimeout(WebRTCConnectError):
    """Gathering our candidates (STUN/TURN answers) took longer than ``gather_timeout``."""


class DataChannelTimeout(WebRTCConnectError):
    """The connection came up but the peer's data channel did not open within the bound."""


class DtlsFailed(WebRTCConnectError, SecurityError):
    """The DTLS handshake failed after ICE connected. Never followed by anything unencrypted."""


class DtlsFingerprintMismatch(DtlsFailed):
    """The peer's DTLS certificate is not the one the signalling announced: a man in the middle."""


class DataChannelStalled(WebRTCError, trio.BrokenResourceError):
    """Nothing arrived on the channel for ``idle_timeout`` seconds."""


# --- configuration ---------------------------------------------------------------------------


def ice_servers_from_services(services: Iterable[ExternalService]) -> tuple[IceServer, ...]:
    """The STUN/TURN servers among XEP-0215 ``services``, TURN ones with their credentials.

    A TURN service without a username and password is left out (fetching credentials
    separately, XEP-0215's ``<credentials/>`` request, is not implemented: Prosody and
    ejabberd send them with the service).
    """
    servers = []
    for service in services:
        url = service.ice_url
        if url is None:
            continue
        if service.type.startswith("turn"):
            if service.username is None or service.password is None:
                continue
            servers.append(IceServer((url,), service.username, service.password))
        else:
            servers.append(IceServer((url,)))
    return tuple(servers)


@dataclass(frozen=True, slots=True)
class WebRTCConfig:
    """How sessions connect.

    ``ice_servers``: STUN/TURN servers (from configuration and from XEP-0215 discovery).
    ``relay_only``: use relayed candidates only, revealing no address of ours to the peer.
    ``gather_timeout``: bound of making our offer or answer (candidate gathering waits for the
    STUN/TURN servers' answers).
    ``connect_timeout``: bound of :meth:`WebRTCSession.connect` (ICE, DTLS, SCTP, channels).
    ``idle_timeout``: a receive that gets nothing for this long raises
    :class:`DataChannelStalled` (``None``: leave it to the caller's stall guard).
    ``receive_buffer``: unread bytes held before the network is paused.
    ``max_remote_candidates``: candidates a peer may give us in one session.
    """

    ice_servers: tuple[IceServer, ...] = ()
    relay_only: bool = False
    gather_timeout: float = 10.0
    connect_timeout: float = 30.0
    idle_timeout: float | None = None
    receive_buffer: int = 4 * 1024 * 1024
    max_remote_candidates: int = 64

    def __post_init__(self) -> None:
        if self.relay_only and not any(s.is_turn for s in self.ice_servers):
            raise NoRelayServer("relay_only needs at least one TURN server")
        if min(self.connect_timeout, self.gather_timeout, self.receive_buffer) <= 0:
            raise ValueError("gather_timeout, connect_timeout and receive_buffer must be positive")


# --- the asyncio side, in its own thread -----------------------------------------------------


class _AsyncioThread:
    """One asyncio event loop running in a thread that :meth:`stop` joins."""

    def __init__(self, thread_init: Callable[[], None] | None) -> None:
        self._init = thread_init
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="jet-trio-webrtc", daemon=True)

    def _main(self) -> None:
        try:
            if self._init is not None:
                self._init()
            loop = asyncio.new_event_loop()
        except BaseException as exc:  # reported to trio by start()
            self._error = exc
            self._ready.set()
            return
        asyncio.set_event_loop(loop)
        self.loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            asyncio.set_event_loop(None)
            loop.close()

    async def start(self) -> None:
        self._thread.start()
        await trio.to_thread.run_sync(self._ready.wait)
        if self._error is not None:
            raise WebRTCError(f"the WebRTC event loop did not start: {self._error}") from (
                self._error
            )

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` as an asyncio task and wait for it; cancellation cancels the task."""
        assert self.loop is not None
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            # RunFinishedError cannot happen: the thread is joined before trio's run ends.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        async def run() -> T:
            return await fn(*args)

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        future.add_done_callback(wake)
        try:
            await done.wait()
        finally:
            if not future.done():
                future.cancel()
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise WebRTCError("the WebRTC event loop stopped during the call") from None

    async def stop(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread.is_alive():
            await trio.to_thread.run_sync(self._thread.join)


class _Inbox:
    """Received bytes crossing from the asyncio thread to trio, with a bound on unread bytes."""

    def __init__(self, token: trio.lowlevel.TrioToken, high: int) -> None:
        self._token = token
        self._high = high
        self._cond = threading.Condition()
        self._unread = 0  # shared, under _cond
        self._closed = False  # shared, under _cond
        self._chunks: deque[bytes] = deque()  # trio only
        self._arrived = trio.Event()
        self._end: BaseException | bool | None = False  # False: open; None: EOF; exc: broken

    # -- asyncio thread --
    def put(self, data: bytes) -> None:
        with self._cond:
            if self._closed:
                return
            self._unread += len(data)
        try:
            self._token.run_sync_soon(self._deliver, data)
        except trio.RunFinishedError:  # pragma: no cover
            return
        with self._cond:
            while self._unread > self._high and not self._closed:
                self._cond.wait(1.0)

    def finish(self, error: BaseException | None) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._set_end, error)

    # -- trio --
    def _deliver(self, data: bytes) -> None:
        self._chunks.append(data)
        self._arrived.set()

    def _set_end(self, error: BaseException | None) -> None:
        if self._end is False:
            self._end = error
        self._arrived.set()

    def fail(self, error: BaseException) -> None:
        self._set_end(error)

    def close(self) -> None:
        """Closed on our side (trio thread): wakes a blocked receive and the asyncio thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._chunks.clear()
        self._arrived.set()

    async def receive(self, max_bytes: int, idle_timeout: float | None) -> bytes:
        while not self._chunks:
            if self._closed:
                raise trio.ClosedResourceError("the WebRTC stream was closed")
            if self._end is None:
                return b""
            if isinstance(self._end, BaseException):
                raise trio.BrokenResourceError("the data channel failed") from self._end
            self._arrived = trio.Event()
            if idle_timeout is None:
                await self._arrived.wait()
            else:
                with trio.move_on_after(idle_timeout) as scope:
                    await self._arrived.wait()
                if scope.cancelled_caught:
                    raise DataChannelStalled(
                        f"nothing arrived on the data channel for {idle_timeout:g} s"
                    )
        chunk = self._chunks.popleft()
        if len(chunk) > max_bytes:
            self._chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        with self._cond:
            self._unread -= len(chunk)
            self._cond.notify_all()
        return chunk


class _Peer:
    """The asyncio half: one RTCPeerConnection and its two data channels. Asyncio thread only."""

    def __init__(self, config: WebRTCConfig, inbox: _Inbox, open_channel: bool = True) -> None:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
        from aiortc.rtcconfiguration import RTCIceTransportPolicy

        servers = [
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in config.ice_servers
        ]
        policy = RTCIceTransportPolicy.RELAY if config.relay_only else RTCIceTransportPolicy.ALL
        self.pc: RTCPeerConnection = RTCPeerConnection(
            RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)
        )
        self.inbox = inbox
        self.expected: WebRTCTransportInfo | None = None
        self.changed = asyncio.Event()
        self.error: WebRTCError | None = None
        self.inbound: RTCDataChannel | None = None
        # open_channel=False only in tests: a peer that never opens its channel.
        self.out: RTCDataChannel = self.pc.createDataChannel(
            CHANNEL_LABEL if open_channel else "unused",
            ordered=True,
            protocol=CHANNEL_PROTOCOL,
            negotiated=not open_channel,
            id=None if open_channel else 1000,
        )
        self.out.bufferedAmountLowThreshold = _LOW_BUFFERED
        self.writable = asyncio.Event()
        self.pc.on("connectionstatechange", self._on_state)
        self.pc.on("datachannel", self._on_datachannel)
        self.out.on("open", self._poke)
        self.out.on("close", self._poke)
        self.out.on("bufferedamountlow", self.writable.set)

    def _poke(self) -> None:
        self.changed.set()
        self.writable.set()

    def _fail(self, error: WebRTCError) -> None:
        if self.error is None:
            self.error = error
        self.inbox.finish(error)
        self._poke()

    def _on_state(self) -> None:
        if self.pc.connectionState == "failed":
            self._fail(self._classify_failure())
        elif self.pc.connectionState == "closed":
            self.inbox.finish(None if self.inbound is None else WebRTCError("connection closed"))
        self._poke()

    def _classify_failure(self) -> WebRTCError:
        sctp = self.pc.sctp
        dtls = sctp.transport if sctp is not None else None
        if dtls is None or dtls.state != "failed":
            return IceFailed("ICE failed: no candidate pair connected")
        return self._dtls_failure(dtls)

    def _dtls_failure(self, dtls: Any) -> WebRTCError:
        expected = self.expected
        ssl = getattr(dtls, "_ssl", None)
        cert = None
        if ssl is not None:
            try:
                cert = ssl.get_peer_certificate(as_cryptography=True)
            except Exception:
                cert = None
        if cert is not None and expected is not None:
            from cryptography.hazmat.primitives import hashes

            algorithms = {"sha-256": hashes.SHA256(), "sha-384": hashes.SHA384(),
                          "sha-512": hashes.SHA512(), "sha-1": hashes.SHA1()}  # fmt: skip
            for fp in expected.fingerprints:
                algorithm = algorithms.get(fp.hash)
                if algorithm is None:
                    continue
                got = ":".join(f"{b:02X}" for b in cert.fingerprint(algorithm))
                if got != fp.value.upper():
                    return DtlsFingerprintMismatch(
                        f"the peer's DTLS certificate has {fp.hash} fingerprint {got}, the "
                        f"signalling announced {fp.value.upper()}: possible man in the middle"
                    )
        return DtlsFailed("the DTLS handshake failed after ICE connected")

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self.inbound is not None:
            self._fail(DataChannelError("the peer opened a second data channel"))
            return
        if channel.protocol != CHANNEL_PROTOCOL:
            self._fail(
                DataChannelError(
                    f"the peer's data channel has sub-protocol {channel.protocol[:40]!r}, "
                    f"not {CHANNEL_PROTOCOL!r}"
                )
            )
            return
        self.inbound = channel
        channel.on("message", self._on_message)
        channel.on("close", lambda: self.inbox.finish(None))
        self._poke()

    def _on_message(self, message: bytes | str) -> None:
        if isinstance(message, str):
            self._fail(DataChannelError("the peer sent a text message on the data channel"))
            return
        self.inbox.put(message)

    # -- signalling --
    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer(self, remote_sdp: str) -> str:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(remote_sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, remote_sdp: str) -> None:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(remote_sdp, "answer"))

    async def add_candidate(self, sdp_value: str) -> None:
        from aiortc.sdp import candidate_from_sdp

        candidate = candidate_from_sdp(sdp_value.removeprefix("candidate:"))
        candidate.sdpMid = SDP_MID
        await self.pc.addIceCandidate(candidate)

    # -- connection --
    def _state(self) -> str:
        sctp = self.pc.sctp
        ice = sctp.transport.transport.state if sctp is not None else "new"
        return ice

    async def wait_open(self) -> None:
        while True:
            if self.error is not None:
                raise self.error
            if (
                self.pc.connectionState == "connected"
                and self.out.readyState == "open"
                and self.inbound is not None
                and self.inbound.readyState == "open"
            ):
                return
            self.changed.clear()
            await self.changed.wait()

    def selected_pair(self) -> tuple[str, str]:
        """Types of the nominated (local, remote) candidates, ``("?", "?")`` if unknown."""
        sctp = self.pc.sctp
        connection = getattr(sctp.transport.transport, "_connection", None) if sctp else None
        nominated = getattr(connection, "_nominated", {}) or {}
        pair = nominated.get(1)
        if pair is None:
            return ("?", "?")
        return (pair.local_candidate.type, pair.remote_candidate.type)

    def progress(self) -> tuple[str, str, bool]:
        sctp = self.pc.sctp
        dtls = sctp.transport.state if sctp is not None else "new"
        return self._state(), dtls, self.out.readyState == "open"

    async def send(self, data: bytes, size: int) -> None:
        view = memoryview(data)
        for start in range(0, len(view), size):
            await self.wait_writable()
            self.out.send(bytes(view[start : start + size]))

    async def wait_writable(self) -> None:
        while True:
            if self.error is not None:
                raise self.error
            if self.out.readyState != "open":
                raise trio.BrokenResourceError("the data channel is closed")
            if self.out.bufferedAmount <= MAX_BUFFERED:
                return
            self.writable.clear()
            await self.writable.wait()

    async def finish_sending(self) -> None:
        """Close our channel once everything sent left its buffer (the peer reads EOF)."""
        self.out.bufferedAmountLowThreshold = 0
        while self.out.bufferedAmount > 0 and self.out.readyState == "open":
            self.writable.clear()
            await self.writable.wait()
        self.out.close()

    async def close(self) -> None:
        await self.pc.close()


# --- the trio side ---------------------------------------------------------------------------


class WebRTCStream(trio.abc.HalfCloseableStream):
    """The data channels of a connected :class:`WebRTCSession` as one trio byte stream.

    Our own channel carries what we send, the peer's channel what we receive (both label
    ``"test"``, sub-protocol ``"xmpp-jingle"``, as Conversations opens them). ``send_eof``
    closes our channel once its buffer drained; the peer closing its channel is end of file.
    Errors follow :class:`trio.SocketStream`: ``BusyResourceError`` on concurrent use,
    ``ClosedResourceError`` after ``aclose``, ``BrokenResourceError`` when the connection failed.
    """

    def __init__(self, session: WebRTCSession) -> None:
        self._session = session
        self._send_busy = False
        self._receive_busy = False
        self._closed = False
        self._eof_sent = False

    def _check(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the WebRTC stream is closed")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is sending on this WebRTC stream")
        self._send_busy = True
        try:
            self._check()
            if self._eof_sent:
                raise trio.ClosedResourceError("send_eof() was called")
            await trio.lowlevel.checkpoint()
            payload = bytes(data)
            if payload:
                await self._session._call(self._session._peer_send, payload)
        finally:
            self._send_busy = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is sending on this WebRTC stream")
        self._send_busy = True
        try:
            self._check()
            await self._session._call(self._session._peer_writable)
        finally:
            self._send_busy = False

    async def send_eof(self) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is sending on this WebRTC stream")
        self._send_busy = True
        try:
            self._check()
            if not self._eof_sent:
                self._eof_sent = True
                await self._session._call(self._session._peer_finish)
            else:
                await trio.lowlevel.checkpoint()
        finally:
            self._send_busy = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receive_busy:
            raise trio.BusyResourceError("another task is receiving on this WebRTC stream")
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
        self._receive_busy = True
        try:
            self._check()
            await trio.lowlevel.checkpoint()
            return await self._session._inbox.receive(
                max_bytes or 65536, self._session.config.idle_timeout
            )
        finally:
            self._receive_busy = False

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._session.aclose()
        await trio.lowlevel.checkpoint()


class WebRTCSession:
    """One peer connection: signalling in, a :class:`WebRTCStream` out.

    Initiator: ``offer = await s.create_offer()`` → send it (and, for Conversations, each of
    :func:`~jet_trio._transports.webrtc_element.trickle_infos`) → ``await s.accept_answer(answer)``
    → ``await s.add_remote_candidates(...)`` for every trickled candidate → ``await s.connect()``.
    Responder: ``answer = await s.create_answer(offer)`` → send it → ``add_remote_candidates`` →
    ``connect()``. Create it with :func:`open_webrtc_session`.
    """

    def __init__(self, config: WebRTCConfig, bridge: _AsyncioThread, inbox: _Inbox) -> None:
        self.config = config
        self._bridge = bridge
        self._inbox = inbox
        self._peer: _Peer | None = None
        self._remote_candidates = 0
        self._remote_set = False
        self._closed = False
        self._open_channel = True
        self.local: WebRTCTransportInfo | None = None
        self.remote: WebRTCTransportInfo | None = None

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await self._bridge.call(fn, *args)

    async def _make_peer(self) -> _Peer:
        self._peer = _Peer(self.config, self._inbox, self._open_channel)
        return self._peer

    def _require_peer(self) -> _Peer:
        if self._peer is None:
            raise RuntimeError("no offer or answer was made yet")
        return self._peer

    async def _peer_send(self, data: bytes) -> None:
        await self._require_peer().send(data, WRITE_SIZE)

    async def _peer_writable(self) -> None:
        await self._require_peer().wait_writable()

    async def _peer_finish(self) -> None:
        await self._require_peer().finish_sending()

    async def _gathered(self, fn: Callable[..., Awaitable[str]], *args: Any) -> str:
        with trio.move_on_after(self.config.gather_timeout) as scope:
            return await self._call(fn, *args)
        assert scope.cancelled_caught
        raise IceGatheringTimeout(
            f"gathering candidates took more than {self.config.gather_timeout:g} s "
            "(STUN/TURN server unreachable?)"
        )

    async def create_offer(self) -> WebRTCTransportInfo:
        """Our offer (initiator): ICE credentials, DTLS fingerprint, gathered candidates."""
        peer = await self._call(self._make_peer)
        self.local = from_sdp(await self._gathered(peer.offer))
        return self.local

    async def create_answer(self, offer: WebRTCTransportInfo) -> WebRTCTransportInfo:
        """Our answer to the peer's ``offer`` (responder)."""
        peer = await self._call(self._make_peer)
        peer.expected = offer
        self.remote = offer
        self._count(len(offer.candidates))
        self.local = from_sdp(await self._gathered(peer.answer, to_sdp(offer)))
        self._remote_set = True
        return self.local

    async def accept_answer(self, answer: WebRTCTransportInfo) -> None:
        """The peer's answer to our offer (initiator)."""
        peer = self._require_peer()
        if self._remote_set:
            raise RuntimeError("the remote description was set already")
        peer.expected = answer
        self.remote = answer
        self._count(len(answer.candidates))
        await self._call(peer.accept_answer, to_sdp(answer))
        self._remote_set = True

    def _count(self, n: int) -> None:
        self._remote_candidates += n
        if self._remote_candidates > self.config.max_remote_candidates:
            raise TooManyRemoteCandidates(
                f"the peer sent more than {self.config.max_remote_candidates} candidates"
            )

    async def add_remote_candidates(self, candidates: Sequence[IceCandidate]) -> None:
        """Candidates the peer trickled in ``transport-info`` (bounded per session)."""
        peer = self._require_peer()
        if not self._remote_set:
            raise RuntimeError("set the peer's offer or answer before its candidates")
        self._count(len(candidates))
        for c in candidates:
            await self._call(peer.add_candidate, candidate_to_sdp(c))

    async def connect(self) -> WebRTCStream:
        """Wait until ICE, DTLS, SCTP and both channels are up, within ``connect_timeout``.

        Raises :class:`IceFailed`, :class:`DtlsFingerprintMismatch` / :class:`DtlsFailed` or
        :class:`DataChannelTimeout`; the driver falls back (transport-replace) on
        :class:`WebRTCConnectError` except :class:`DtlsFailed`, which is a security failure.
        """
        peer = self._require_peer()
        with trio.move_on_after(self.config.connect_timeout) as scope:
            await self._call(peer.wait_open)
        if scope.cancelled_caught:
            ice, dtls, _ = await self._call(_progress, peer)
            if dtls == "failed":
                raise await self._call(_dtls_error, peer)
            if ice in ("completed", "connected") and dtls == "connected":
                raise DataChannelTimeout(
                    f"connected, but the peer's data channel did not open within "
                    f"{self.config.connect_timeout:g} s"
                )
            raise IceFailed(
                f"ICE did not connect within {self.config.connect_timeout:g} s "
                f"(ICE {ice}, DTLS {dtls}): UDP blocked or no usable relay?"
            )
        return WebRTCStream(self)

    async def selected_candidate_types(self) -> tuple[str, str]:
        """The types (``host``/``srflx``/``prflx``/``relay``) of the local and remote candidates
        ICE nominated; ``"?"`` before that."""
        return await self._call(_selected, self._require_peer())

    async def aclose(self) -> None:
        """Close the peer connection (idempotent); the thread stops when the block is left."""
        if self._closed:
            return
        self._closed = True
        self._inbox.close()
        if self._peer is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._call(self._peer.close)


async def _selected(peer: _Peer) -> tuple[str, str]:
    return peer.selected_pair()


async def _progress(peer: _Peer) -> tuple[str, str, bool]:
    return peer.progress()


async def _dtls_error(peer: _Peer) -> WebRTCError:
    sctp = peer.pc.sctp
    return peer._dtls_failure(sctp.transport if sctp is not None else None)


def _require_aiortc() -> None:
    try:
        import aiortc  # noqa: F401
    except ImportError as exc:
        raise WebRTCUnavailable(
            "the WebRTC data-channel transport needs aiortc: pip install 'jet-trio[webrtc]'"
        ) from exc


@asynccontextmanager
async def open_webrtc_session(
    config: WebRTCConfig, *, thread_init: Callable[[], None] | None = None
) -> AsyncIterator[WebRTCSession]:
    """A :class:`WebRTCSession` whose event-loop thread lives exactly as long as the block.

    ``thread_init`` runs in the new thread before its loop starts (tests use it to move the
    thread into a network namespace). Leaving the block, by any exit, closes the peer
    connection, stops the loop and joins the thread.
    """
    _require_aiortc()
    bridge = _AsyncioThread(thread_init)
    inbox = _Inbox(trio.lowlevel.current_trio_token(), config.receive_buffer)
    session = WebRTCSession(config, bridge, inbox)
    try:
        await bridge.start()
        yield session
    finally:
        with trio.CancelScope(shield=True):
            inbox.close()
            if bridge.loop is not None:
                await session.aclose()
            await bridge.stop()
