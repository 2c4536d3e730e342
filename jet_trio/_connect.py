"""Opening a negotiated c2s stream: SRV lookup, TCP, STARTTLS or direct TLS, SASL, bind."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import trio

from ._errors import JetError, XMLError
from ._jid import JID
from ._negotiation import (
    ClientNegotiator,
    ConnectionLost,
    Negotiated,
    RestartStream,
    SendBytes,
    StartTLS,
    TLSError,
)
from ._sasl import DEFAULT_MECHANISMS
from ._stanza import stream_error_element
from ._xml import DEFAULT_MAX_STANZA_BYTES, Event, XMLStreamParser, serialize, stream_footer

if TYPE_CHECKING:
    import dns.asyncresolver

__all__ = ["ConnectionFailed", "DNSError", "Security", "connect_stream", "make_ssl_context"]

log = logging.getLogger("jet_trio.client")

Security = Literal["starttls", "direct", "none"]
RECEIVE_SIZE = 65536


class ConnectionFailed(JetError):
    """No TCP connection to the server could be made."""


class DNSError(ConnectionFailed):
    """The server's address could not be looked up."""


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    direct_tls: bool


def make_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client TLS context verifying certificates (against ``ca_file`` if given)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def _srv_targets(
    domain: str, security: Security, resolver: dns.asyncresolver.Resolver | None = None
) -> list[_Target]:
    """SRV targets for ``domain`` (RFC 6120 3.2, XEP-0368 for direct TLS), best first."""
    # dnspython is imported here, not with the module: a client given its server's address
    # (tests, the command line's --server) never pays for it.
    import dns.asyncresolver
    import dns.exception
    import dns.name
    import dns.rdtypes.IN.SRV
    import dns.resolver

    if resolver is None:
        resolver = dns.asyncresolver.Resolver()
    services = [("_xmpps-client._tcp", True)] if security == "direct" else []
    services.append(("_xmpp-client._tcp", False))
    targets: list[tuple[int, int, _Target]] = []
    for service, direct in services:
        try:
            answer = await resolver.resolve(f"{service}.{domain}", "SRV")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            raise DNSError(f"DNS lookup for {domain} failed: {exc}") from None
        for rr in answer:
            assert isinstance(rr, dns.rdtypes.IN.SRV.SRV)
            if rr.target == dns.name.root:  # "." target: service explicitly not available
                continue
            host = rr.target.to_text(omit_final_dot=True)
            targets.append((rr.priority, -rr.weight, _Target(host, rr.port, direct)))
    targets.sort(key=lambda t: (not t[2].direct_tls, t[0], t[1]))
    return [t for _, _, t in targets]


async def _resolve(
    domain: str, host: str | None, port: int | None, security: Security
) -> list[_Target]:
    direct = security == "direct"
    if host is not None:
        return [_Target(host, port or (5223 if direct else 5222), direct)]
    targets = await _srv_targets(domain, security)
    if port is not None:
        targets = [_Target(t.host, port, t.direct_tls) for t in targets]
    return targets or [_Target(domain, port or (5223 if direct else 5222), direct)]


async def _tls_wrap(
    stream: trio.abc.Stream, ctx: ssl.SSLContext, domain: str
) -> trio.SSLStream[trio.abc.Stream]:
    tls = trio.SSLStream(stream, ctx, server_hostname=domain)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise TLSError(
                f"the certificate of {domain} is not trusted: {cause.verify_message}"
                " (use ca_file= for a private CA)"
            ) from None
        raise TLSError(f"TLS handshake with {domain} failed: {cause or exc}") from None
    return tls


