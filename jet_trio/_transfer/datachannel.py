"""The trio side of the WebRTC data-channel transport in a Jingle session.

The protocol decisions (which transport, which candidates are taken, what follows a failure)
are the session machine's (:class:`~jet_trio._transfer.session.WebRTCExchange`); this module
opens the peer connection of a session, sends our trickled candidates, feeds the peer's into
ICE while it connects, and gives up in time: within the connect bound, or as soon as the
initiator replaces the transport or the peer ends the session.

aiortc is imported only when a session opens a data channel
(:func:`~jet_trio._transports.webrtc.open_webrtc_session`); whether the extra is installed is
checked without importing it (:func:`webrtc_available`), so start-up stays light.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import trio

from .._jingle.message import JingleAction
from .._transports.ice import IceServer
from .._xmpp.stanza import StanzaError
from .driver import Established, SessionShell
from .reasons import error_for
from .session import WebRTCExchange
from .types import TransportFailed

if TYPE_CHECKING:
    from .._transports.webrtc import WebRTCConfig, WebRTCSession
    from .._transports.webrtc_element import WebRTCTransportInfo

__all__ = ["WebRTCSettings", "connect_data_channel", "open_data_channel", "webrtc_available"]

log = logging.getLogger("jet_trio.transfer")

#: Bound of asking the server for its STUN/TURN services (XEP-0215).
_SERVICES_TIMEOUT: Final = 5.0


def webrtc_available() -> bool:
    """Whether the optional extra ``jet-trio[webrtc]`` (aiortc) is installed; aiortc is not
    imported (that costs a third of a second and 35 MiB)."""
    try:
        return importlib.util.find_spec("aiortc") is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True, slots=True)
class WebRTCSettings:
    """How a file-transfer service uses the data channel (see :func:`open_file_transfer`).

    ``ice_servers`` are used besides those the account's server announces (XEP-0215, when
    ``server_services``); ``relay_only`` offers relayed candidates only (no address of ours
    reaches the peer) and no S5B in sessions we initiate; ``connect_timeout`` bounds ICE,
    DTLS and the channels, after which the session falls back to IBB; ``thread_init`` runs in
    the aiortc thread before its loop starts (tests move it into a network namespace).
    """

    ice_servers: tuple[IceServer, ...] = ()
    relay_only: bool = False
    server_services: bool = True
    gather_timeout: float = 10.0
    connect_timeout: float = 30.0
    thread_init: Callable[[], None] | None = None


async def _config(shell: SessionShell, settings: WebRTCSettings) -> WebRTCConfig:
    from .._transports.webrtc import NoRelayServer, WebRTCConfig, ice_servers_from_services
    from .._xmpp.extdisco import ExternalServiceError, discover_external_services

    servers = list(settings.ice_servers)
    if settings.server_services:
        # Asked per session: TURN credentials expire. A server without XEP-0215 answers an
        # error; one that does not answer costs the bound, then only our own servers count.
        with trio.move_on_after(min(_SERVICES_TIMEOUT, shell.timeout)):
            with contextlib.suppress(StanzaError, ExternalServiceError):
                servers += ice_servers_from_services(await discover_external_services(shell.client))
    try:
        return WebRTCConfig(
            ice_servers=tuple(servers),
            relay_only=settings.relay_only,
            gather_timeout=settings.gather_timeout,
            connect_timeout=settings.connect_timeout,
        )
    except NoRelayServer:
        raise TransportFailed(
            "relay_only needs a TURN server: none configured and none announced by the "
            "server (XEP-0215)",
            "failed-transport",
        ) from None


async def open_data_channel(
    shell: SessionShell,
    settings: WebRTCSettings,
    cleanup: contextlib.AsyncExitStack,
    offer: WebRTCTransportInfo | None = None,
) -> WebRTCTransportInfo:
    """Open the session's peer connection (closed with ``cleanup``) and make our offer, or,
    given the peer's ``offer``, our answer. Returns our description (with the gathered
    candidates, which :meth:`FileSession.trickle` sends after it)."""
    from .._transports.webrtc import IceGatheringTimeout, open_webrtc_session

    config = await _config(shell, settings)
    rtc = await cleanup.enter_async_context(
        open_webrtc_session(config, thread_init=settings.thread_init)
    )
    shell.webrtc = rtc
    try:
        if offer is None:
            return await rtc.create_offer()
        return await rtc.create_answer(offer)
    except IceGatheringTimeout as exc:
        raise TransportFailed(str(exc), "failed-transport") from None


async def connect_data_channel(
    shell: SessionShell,
    exchange: WebRTCExchange,
    local: WebRTCTransportInfo,
    cleanup: contextlib.AsyncExitStack,
) -> Established | None:
    """Trickle our candidates, feed the peer's into ICE, and connect (bounded by the
    connect timeout). ``None`` when the data channel cannot be set up and the session falls
    back (:meth:`WebRTCExchange.failed`), also when the initiator replaced the transport
    first; a DTLS failure raises :class:`EncryptionFailed`, the peer's session-terminate its
    reason."""
    from .._transports.webrtc import WebRTCConnectError, WebRTCStream

    rtc: WebRTCSession | None = shell.webrtc
    assert rtc is not None
    machine = shell.machine
    if rtc.remote is None:  # initiator: the answer sets the remote description
        await rtc.accept_answer(exchange.remote)
    exchange.connecting()
    for msg in machine.trickle(local):
        await shell.send(msg)
    stream: WebRTCStream | None = None
    failure: WebRTCConnectError | None = None

    async def feed() -> None:
        while True:
            candidates = exchange.candidates()
            if candidates:
                await rtc.add_remote_candidates(candidates)
            else:
                await shell.wait_arrival()

    async def connect(cancel: trio.CancelScope) -> None:
        nonlocal stream, failure
        try:
            stream = await rtc.connect()
        except WebRTCConnectError as exc:
            failure = exc
        cancel.cancel()

    async def replaced(cancel: trio.CancelScope) -> None:
        # The initiator may give up first (its bound ran out) and replace the transport, or
        # the peer may end the session: stop connecting at once.
        while not machine.pending(JingleAction.TRANSPORT_REPLACE):
            await shell.wait_arrival()
        cancel.cancel()

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        nursery.start_soon(connect, nursery.cancel_scope)
        nursery.start_soon(replaced, nursery.cancel_scope)
    took = trio.current_time() - started
    if stream is not None:
        log.info(
            "data channel ready with %s in %.2f s (%s)",
            shell.peer,
            took,
            "/".join(await rtc.selected_candidate_types()),
        )
        return Established(stream, "webrtc", cleanup, half_close=True)
    if (reason := machine.ended_by_peer()) is not None:
        raise error_for(reason, str(shell.peer))
    await rtc.aclose()  # stop ICE before the fallback
    if failure is None:
        log.info("%s replaced the data channel after %.2f s", shell.peer, took)
        return None
    exchange.failed(failure)  # raises for a DTLS failure: never a fallback then
    return None
