"""SOCKS5 bytestreams for Jingle (XEP-0260 over XEP-0065).

The pure part: the candidate model, priorities, the ``<transport>`` codec, candidate nomination,
and the bytestreams proxy elements (streamhost discovery and activation).  The trio part:
:func:`connect_candidate` / :func:`connect_any` for the connecting side and
:func:`open_s5b_listener` for direct candidates; both hand over a plain authenticated
``trio.SocketStream``.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

import trio
from lxml import etree

from .._errors import JetError, RemoteProtocolError
from .._trio_util import unwrapped_errors
from .._xmpp import ns as ns
from .._xmpp.jid import JID, InvalidJID
from .socks5 import (
    NEED_DATA,
    ReplyCode,
    Socks5Client,
    Socks5Error,
    Socks5Server,
    dstaddr,
)

__all__ = [
    "MAX_TRIED_CANDIDATES",
    "TYPE_PREFERENCE",
    "Activated",
    "Candidate",
    "CandidateConnectError",
    "CandidateError",
    "CandidateType",
    "CandidateUsed",
    "Nomination",
    "ProxyError",
    "S5BError",
    "S5BListener",
    "S5BTransport",
    "StreamHost",
    "build_activate",
    "build_streamhost_query",
    "build_streamhost_result",
    "build_transport",
    "candidate_host_problem",
    "connect_any",
    "connect_candidate",
    "connection_order",
    "dedupe_candidates",
    "dstaddr",
    "nominate",
    "open_s5b_listener",
    "parse_activate",
    "parse_streamhosts",
    "parse_transport",
    "priority",
]

CandidateType: TypeAlias = Literal["direct", "assisted", "tunnel", "proxy"]
TYPE_PREFERENCE: Final[dict[CandidateType, int]] = {
    "direct": 126,
    "assisted": 120,
    "tunnel": 110,
    "proxy": 10,
}
DEFAULT_PORT: Final = 1080  # XEP-0065 default when a candidate has no port
_MAX_PRIORITY: Final = 2**31 - 1
_MAX_ATTR: Final = 1023
_Element: TypeAlias = etree._Element
log = logging.getLogger(__name__)


class S5BError(RemoteProtocolError):
    """A malformed S5B ``<transport>`` or bytestreams element.

    ``condition`` is the stanza error condition to answer with (always ``bad-request`` here).
    """

    def __init__(self, message: str, condition: str = "bad-request") -> None:
        super().__init__(message)
        self.condition = condition


class CandidateConnectError(JetError):
    """No bytestream could be established to a candidate (network failure or refusal)."""


def priority(type: CandidateType, local_preference: int = 0) -> int:
    """XEP-0260 priority: 2^16 * type preference + local preference (0..65535)."""
    if not 0 <= local_preference <= 0xFFFF:
        raise ValueError(f"local preference must be in 0..65535, got {local_preference}")
    return (TYPE_PREFERENCE[type] << 16) + local_preference


@dataclass(frozen=True, slots=True)
class Candidate:
    """One S5B candidate: a streamhost ``host:port`` run by ``jid`` (the peer or a proxy)."""

    cid: str
    host: str
    port: int
    jid: JID
    type: CandidateType = "direct"
    priority: int = field(default=-1)

    def __post_init__(self) -> None:
        if self.priority == -1:
            object.__setattr__(self, "priority", priority(self.type))
        if not self.cid or not self.host:
            raise ValueError("candidate needs a cid and a host")
        if not 0 < self.port <= 0xFFFF:
            raise ValueError(f"candidate port out of range: {self.port}")
        if not 0 <= self.priority <= _MAX_PRIORITY:
            raise ValueError(f"candidate priority out of range: {self.priority}")
        if self.type not in TYPE_PREFERENCE:
            raise ValueError(f"unknown candidate type {self.type!r}")


@dataclass(frozen=True, slots=True)
class CandidateUsed:
    """transport-info: the sender connected to our candidate ``cid``."""

    cid: str


@dataclass(frozen=True, slots=True)
class CandidateError:
    """transport-info: the sender could connect to none of our candidates."""


@dataclass(frozen=True, slots=True)
class Activated:
    """transport-info: the sender activated the proxy candidate ``cid``."""

    cid: str


@dataclass(frozen=True, slots=True)
class ProxyError:
    """transport-info: the sender could not use the nominated proxy candidate."""


TransportInfo: TypeAlias = CandidateUsed | CandidateError | Activated | ProxyError


@dataclass(frozen=True, slots=True)
class S5BTransport:
    """The ``<transport xmlns='urn:xmpp:jingle:transports:s5b:1'>`` element.

    In session-initiate/-accept and transport-replace it carries ``candidates``; in
    transport-info it carries exactly one ``info`` and no candidates.
    """

    sid: str
    dstaddr: str | None = None
    mode: Literal["tcp"] = "tcp"
    candidates: tuple[Candidate, ...] = ()
    info: TransportInfo | None = None


def _q(name: str) -> str:
    return f"{{{ns.JINGLE_S5B}}}{name}"


def build_transport(transport: S5BTransport, *, include_mode: bool = True) -> _Element:
    """Build the ``<transport>`` element (``include_mode=False`` for a responder, as Dino does)."""
    el = etree.Element(_q("transport"), nsmap={None: ns.JINGLE_S5B})  # type: ignore[dict-item]
    el.set("sid", transport.sid)
    if transport.dstaddr is not None:
        el.set("dstaddr", transport.dstaddr)
    if include_mode and transport.info is None:
        el.set("mode", transport.mode)
    for c in transport.candidates:
        etree.SubElement(
            el,
            _q("candidate"),
            cid=c.cid,
            host=c.host,
            jid=str(c.jid),
            port=str(c.port),
            priority=str(c.priority),
            type=c.type,
        )
    info = transport.info
    if isinstance(info, CandidateUsed):
        etree.SubElement(el, _q("candidate-used"), cid=info.cid)
    elif isinstance(info, CandidateError):
        etree.SubElement(el, _q("candidate-error"))
    elif isinstance(info, Activated):
        etree.SubElement(el, _q("activated"), cid=info.cid)
    elif isinstance(info, ProxyError):
        etree.SubElement(el, _q("proxy-error"))
    return el


def _attr(el: _Element, name: str, *, required: bool = True) -> str | None:
    value = el.get(name)
    if value is None:
        if required:
            raise S5BError(f"<{etree.QName(el).localname}/> lacks the {name!r} attribute")
        return None
    if not value or len(value) > _MAX_ATTR:
        raise S5BError(f"<{etree.QName(el).localname}/> has an empty or oversized {name!r}")
    return value


def _int(value: str, what: str, lo: int, hi: int) -> int:
    if not value.isascii() or not value.isdigit():
        raise S5BError(f"{what} is not a non-negative integer: {value[:32]!r}")
    n = int(value)
    if not lo <= n <= hi:
        raise S5BError(f"{what} out of range: {n}")
    return n


def _parse_candidate(el: _Element) -> Candidate:
    cid = _attr(el, "cid")
    host = _attr(el, "host")
    jid_s = _attr(el, "jid")
    assert cid is not None and host is not None and jid_s is not None
    port_s = _attr(el, "port", required=False)
    port = DEFAULT_PORT if port_s is None else _int(port_s, "candidate port", 1, 0xFFFF)
    prio = _int(_attr(el, "priority") or "", "candidate priority", 0, _MAX_PRIORITY)
    ctype = el.get("type", "direct")
    if ctype not in TYPE_PREFERENCE:
        raise S5BError(f"unknown candidate type {ctype[:32]!r}")
    try:
        jid = JID(jid_s)
    except InvalidJID as exc:
        raise S5BError(f"candidate has an invalid jid: {exc}") from exc
    return Candidate(cid, host, port, jid, ctype, prio)


def parse_transport(el: _Element) -> S5BTransport:
    """Parse and validate an S5B ``<transport>``; raises :class:`S5BError`."""
    if el.tag != _q("transport"):
        raise S5BError(f"not an S5B transport: {el.tag!r}")
    sid = _attr(el, "sid")
    assert sid is not None
    mode = el.get("mode", "tcp")
    if mode != "tcp":
        raise S5BError(f"unsupported S5B mode {mode[:16]!r}")
    dst = _attr(el, "dstaddr", required=False)
    if dst is not None:
        dst = dst.lower()
        if len(dst) != 40 or any(ch not in "0123456789abcdef" for ch in dst):
            raise S5BError("dstaddr is not a hex SHA-1")
    candidates: list[Candidate] = []
    infos: list[TransportInfo] = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if child.tag == _q("candidate"):
            candidates.append(_parse_candidate(child))
        elif child.tag == _q("candidate-used"):
            infos.append(CandidateUsed(_attr(child, "cid") or ""))
        elif child.tag == _q("candidate-error"):
            infos.append(CandidateError())
        elif child.tag == _q("activated"):
            infos.append(Activated(_attr(child, "cid") or ""))
        elif child.tag == _q("proxy-error"):
            infos.append(ProxyError())
    if len(infos) > 1 or (infos and candidates):
        raise S5BError("an S5B transport-info carries exactly one notification")
    cids = [c.cid for c in candidates]
    if len(set(cids)) != len(cids):
        raise S5BError("duplicate candidate cid")
    return S5BTransport(sid, dst, "tcp", tuple(candidates), infos[0] if infos else None)


def dedupe_candidates(candidates: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """Drop candidates naming the same streamhost (type, jid, host, port) twice.

    Keeps the highest-priority copy (the first one on ties), in the original order.  Dino offers
    its proxy twice with two cids.
    """
    best: dict[tuple[str, JID, str, int], Candidate] = {}
    for c in candidates:
        key = (c.type, c.jid, c.host.lower(), c.port)
        if key not in best or c.priority > best[key].priority:
            best[key] = c
    keep = {id(c) for c in best.values()}
    return tuple(c for c in candidates if id(c) in keep)


def connection_order(candidates: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """Deduplicated candidates, highest priority first (stable on ties)."""
    return tuple(sorted(dedupe_candidates(candidates), key=lambda c: -c.priority))


@dataclass(frozen=True, slots=True)
class Nomination:
    """The nominated candidate and who offered it (the other party connected to it)."""

    candidate: Candidate
    offered_by: Literal["initiator", "responder"]

    @property
    def needs_activation(self) -> bool:
        """A proxy candidate is activated by the party that offered it."""
        return self.candidate.type == "proxy"


def nominate(
    *, initiator_used: Candidate | None, responder_used: Candidate | None
) -> Nomination | None:
    """Apply the XEP-0260 nomination rules; ``None`` means both failed (fall back to IBB).

    ``initiator_used`` is the responder's candidate the initiator connected to (``None`` after a
    candidate-error), ``responder_used`` the initiator's candidate the responder connected to.
    Higher priority wins.  On equal priorities the XEP says "the candidate chosen by the
    initiator", but Dino and Conversations both let the candidate *offered* by the initiator
    (the responder's pick) win, and Dino 0.4.2 was observed doing so; we follow the deployed
    rule, otherwise each side would wait for the other to activate a different proxy.
    """
    if initiator_used is None and responder_used is None:
        return None
    if responder_used is None:
        assert initiator_used is not None
        return Nomination(initiator_used, "responder")
    if initiator_used is None or responder_used.priority >= initiator_used.priority:
        return Nomination(responder_used, "initiator")
    return Nomination(initiator_used, "responder")


# --- XEP-0065 proxy (streamhost) elements -------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamHost:
    """A SOCKS5 proxy as announced by its ``<streamhost/>``."""

    jid: JID
    host: str
    port: int

    def to_candidate(self, cid: str, local_preference: int = 0) -> Candidate:
        """A proxy candidate for this streamhost."""
        return Candidate(
            cid, self.host, self.port, self.jid, "proxy", priority("proxy", local_preference)
        )


def _bq(name: str) -> str:
    return f"{{{ns.BYTESTREAMS}}}{name}"


def build_streamhost_query() -> _Element:
    """The payload of the iq get asking a proxy for its address."""
    return etree.Element(_bq("query"), nsmap={None: ns.BYTESTREAMS})  # type: ignore[dict-item]


def build_streamhost_result(host: StreamHost) -> _Element:
    """A proxy's answer to :func:`build_streamhost_query` (used by test servers)."""
    el = build_streamhost_query()
    etree.SubElement(el, _bq("streamhost"), jid=str(host.jid), host=host.host, port=str(host.port))
    return el


def parse_streamhosts(query: _Element) -> tuple[StreamHost, ...]:
    """Parse the ``<streamhost/>`` children of a proxy's bytestreams ``<query/>`` result."""
    if query.tag != _bq("query"):
        raise S5BError(f"not a bytestreams query: {query.tag!r}")
    hosts = []
    for el in query.iter(_bq("streamhost")):
        jid_s, host = _attr(el, "jid"), _attr(el, "host")
        assert jid_s is not None and host is not None
        port_s = _attr(el, "port", required=False)
        port = DEFAULT_PORT if port_s is None else _int(port_s, "streamhost port", 1, 0xFFFF)
        try:
            hosts.append(StreamHost(JID(jid_s), host, port))
        except InvalidJID as exc:
            raise S5BError(f"streamhost has an invalid jid: {exc}") from exc
    if not hosts:
        raise S5BError("bytestreams query result has no streamhost")
    return tuple(hosts)


def build_activate(sid: str, target: JID | str) -> _Element:
    """The iq set payload asking a proxy to relay bytestream ``sid`` to ``target``.

    Sent to the proxy's JID by the party that offered the proxy candidate (the requester), with
    the transport sid and the peer's full JID.
    """
    el = etree.Element(_bq("query"), nsmap={None: ns.BYTESTREAMS}, sid=sid)  # type: ignore[dict-item]
    act = etree.SubElement(el, _bq("activate"))
    act.text = str(target)
    return el


def parse_activate(query: _Element) -> tuple[str, JID]:
    """Parse an activation request: return (sid, target)."""
    if query.tag != _bq("query"):
        raise S5BError(f"not a bytestreams query: {query.tag!r}")
    sid = _attr(query, "sid")
    assert sid is not None
    act = query.find(_bq("activate"))
    if act is None or not (act.text or "").strip():
        raise S5BError("bytestreams activation lacks <activate/>")
    try:
        return sid, JID((act.text or "").strip())
    except InvalidJID as exc:
        raise S5BError(f"invalid activation target: {exc}") from exc


# --- trio shell ----------------------------------------------------------------------------


async def _client_handshake(stream: trio.abc.Stream, dst: str) -> None:
    hs = Socks5Client(dst)
    while True:
        event = hs.next_event()
        out = hs.data_to_send()
        if out:
            await stream.send_all(out)
        if event is not NEED_DATA:
            return
        hs.receive_data(await stream.receive_some(hs.bytes_wanted))


async def connect_candidate(host: str, port: int, dst: str) -> trio.SocketStream:
    """Connect to a streamhost and run the SOCKS5 handshake for DST.ADDR ``dst``.

    Bounded only by the caller's cancel scope.  Raises :class:`CandidateConnectError` (network)
    or :class:`~jet_trio._transports.socks5.Socks5Error` (handshake refused or broken).
    """
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise CandidateConnectError(f"cannot connect to streamhost {host}:{port}: {exc}") from exc
    try:
        await _client_handshake(stream, dst)
    except BaseException as exc:
        await trio.aclose_forcefully(stream)
        if isinstance(exc, (OSError, trio.BrokenResourceError)):
            raise CandidateConnectError(f"streamhost {host}:{port} failed: {exc}") from exc
        raise
    return stream


_HOST_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def candidate_host_problem(host: str) -> str | None:
    """Why a peer's candidate ``host`` is not worth a connection attempt, or ``None``.

    An IP literal must be a unicast address (an IPv6 scope must name an interface of this
    host); anything else must be a syntactically valid DNS name (no lookup is made here).
    """
    text, _, scope = host.partition("%")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_unspecified or ip.is_multicast or (ip.version == 4 and ip.is_reserved):
            return f"{host!r} is not a unicast address"
        if scope:
            if ip.version != 6:
                return f"{host!r}: only IPv6 addresses take a scope"
            if not scope.isdigit():
                try:
                    socket.if_nametoindex(scope)
                except OSError:
                    return f"{host!r}: no interface {scope!r} here"
        return None
    if scope or len(host) > 253:
        return f"{host[:64]!r} is not an IP address or host name"
    labels = host.rstrip(".").split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return f"{host[:64]!r} is not an IP address or host name"
    return None


#: At most this many of a peer's candidates are tried (a peer may offer hundreds); the rest,
#: the lowest in priority, are ignored.
MAX_TRIED_CANDIDATES: Final = 16
#: Default per-attempt bound (TCP connect plus SOCKS5 handshake) and stagger between attempts.
ATTEMPT_TIMEOUT: Final = 3.0
STAGGER: Final = 0.25
#: Head start of the better kind of candidates (direct) over the next kind (proxy): a loaded
#: peer may take longer than ``STAGGER`` to answer on its LAN address, and a proxy winning then
#: would carry a LAN transfer through the server.
TYPE_STAGGER: Final = 1.0


async def connect_any(
    candidates: Sequence[Candidate],
    dst: str,
    *,
    attempt_timeout: float = ATTEMPT_TIMEOUT,
    stagger: float = STAGGER,
    type_stagger: float = TYPE_STAGGER,
    max_tried: int = MAX_TRIED_CANDIDATES,
) -> tuple[Candidate, trio.SocketStream]:
    """Race the candidates in :func:`connection_order`, happy-eyeballs style.

    The first attempt starts at once, each next one ``stagger`` seconds later or as soon as the
    previous one failed; the first candidate of a lower type (a proxy after direct ones) waits
    ``type_stagger`` seconds, or until every attempt before it failed.  Every attempt (TCP
    connect and SOCKS5 handshake) is bounded by ``attempt_timeout``.  The first completed
    handshake wins and every other attempt is cancelled and closed.  Only the ``max_tried``
    best candidates are tried.  Raises :class:`CandidateConnectError` naming every failure if
    none works.
    """
    order = connection_order(candidates)
    if len(order) > max_tried:
        log.info("S5B: trying the %d best of %d candidates", max_tried, len(order))
        order = order[:max_tried]
    failures: list[str] = []
    usable = []
    for cand in order:
        problem = candidate_host_problem(cand.host)
        if problem is None:
            usable.append(cand)
        else:
            failures.append(f"{cand.cid}: skipped, {problem}")
            log.debug("S5B: candidate %s skipped: %s", cand.cid, problem)
    order = tuple(usable)
    winner: tuple[Candidate, trio.SocketStream] | None = None

    async def attempt(cand: Candidate, done: trio.Event, nursery: trio.Nursery) -> None:
        nonlocal winner
        stream: trio.SocketStream | None = None
        log.debug(
            "S5B: trying candidate %s %s:%s (%s, priority %d)",
            cand.cid,
            cand.host,
            cand.port,
            cand.type,
            cand.priority,
        )
        try:
            with trio.move_on_after(attempt_timeout):
                stream = await connect_candidate(cand.host, cand.port, dst)
            if stream is None:
                failures.append(f"{cand.cid} ({cand.host}:{cand.port}): timed out")
        except (CandidateConnectError, Socks5Error) as exc:
            failures.append(f"{cand.cid}: {exc}")
        finally:
            done.set()
        if stream is None:
            log.debug("S5B: candidate %s failed: %s", cand.cid, failures[-1])
            return
        if winner is not None:
            await trio.aclose_forcefully(stream)
            return
        winner = (cand, stream)
        log.debug("S5B: connected to candidate %s %s:%s", cand.cid, cand.host, cand.port)
        nursery.cancel_scope.cancel()

    try:
        with unwrapped_errors():
            async with trio.open_nursery() as nursery:
                started: list[trio.Event] = []
                for i, cand in enumerate(order):
                    if i and cand.type != order[i - 1].type:
                        with trio.move_on_after(max(type_stagger - stagger, 0)):
                            for event in started:  # all set: every attempt so far failed
                                await event.wait()
                    done = trio.Event()
                    started.append(done)
                    nursery.start_soon(attempt, cand, done, nursery)
                    with trio.move_on_after(stagger):
                        await done.wait()
    except BaseException:
        if winner is not None:  # cancelled from outside just after an attempt won
            await trio.aclose_forcefully(winner[1])
        raise
    if winner is not None:
        return winner
    raise CandidateConnectError("no S5B candidate worked: " + ("; ".join(failures) or "none"))


_Queue: TypeAlias = tuple[
    trio.MemorySendChannel[trio.SocketStream], trio.MemoryReceiveChannel[trio.SocketStream]
]


class S5BListener:
    """Direct-candidate listener; create with :func:`open_s5b_listener`.

    Register each expected DST.ADDR with :meth:`expect` *before* offering the candidates, then
    :meth:`accept` hands over the authenticated streams.  Connections asking for an
    unregistered DST.ADDR are refused (REP 0x02) and closed.
    """

    def __init__(
        self,
        listeners: list[trio.SocketListener],
        handshake_timeout: float,
        max_pending: int,
        max_queued: int,
    ) -> None:
        self._listeners = listeners
        self._handshake_timeout = handshake_timeout
        self._max_pending = max_pending
        self._max_queued = max_queued
        self._pending = 0
        self._queues: dict[
            str,
            tuple[
                trio.MemorySendChannel[trio.SocketStream],
                trio.MemoryReceiveChannel[trio.SocketStream],
            ],
        ] = {}
        self._set_aside: dict[str, list[trio.SocketStream]] = {}
        sockname = listeners[0].socket.getsockname()
        self.host: str = sockname[0]
        self.port: int = sockname[1]
        #: (address, port) of every listening socket: one per address family or bound address.
        self.bound: tuple[tuple[str, int], ...] = tuple(
            (lst.socket.getsockname()[0], lst.socket.getsockname()[1]) for lst in listeners
        )

    def port_for(self, address: str) -> int:
        """The port on which ``address`` (an IP literal or a host name) is served."""
        family = _family_of(address)
        for lst in self._listeners:
            bound = lst.socket.getsockname()[0]
            if bound == address or (
                family is not None and lst.socket.family == family and _is_wildcard(bound)
            ):
                return int(lst.socket.getsockname()[1])
        for lst in self._listeners:
            if family is not None and lst.socket.family == family:
                return int(lst.socket.getsockname()[1])
        return self.port

    def expect(self, dst: str) -> None:
        """Start accepting connections for DST.ADDR ``dst``."""
        if dst not in self._queues:
            self._queues[dst] = trio.open_memory_channel[trio.SocketStream](self._max_queued)

    def forget(self, dst: str) -> None:
        """Stop accepting ``dst``; streams not yet accepted are closed."""
        pair = self._queues.pop(dst, None)
        if pair is not None:
            _drain_and_close(pair)
        for stream in self._set_aside.pop(dst, []):
            stream.socket.close()

    async def accept(
        self, dst: str, local_address: str | None = None, grace: float = 1.0
    ) -> trio.SocketStream:
        """Wait for an authenticated connection for ``dst`` (registered with expect()).

        A peer that races our candidates may complete the handshake on several of them and
        keep only one: with ``local_address`` (the address of the candidate the peer said it
        used), the connection made to that local address is handed over.  The others are set
        aside (closed by :meth:`forget`); if only such others arrived within ``grace`` seconds
        after the first one (a peer behind port forwarding reaches us on another address), the
        first of them is handed over.
        """
        pair = self._queues.get(dst)
        if pair is None:
            raise KeyError(f"DST.ADDR {dst} is not expected; call expect() first")
        aside = self._set_aside.setdefault(dst, [])
        want = _normalise_ip(local_address) if local_address is not None else None
        if want is None:
            if aside:
                return aside.pop(0)
            return await pair[1].receive()
        for i, stream in enumerate(aside):
            if _local_ip(stream) == want:
                return aside.pop(i)
        deadline = trio.current_time() + grace if aside else math.inf
        while True:
            with trio.move_on_at(deadline):
                stream = await pair[1].receive()
                if _local_ip(stream) == want:
                    return stream
                aside.append(stream)
                deadline = min(deadline, trio.current_time() + grace)
                continue
            return aside.pop(0)

    async def _serve(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            stream = await listener.accept()
            if self._pending >= self._max_pending:
                await trio.aclose_forcefully(stream)
                continue
            self._pending += 1
            nursery.start_soon(self._handshake, stream)

    async def _handshake(self, stream: trio.SocketStream) -> None:
        handed_over = False
        try:
            with trio.move_on_after(self._handshake_timeout):
                handed_over = await self._run_handshake(stream)
        except (Socks5Error, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # a bad or vanished peer: nothing to hand over
        finally:
            self._pending -= 1
            if not handed_over:
                await trio.aclose_forcefully(stream)

    async def _run_handshake(self, stream: trio.SocketStream) -> bool:
        def wanted(dst: str) -> bool:
            pair = self._queues.get(dst)
            return pair is not None and (
                pair[0].statistics().current_buffer_used < self._max_queued
            )

        dst = await serve_socks5_handshake(stream, wanted)
        pair = self._queues.get(dst) if dst is not None else None
        if pair is None:
            return False
        try:
            pair[0].send_nowait(stream)
        except (trio.WouldBlock, trio.ClosedResourceError):
            return False
        return True


async def serve_socks5_handshake(
    stream: trio.SocketStream, wanted: Callable[[str], bool]
) -> str | None:
    """Run the server side of a SOCKS5 CONNECT handshake on ``stream``.

    ``wanted(dstaddr)`` decides whether the connection is taken; the client is answered success
    or not-allowed accordingly. Returns the DST.ADDR once success was sent, ``None`` if refused.
    Malformed input raises :class:`~jet_trio._transports.socks5.Socks5Error`
    after the error reply was sent.
    """
    hs = Socks5Server()
    while True:
        try:
            event = hs.next_event()
        except Socks5Error:
            await stream.send_all(hs.data_to_send())
            raise
        out = hs.data_to_send()
        if out:
            await stream.send_all(out)
        if event is NEED_DATA:
            hs.receive_data(await stream.receive_some(hs.bytes_wanted))
            continue
        if not wanted(event.dstaddr):
            hs.reject(ReplyCode.NOT_ALLOWED)
            await stream.send_all(hs.data_to_send())
            return None
        hs.accept()
        await stream.send_all(hs.data_to_send())
        return event.dstaddr


def _drain_and_close(pair: _Queue) -> None:
    send, receive = pair
    send.close()
    while True:
        try:
            stream = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            break
        # Closing a socket needs no await; the stream has not been used for anything else.
        stream.socket.close()
    receive.close()


def _family_of(address: str) -> socket.AddressFamily | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def _is_wildcard(address: str) -> bool:
    return address in ("0.0.0.0", "::")


def _normalise_ip(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.split("%", 1)[0]))
    except ValueError:
        return None


def _local_ip(stream: trio.SocketStream) -> str | None:
    try:
        local = stream.socket.getsockname()[0]
    except OSError:
        return None
    return _normalise_ip(str(local))


_NO_SUCH_ADDRESS: Final = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL)


async def _bind(host: str, port: int) -> trio.SocketListener:
    listeners = await trio.open_tcp_listeners(port, host=host)
    # A name may resolve to several addresses: keep the first.
    for extra in listeners[1:]:
        extra.socket.close()
    return listeners[0]


@asynccontextmanager
async def open_s5b_listener(
    host: str | Sequence[str] = "127.0.0.1",
    port: int = 0,
    *,
    handshake_timeout: float = 10.0,
    max_pending: int = 16,
    max_queued: int = 8,
) -> AsyncIterator[S5BListener]:
    """Listen for direct S5B connections on ``host:port`` (0 = ephemeral) within a nursery.

    ``host`` is one address (or name: its first address is bound) or several, each bound on
    its own socket, all on the same port where possible (``"::"`` and ``"0.0.0.0"`` give one
    listener per address family, the IPv6 one IPv6-only).  ``listener.host``/``port`` are the
    first bound address; :meth:`S5BListener.port_for` gives the port serving an address.
    When binding a wildcard address, advertise the interface addresses in the candidates.

    At most ``max_pending`` handshakes run at once (more connections are dropped), each bounded
    by ``handshake_timeout``; at most ``max_queued`` authenticated streams wait per DST.ADDR.
    """
    hosts = [host] if isinstance(host, str) else list(dict.fromkeys(host))
    if not hosts:
        raise ValueError("open_s5b_listener needs at least one address")
    listeners: list[trio.SocketListener] = []
    try:
        for i, h in enumerate(hosts):
            same = int(listeners[0].socket.getsockname()[1]) if listeners and port == 0 else port
            try:
                listeners.append(await _bind(h, same))
            except OSError as exc:
                if exc.errno in _NO_SUCH_ADDRESS and (listeners or i + 1 < len(hosts)):
                    log.info("S5B: cannot listen on %s: %s", h, exc)
                    continue  # e.g. IPv6 disabled: serve the other addresses
                if exc.errno != errno.EADDRINUSE or port != 0 or not listeners:
                    raise
                listeners.append(await _bind(h, 0))  # that port is taken there: another one
        if not listeners:
            raise OSError(errno.EADDRNOTAVAIL, f"cannot listen on any of {', '.join(hosts)}")
        with unwrapped_errors():
            async with trio.open_nursery() as nursery:
                s5b = S5BListener(listeners, handshake_timeout, max_pending, max_queued)
                for lst in listeners:
                    nursery.start_soon(s5b._serve, lst, nursery)
                try:
                    yield s5b
                finally:
                    nursery.cancel_scope.cancel()
                    for dst in list(s5b._queues):
                        s5b.forget(dst)
    finally:
        for lst in listeners:
            lst.socket.close()
