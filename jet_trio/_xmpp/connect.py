"""Opening a negotiated c2s stream: SRV lookup, TCP, STARTTLS or direct TLS, SASL, bind.

Every wait of the login is bounded: the whole login by ``login_timeout`` and each stage of one
attempt (TCP connect, TLS handshake, stream header, features, SASL, bind) by ``stage_timeout``,
so a silent or trickling server ends that attempt with :class:`LoginTimeout` and the next SRV
target is tried. Whether credentials may be sent is decided by the sans-IO negotiator alone.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, get_args

import trio

from .._errors import JetError, XMLError
from .jid import JID
from .negotiation import (
    ClientNegotiator,
    ConnectionLost,
    Negotiated,
    RestartStream,
    SendBytes,
    StartTLS,
    TLSError,
    TLSInfo,
)
from .sasl import DEFAULT_MECHANISMS
from .stanza import StreamError, stream_error_element
from .xml import DEFAULT_MAX_STANZA_BYTES, Event, XMLStreamParser, serialize, stream_footer

if TYPE_CHECKING:
    import dns.asyncresolver

__all__ = [
    "DEFAULT_LOGIN_TIMEOUT",
    "INSECURE_TEST_ONLY",
    "ConnectionFailed",
    "DNSError",
    "LoginTimeout",
    "Security",
    "connect_stream",
    "make_ssl_context",
]

log = logging.getLogger("jet_trio.client")

#: The opt-out for test servers: SCRAM over plain TCP when the server offers no STARTTLS.
#: Never reached by default, never offered by the command line.
INSECURE_TEST_ONLY: Final = "INSECURE-plaintext-test-servers-only"
Security = Literal["starttls", "direct", "INSECURE-plaintext-test-servers-only"]
RECEIVE_SIZE = 65536
#: Seconds for the whole login (every SRV target tried included).
DEFAULT_LOGIN_TIMEOUT: Final = 30.0


class ConnectionFailed(JetError):
    """No TCP connection to the server could be made."""


class DNSError(ConnectionFailed):
    """The server's address could not be looked up."""


class LoginTimeout(ConnectionFailed):
    """A stage of the login did not finish in time (a silent, slow or trickling server).

    ``server`` is ``host:port`` (or the domain for the DNS lookup), ``stage`` names the wait.
    """

    def __init__(self, server: str, stage: str, seconds: float) -> None:
        super().__init__(f"{server} did not complete the {stage} within {seconds:g} s")
        self.server = server
        self.stage = stage
        self.seconds = seconds


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    direct_tls: bool


def make_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client TLS context verifying certificates (against ``ca_file`` if given)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.hostname_checks_common_name = False  # RFC 9525: the names in the SAN only
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
) -> tuple[trio.SSLStream[trio.abc.Stream], TLSInfo]:
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
    return tls, TLSInfo.from_ssl_object(tls, domain)


async def _open_tcp(target: _Target) -> trio.SocketStream:
    try:
        return await trio.open_tcp_stream(target.host, target.port)
    except socket.gaierror as exc:
        raise DNSError(f"{target.host}: cannot resolve the name ({exc.strerror or exc})") from None
    except OSError as exc:
        raise ConnectionFailed(
            f"{target.host}:{target.port}: could not connect: {exc.strerror or exc}"
        ) from None


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
    login_timeout: float = DEFAULT_LOGIN_TIMEOUT,
    stage_timeout: float | None = None,
) -> tuple[trio.abc.Stream, XMLStreamParser, Negotiated, list[Event]]:
    """Connect, secure, authenticate and bind.

    The targets (SRV records, or ``host``) are tried in order until one logs in; a target that
    cannot be reached, fails TLS, closes, or lets a stage time out (``stage_timeout``, by
    default a third of ``login_timeout``) is left for the next. The whole login takes at most
    ``login_timeout`` seconds.

    Returns the stream, its parser, the outcome, and any stanzas that arrived right after binding.
    """
    if security not in get_args(Security):
        raise ValueError(f"security={security!r}: use 'starttls' or 'direct'")
    if not login_timeout > 0 or (stage_timeout is not None and not stage_timeout > 0):
        raise ValueError("login_timeout and stage_timeout must be positive")
    stage_timeout = login_timeout / 3 if stage_timeout is None else stage_timeout
    deadline = trio.current_time() + login_timeout
    with trio.move_on_at(deadline) as dns_scope:
        targets = await _resolve(jid.domain, host, port, security)
    if dns_scope.cancelled_caught:
        raise LoginTimeout(jid.domain, "DNS lookup", login_timeout)
    ctx = ssl_context or make_ssl_context()
    ctx.hostname_checks_common_name = False  # RFC 9525, also for a context given to us
    failures: list[tuple[_Target, JetError]] = []
    for target in targets:
        if trio.current_time() >= deadline:
            break
        try:
            return await _attempt(
                target,
                jid,
                password,
                ctx,
                insecure=security == INSECURE_TEST_ONLY,
                mechanisms=mechanisms,
                max_stanza_bytes=max_stanza_bytes,
                stage_timeout=stage_timeout,
                deadline=deadline,
            )
        except (ConnectionFailed, ConnectionLost, TLSError, StreamError) as exc:
            log.info("login via %s:%s failed: %s", target.host, target.port, exc)
            failures.append((target, exc))
    raise _combined(failures, jid.domain, login_timeout)


