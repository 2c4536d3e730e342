"""An in-process XEP-0065 SOCKS5 bytestreams proxy for tests and the demo.

``async with serve_proxy65() as proxy:`` listens on ``proxy.host:proxy.port``; two clients that
complete the SOCKS5 handshake with the same DST.ADDR wait until :meth:`Proxy65.activate` is
called (by the in-process XMPP server, on the requester's activation iq), then their bytes are
relayed both ways.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import trio

from .._errors import JetError
from .._transports.s5b import serve_socks5_handshake
from .._transports.socks5 import Socks5Error, dstaddr
from .._xmpp.jid import JID

__all__ = ["ActivationError", "Proxy65", "serve_proxy65"]

RELAY_CHUNK: Final = 256 * 1024


class ActivationError(JetError):
    """No pair of connections waits for this activation.

    ``condition`` is the stanza error to answer the activation iq with.
    """

    def __init__(self, message: str, condition: str = "item-not-found") -> None:
        super().__init__(message)
        self.condition = condition


class Proxy65:
    """The running proxy; create with :func:`serve_proxy65`."""

    def __init__(
        self,
        listener: trio.SocketListener,
        jid: JID,
        nursery: trio.Nursery,
        max_pending: int,
        handshake_timeout: float,
    ) -> None:
        self._listener = listener
        self._nursery = nursery
        self._max_pending = max_pending
        self._handshake_timeout = handshake_timeout
        self._handshakes = 0
        self._waiting: dict[str, list[trio.SocketStream]] = {}
        self.jid = jid
        sockname = listener.socket.getsockname()
        self.host: str = sockname[0]
        self.port: int = sockname[1]
        self.relayed_bytes = 0
        self.active_relays = 0

    @property
    def waiting(self) -> int:
        """Number of authenticated connections waiting for activation."""
        return sum(len(v) for v in self._waiting.values())

    def activate(self, sid: str, requester: JID | str, target: JID | str) -> None:
        """Start relaying the pair for DST.ADDR = SHA-1(sid + requester + target).

        ``requester`` is the sender of the activation iq and ``target`` the JID in
        ``<activate/>``.  Raises :class:`ActivationError` unless exactly two connections wait.
        """
        dst = dstaddr(sid, requester, target)
        pair = self._waiting.get(dst)
        if pair is None or len(pair) != 2:
            found = 0 if pair is None else len(pair)
            raise ActivationError(
                f"no connection pair to activate for sid {sid!r} ({found} connection(s) waiting)"
            )
        del self._waiting[dst]
        self._nursery.start_soon(self._relay, pair[0], pair[1])

    async def _serve(self) -> None:
        while True:
            stream = await self._listener.accept()
            if self._handshakes + self.waiting >= self._max_pending:
                await trio.aclose_forcefully(stream)
                continue
            self._handshakes += 1
            self._nursery.start_soon(self._handshake, stream)

    async def _handshake(self, stream: trio.SocketStream) -> None:
        kept = False
        try:
            with trio.move_on_after(self._handshake_timeout):
                kept = await self._run_handshake(stream)
        except (Socks5Error, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._handshakes -= 1
            if not kept:
                await trio.aclose_forcefully(stream)

    async def _run_handshake(self, stream: trio.SocketStream) -> bool:
        registered: str | None = None

        def wanted(dst: str) -> bool:
            nonlocal registered
            if len(self._waiting.get(dst, [])) >= 2 or self.waiting >= self._max_pending:
                return False
            # Waiting before the client hears of its success: it may have the connection
            # activated at once, and this task may run only after the activation request.
            self._waiting.setdefault(dst, []).append(stream)
            registered = dst
            return True

        try:
            dst = await serve_socks5_handshake(stream, wanted)
        except BaseException:
            if registered is not None:
                waiting = self._waiting.get(registered, [])
                if stream in waiting:
                    waiting.remove(stream)
                if not waiting:
                    self._waiting.pop(registered, None)
            raise
        return dst is not None

    async def _copy(self, src: trio.SocketStream, dst: trio.SocketStream) -> None:
        try:
            while data := await src.receive_some(RELAY_CHUNK):
                await dst.send_all(data)
                self.relayed_bytes += len(data)
            await dst.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            # One side vanished: tear down both directions.
            src.socket.close()
            dst.socket.close()

    async def _relay(self, a: trio.SocketStream, b: trio.SocketStream) -> None:
        self.active_relays += 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._copy, a, b)
                nursery.start_soon(self._copy, b, a)
        finally:
            self.active_relays -= 1
            # Closing a trio socket is synchronous; no await may be skipped by a cancellation.
            a.socket.close()
            b.socket.close()

    def _close_waiting(self) -> None:
        for streams in self._waiting.values():
            for s in streams:
                s.socket.close()
        self._waiting.clear()


@asynccontextmanager
async def serve_proxy65(
    host: str = "127.0.0.1",
    port: int = 0,
    jid: JID | str = "proxy.localhost",
    *,
    max_pending: int = 64,
    handshake_timeout: float = 10.0,
) -> AsyncIterator[Proxy65]:
    """Run a SOCKS5 bytestreams proxy on ``host:port`` (0 = ephemeral) within a nursery.

    At most ``max_pending`` connections may be in handshake or waiting for activation; further
    ones are dropped.  Relays and waiting connections are closed when the block exits.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    for extra in listeners[1:]:
        extra.socket.close()
    raised: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            proxy = Proxy65(listeners[0], JID(jid), nursery, max_pending, handshake_timeout)
            nursery.start_soon(proxy._serve)
            try:
                yield proxy
            except BaseException as exc:
                # Re-raised below, outside the nursery, so callers see it unwrapped.
                raised = exc
            finally:
                nursery.cancel_scope.cancel()
                proxy._close_waiting()
    finally:
        listeners[0].socket.close()
    if raised is not None:
        raise raised