_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class QuickAckStream(trio.abc.HalfCloseableStream):
    """The client-to-server TCP stream, acknowledging what arrives at once.

    Servers that leave Nagle's algorithm on (Prosody by default) hold a small stanza back
    until the previous one is acknowledged, and Linux delays that acknowledgement by up to
    40 ms in an interactive exchange: stanzas the server sends back to back (an iq result, then
    the peer's next Jingle action) then arrive 40 ms apart. ``TCP_QUICKACK``, set again after
    every read (Linux clears it by itself), makes each acknowledgement immediate. Our own
    sends need nothing: trio sets ``TCP_NODELAY``.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.transport_stream = stream

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.transport_stream.receive_some(max_bytes)
        if _TCP_QUICKACK is not None and data:
            with contextlib.suppress(OSError):  # best effort: never fail a read for it
                self.transport_stream.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.transport_stream.send_eof()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()


async def _open_tcp(targets: Sequence[_Target]) -> tuple[trio.SocketStream, _Target]:
    errors: list[str] = []
    unresolved = 0
    for target in targets:
        try:
            return await trio.open_tcp_stream(target.host, target.port), target
        except socket.gaierror as exc:
            errors.append(f"{target.host}: cannot resolve the name ({exc.strerror or exc})")
            unresolved += 1
        except OSError as exc:
            errors.append(f"{target.host}:{target.port}: {exc.strerror or exc}")
    detail = "; ".join(errors)
    if unresolved == len(targets):
        raise DNSError(f"could not find the server: {detail}")
    raise ConnectionFailed(f"could not connect to the server ({detail})")


async def close_forcefully(stream: trio.abc.AsyncResource) -> None:
    """Close at once, even inside a cancelled scope, so the error being raised is not replaced
    by ``Cancelled``."""
    with trio.CancelScope(shield=True):
        await trio.aclose_forcefully(stream)


async def send_stream_error(stream: trio.abc.SendStream, condition: str, text: str) -> None:
    """Best effort: tell the server why we close (at most one second). Never raises."""
    with trio.move_on_after(1, shield=True):
        with contextlib.suppress(
            trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError
        ):
            await stream.send_all(
                serialize(stream_error_element(condition, text)) + stream_footer()
            )


async def connect_stream(
    jid: JID,
    password: str,
    *,
    host: str | None = None,
    port: int | None = None,
    security: Security = "starttls",
    ssl_context: ssl.SSLContext | None = None,
    mechanisms: Sequence[str] = DEFAULT_MECHANISMS,
    max_stanza_bytes: int = DEFAULT_MAX_STANZA_BYTES,
) -> tuple[trio.abc.Stream, XMLStreamParser, Negotiated, list[Event]]:
    """Connect, secure, authenticate and bind.

    Returns the stream, its parser, the outcome, and any stanzas that arrived right after binding.
    """
    targets = await _resolve(jid.domain, host, port, security)
    tcp, target = await _open_tcp(targets)
    stream: trio.abc.Stream = QuickAckStream(tcp)
    ctx = ssl_context or make_ssl_context()
    try:
        if target.direct_tls:
            stream = await _tls_wrap(stream, ctx, jid.domain)
        negotiator = ClientNegotiator(
            jid,
            password,
            starttls=security == "starttls",
            tls_active=target.direct_tls,
            mechanisms=mechanisms,
        )
        parser = XMLStreamParser(max_stanza_bytes=max_stanza_bytes)
        leftover: list[Event] = []
        actions = negotiator.start()
        while True:
            for action in actions:
                if isinstance(action, SendBytes):
                    await stream.send_all(action.data)
                elif isinstance(action, RestartStream):
                    parser = XMLStreamParser(max_stanza_bytes=max_stanza_bytes)
                elif isinstance(action, StartTLS):
                    stream = await _tls_wrap(stream, ctx, jid.domain)
                    actions = negotiator.tls_established()
                    break
                else:
                    assert isinstance(action, Negotiated)
                    log.info("logged in as %s using %s", action.jid, negotiator.mechanism)
                    return stream, parser, action, leftover
            else:
                actions = await _next_actions(stream, parser, negotiator, leftover)
    except XMLError as exc:
        await send_stream_error(stream, exc.condition, str(exc))
        await close_forcefully(stream)
        raise
    except trio.BrokenResourceError as exc:
        await close_forcefully(stream)
        raise ConnectionLost(f"the connection broke during login: {exc.__cause__ or exc}") from None
    except BaseException:
        await close_forcefully(stream)
        raise


async def _next_actions(
    stream: trio.abc.Stream,
    parser: XMLStreamParser,
    negotiator: ClientNegotiator,
    leftover: list[Event],
) -> list[RestartStream | SendBytes | StartTLS | Negotiated]:
    while True:
        data = await stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise ConnectionLost("the server closed the connection during login")
        actions: list[RestartStream | SendBytes | StartTLS | Negotiated] = []
        events = parser.feed(data)
        for n, event in enumerate(events):
            actions.extend(negotiator.receive(event))
            if actions and isinstance(actions[-1], Negotiated):
                leftover.extend(events[n + 1 :])  # early stanzas belong to the client
                return actions
            if any(isinstance(a, (RestartStream, StartTLS)) for a in actions):
                return actions  # the rest of this parser's stream is over
        if actions:
            return actions