def _combined(
    failures: list[tuple[_Target, JetError]], domain: str, login_timeout: float
) -> JetError:
    """One error for every target tried: the last one's type, every target's reason."""
    if not failures:
        return LoginTimeout(domain, "login", login_timeout)
    if len(failures) == 1:
        return failures[0][1]
    last = failures[-1][1]
    detail = "; ".join(
        str(e) if str(e).startswith(t.host) else f"{t.host}:{t.port}: {e}" for t, e in failures
    )
    if all(isinstance(e, DNSError) for _, e in failures):
        return DNSError(f"could not find the server: {detail}")
    if isinstance(last, LoginTimeout):
        combined: JetError = LoginTimeout(last.server, last.stage, last.seconds)
        combined.args = (f"every server of {domain} failed: {detail}",)
        return combined
    if isinstance(last, StreamError):
        return ConnectionFailed(f"every server of {domain} failed: {detail}")
    try:
        return type(last)(f"every server of {domain} failed: {detail}")
    except TypeError:
        return ConnectionFailed(f"every server of {domain} failed: {detail}")


async def _attempt(
    target: _Target,
    jid: JID,
    password: str,
    ctx: ssl.SSLContext,
    *,
    insecure: bool,
    mechanisms: Sequence[str],
    max_stanza_bytes: int,
    stage_timeout: float,
    deadline: float,
) -> tuple[trio.abc.Stream, XMLStreamParser, Negotiated, list[Event]]:
    """One login attempt at ``target``; each stage bounded by ``stage_timeout``."""
    where = f"{target.host}:{target.port}"
    stage = "TCP connect"
    started = trio.current_time()
    scope = trio.CancelScope()

    def begin(name: str) -> None:
        nonlocal stage, started
        stage, started = name, trio.current_time()
        scope.deadline = min(started + stage_timeout, deadline)

    def timed_out() -> LoginTimeout:
        return LoginTimeout(where, stage, round(trio.current_time() - started, 1))

    stream: trio.abc.Stream | None = None
    try:
        with scope:
            begin("TCP connect")
            stream = QuickAckStream(await _open_tcp(target))
            tls: TLSInfo | None = None
            if target.direct_tls:
                begin("TLS handshake")
                stream, tls = await _tls_wrap(stream, ctx, jid.domain)
            negotiator = ClientNegotiator(
                jid, password, tls=tls, mechanisms=mechanisms, insecure_plaintext_for_tests=insecure
            )
            parser = XMLStreamParser(max_stanza_bytes=max_stanza_bytes)
            leftover: list[Event] = []
            actions = negotiator.start()
            begin(negotiator.stage)
            while True:
                for action in actions:
                    if isinstance(action, SendBytes):
                        await stream.send_all(action.data)
                    elif isinstance(action, RestartStream):
                        parser = XMLStreamParser(max_stanza_bytes=max_stanza_bytes)
                    elif isinstance(action, StartTLS):
                        begin("TLS handshake")
                        stream, tls = await _tls_wrap(stream, ctx, jid.domain)
                        actions = negotiator.tls_established(tls)
                        begin(negotiator.stage)
                        break
                    else:
                        assert isinstance(action, Negotiated)
                        log.info(
                            "logged in as %s using %s (channel binding: %s)",
                            action.jid,
                            action.mechanism,
                            action.channel_binding or "none",
                        )
                        return stream, parser, action, leftover
                else:
                    before = negotiator.stage
                    actions = await _next_actions(stream, parser, negotiator, leftover)
                    if negotiator.stage != before:
                        begin(negotiator.stage)
        raise timed_out()
    except XMLError as exc:
        if stream is not None:
            await send_stream_error(stream, exc.condition, str(exc))
            await close_forcefully(stream)
        raise
    except trio.BrokenResourceError as exc:
        if stream is not None:
            await close_forcefully(stream)
        raise ConnectionLost(f"the connection broke during login: {exc.__cause__ or exc}") from None
    except BaseException:
        if stream is not None:
            await close_forcefully(stream)
        raise


async def _next_actions(
    stream: trio.abc.Stream,
    parser: XMLStreamParser,
    negotiator: ClientNegotiator,
    leftover: list[Event],
) -> list[RestartStream | SendBytes | StartTLS | Negotiated]:
    """Read until the negotiator has something to do or moved to its next stage (so that the
    caller starts that stage's clock)."""
    stage = negotiator.stage
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
        if actions or negotiator.stage != stage:
            return actions
