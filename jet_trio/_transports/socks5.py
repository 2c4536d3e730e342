"""Sans-IO SOCKS5 handshakes, the subset of RFC 1928 that XEP-0065 uses.

Version 5, the "no authentication" method, CONNECT, ATYP=DOMAINNAME whose DST.ADDR is the
40-character hex SHA-1 from :func:`dstaddr`, port 0.  :class:`Socks5Client` and
:class:`Socks5Server` consume bytes with ``receive_data``, report progress with ``next_event``
and queue their output for ``data_to_send``.  ``bytes_wanted`` tells a shell how much it may read
without reading past the handshake, so the bytes after it stay in the socket for the application.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

from .._errors import LocalProtocolError, RemoteProtocolError
from .._xmpp.jid import JID

__all__ = [
    "NEED_DATA",
    "ConnectRequest",
    "Connected",
    "NeedData",
    "ReplyCode",
    "Socks5Client",
    "Socks5Error",
    "Socks5ReplyError",
    "Socks5Server",
    "Socks5StateError",
    "dstaddr",
]

VERSION: Final = 0x05
METHOD_NO_AUTH: Final = 0x00
METHOD_NONE_ACCEPTABLE: Final = 0xFF
CMD_CONNECT: Final = 0x01
ATYP_IPV4: Final = 0x01
ATYP_DOMAIN: Final = 0x03
ATYP_IPV6: Final = 0x04
DSTADDR_LEN: Final = 40  # hex SHA-1
_HEX: Final = frozenset("0123456789abcdef")


class ReplyCode(enum.IntEnum):
    """RFC 1928 REP values."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class Socks5Error(RemoteProtocolError):
    """The peer broke the SOCKS5 handshake.

    ``reply`` is the reply code a server queued for the peer before giving up (``None`` when the
    protocol allows no reply, e.g. a wrong version byte, or on the client side).
    """

    def __init__(self, message: str, reply: ReplyCode | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class Socks5ReplyError(Socks5Error):
    """The SOCKS5 server refused the request (``reply`` is its code)."""


class Socks5StateError(LocalProtocolError):
    """A handshake object was used out of order."""


class NeedData(enum.Enum):
    """Sentinel type of :data:`NEED_DATA`."""

    NEED_DATA = enum.auto()


NEED_DATA: Final = NeedData.NEED_DATA
"""Returned by ``next_event`` when more bytes are needed."""


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """Server side: the client asked to CONNECT to ``dstaddr``; answer with accept() or reject()."""

    dstaddr: str


@dataclass(frozen=True, slots=True)
class Connected:
    """Client side: the server accepted; the connection now carries the bytestream."""

    dstaddr: str


def dstaddr(sid: str, requester: JID | str, target: JID | str) -> str:
    """Return DST.ADDR = hex SHA-1(sid + requester full JID + target full JID).

    For Jingle (XEP-0260) ``sid`` is the *transport* sid (the ``sid`` of ``<transport>``, not the
    Jingle session sid), ``requester`` is the party that **offered** the candidate and ``target``
    its peer, for direct and proxy candidates alike: the initiator's candidates use
    (initiator, responder), the responder's use (responder, initiator).  This is the value of the
    ``dstaddr`` attribute each side puts in its own ``<transport>``; Dino 0.4.2's captures match it.
    """
    data = f"{sid}{requester}{target}".encode()
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _check_dstaddr(value: str) -> str:
    if len(value) != DSTADDR_LEN or not set(value) <= _HEX:
        raise Socks5StateError(f"DST.ADDR must be 40 lowercase hex characters, got {value!r}")
    return value


def _encode_address(addr: str) -> bytes:
    raw = addr.encode("ascii")
    return bytes([ATYP_DOMAIN, len(raw)]) + raw + b"\x00\x00"


def _reply(code: ReplyCode, addr: str | None) -> bytes:
    if addr is None:
        # RFC 1928 requires an address in every reply; failures carry an empty IPv4 one.
        return bytes([VERSION, code, 0x00, ATYP_IPV4, 0, 0, 0, 0, 0, 0])
    return bytes([VERSION, code, 0x00]) + _encode_address(addr)


class _Buffer:
    """Input buffer that refuses to grow past what the handshake can legitimately need."""

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def take(self, n: int) -> bytes:
        out = bytes(self.data[:n])
        del self.data[:n]
        return out


class Socks5Client:
    """Client (connecting) side of an XEP-0065 SOCKS5 handshake.

    The greeting is queued at construction; the CONNECT request is queued once the server has
    chosen the no-auth method.  ``next_event`` returns :data:`NEED_DATA` or :class:`Connected`.
    """

    def __init__(self, dst: str) -> None:
        self.dstaddr = _check_dstaddr(dst)
        self._state: Literal["method", "reply", "connected", "error"] = "method"
        self._in = _Buffer(2 + 5 + 255 + 2)
        self._out = bytearray([VERSION, 1, METHOD_NO_AUTH])

    @property
    def state(self) -> str:
        """``method``, ``reply``, ``connected`` or ``error``."""
        return self._state

    @property
    def bytes_wanted(self) -> int:
        """The most bytes that can be read now without reading past the handshake."""
        have = len(self._in.data)
        if self._state == "method":
            return max(0, 2 - have)
        if self._state == "reply":
            if have < 5:
                return 5 - have
            need = self._reply_len(self._in.data)
            return max(0, need - have)
        return 0

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the handshake (application data), once connected."""
        return bytes(self._in.data) if self._state == "connected" else b""

    def data_to_send(self) -> bytes:
        """Return and forget the bytes queued for the server."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the server (b"" means EOF)."""
        if self._state == "error":
            raise Socks5StateError("handshake already failed")
        if not data and self._state != "connected":
            self._state = "error"
            raise Socks5Error("server closed the connection during the SOCKS5 handshake")
        self._in.feed(data)
        if self._state != "connected" and len(self._in.data) > self._in.limit:
            self._fail("oversized SOCKS5 reply")

    @staticmethod
    def _reply_len(head: bytearray) -> int:
        atyp = head[3]
        if atyp == ATYP_DOMAIN:
            return 5 + head[4] + 2
        if atyp == ATYP_IPV4:
            return 4 + 4 + 2
        if atyp == ATYP_IPV6:
            return 4 + 16 + 2
        raise Socks5Error(f"SOCKS5 reply has unknown address type {atyp:#04x}")

    def _fail(
        self, message: str, cls: type[Socks5Error] = Socks5Error, reply: ReplyCode | None = None
    ) -> NoReturn:
        self._state = "error"
        raise cls(message, reply)

    def next_event(self) -> NeedData | Connected:
        """Advance the handshake as far as the buffered bytes allow."""
        buf = self._in.data
        if self._state == "method":
            if len(buf) < 2:
                return NEED_DATA
            ver, method = self._in.take(2)
            if ver != VERSION:
                self._fail(f"SOCKS5 server answered with version {ver:#04x}")
            if method != METHOD_NO_AUTH:
                self._fail(f"SOCKS5 server refused the no-auth method (chose {method:#04x})")
            head = bytes([VERSION, CMD_CONNECT, 0x00])
            self._out += head + _encode_address(self.dstaddr)
            self._state = "reply"
        if self._state == "reply":
            if len(buf) < 5:
                return NEED_DATA
            if buf[0] != VERSION:
                self._fail(f"SOCKS5 reply has version {buf[0]:#04x}")
            if buf[1] != ReplyCode.SUCCEEDED:
                try:
                    code = ReplyCode(buf[1])
                except ValueError:
                    self._fail(f"SOCKS5 server failed with unknown reply {buf[1]:#04x}")
                self._fail(
                    f"SOCKS5 server refused the connection: {code.name.lower()} ({code:#04x})",
                    Socks5ReplyError,
                    reply=code,
                )
            if buf[2] != 0:
                self._fail("SOCKS5 reply has a non-zero reserved byte")
            try:
                need = self._reply_len(buf)
            except Socks5Error:
                self._state = "error"
                raise
            if len(buf) < need:
                return NEED_DATA
            reply = self._in.take(need)
            # XEP-0065 servers echo the hash; RFC 1928 ones may send their bound IP instead.
            if reply[3] == ATYP_DOMAIN and reply[5 : 5 + reply[4]].lower() != self.dstaddr.encode():
                self._fail("SOCKS5 reply names a different DST.ADDR than requested")
            self._state = "connected"
            return Connected(self.dstaddr)
        if self._state == "connected":
            raise Socks5StateError("handshake already complete")
        raise Socks5StateError("handshake already failed")


class Socks5Server:
    """Server (listening or proxy) side of an XEP-0065 SOCKS5 handshake.

    ``next_event`` returns :data:`NEED_DATA` or :class:`ConnectRequest`; the caller then decides
    with :meth:`accept` or :meth:`reject`.  Protocol violations raise :class:`Socks5Error` after
    queuing the proper reply (if any) in ``data_to_send``: send it, then close the connection.
    """

    def __init__(self) -> None:
        self._state: Literal["greeting", "request", "decide", "accepted", "error"] = "greeting"
        # Greeting (2 + 255) plus a pipelined request (7 + 255).
        self._in = _Buffer(2 + 255 + 7 + 255)
        self._out = bytearray()
        self._dstaddr: str | None = None

    @property
    def state(self) -> str:
        """``greeting``, ``request``, ``decide``, ``accepted`` or ``error``."""
        return self._state

    @property
    def bytes_wanted(self) -> int:
        """The most bytes that can be read now without reading past the handshake."""
        buf = self._in.data
        if self._state == "greeting":
            if len(buf) < 2:
                return 2 - len(buf)
            return max(0, 2 + buf[1] - len(buf))
        if self._state == "request":
            if len(buf) < 5:
                return 5 - len(buf)
            if buf[3] == ATYP_DOMAIN:
                return max(0, 5 + buf[4] + 2 - len(buf))
            return 0
        return 0

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the request (application data), once accepted."""
        return bytes(self._in.data) if self._state == "accepted" else b""

    def data_to_send(self) -> bytes:
        """Return and forget the bytes queued for the client."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the client (b"" means EOF)."""
        if self._state == "error":
            raise Socks5StateError("handshake already failed")
        if self._state == "accepted":
            self._in.feed(data)
            return
        if not data:
            self._state = "error"
            raise Socks5Error("client closed the connection during the SOCKS5 handshake")
        self._in.feed(data)
        if len(self._in.data) > self._in.limit:
            self._fail("oversized SOCKS5 handshake", ReplyCode.GENERAL_FAILURE)

    def _fail(self, message: str, reply: ReplyCode | None) -> NoReturn:
        self._state = "error"
        if reply is not None:
            self._out += _reply(reply, None)
        raise Socks5Error(message, reply)

    def next_event(self) -> NeedData | ConnectRequest:
        """Advance the handshake as far as the buffered bytes allow."""
        buf = self._in.data
        if self._state == "greeting":
            if len(buf) >= 1 and buf[0] != VERSION:
                self._fail(f"not a SOCKS5 client (version byte {buf[0]:#04x})", None)
            if len(buf) < 2:
                return NEED_DATA
            nmethods = buf[1]
            if nmethods == 0:
                self._fail("SOCKS5 greeting offers no authentication method", None)
            if len(buf) < 2 + nmethods:
                return NEED_DATA
            methods = self._in.take(2 + nmethods)[2:]
            if METHOD_NO_AUTH not in methods:
                self._state = "error"
                self._out += bytes([VERSION, METHOD_NONE_ACCEPTABLE])
                raise Socks5Error("SOCKS5 client does not offer the no-auth method")
            self._out += bytes([VERSION, METHOD_NO_AUTH])
            self._state = "request"
        if self._state == "request":
            if len(buf) >= 1 and buf[0] != VERSION:
                self._fail(f"SOCKS5 request has version {buf[0]:#04x}", ReplyCode.GENERAL_FAILURE)
            if len(buf) >= 2 and buf[1] != CMD_CONNECT:
                self._fail(
                    f"unsupported SOCKS5 command {buf[1]:#04x}", ReplyCode.COMMAND_NOT_SUPPORTED
                )
            if len(buf) >= 3 and buf[2] != 0:
                self._fail("SOCKS5 request has a non-zero reserved byte", ReplyCode.GENERAL_FAILURE)
            if len(buf) >= 4 and buf[3] != ATYP_DOMAIN:
                self._fail(
                    f"SOCKS5 address type {buf[3]:#04x} is not a domain name",
                    ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED,
                )
            if len(buf) < 5:
                return NEED_DATA
            alen = buf[4]
            if len(buf) < 5 + alen + 2:
                return NEED_DATA
            request = self._in.take(5 + alen + 2)
            raw_addr = request[5 : 5 + alen]
            port = int.from_bytes(request[5 + alen :], "big")
            addr = raw_addr.decode("ascii", "replace").lower()
            if alen != DSTADDR_LEN or not set(addr) <= _HEX:
                self._fail(f"DST.ADDR {raw_addr[:64]!r} is not a SHA-1 hash", ReplyCode.NOT_ALLOWED)
            if port != 0:
                self._fail(f"DST.PORT must be 0, got {port}", ReplyCode.NOT_ALLOWED)
            self._dstaddr = addr
            self._state = "decide"
            return ConnectRequest(addr)
        if self._state == "decide":
            raise Socks5StateError("accept() or reject() the pending request first")
        raise Socks5StateError(f"no more events in state {self._state}")

    def accept(self) -> None:
        """Queue the success reply (echoing DST.ADDR, port 0, as XEP-0065 requires)."""
        if self._state != "decide":
            raise Socks5StateError(f"cannot accept in state {self._state}")
        self._out += _reply(ReplyCode.SUCCEEDED, self._dstaddr)
        self._state = "accepted"

    def reject(self, code: ReplyCode = ReplyCode.HOST_UNREACHABLE) -> None:
        """Queue a failure reply; the connection must then be closed."""
        if self._state != "decide":
            raise Socks5StateError(f"cannot reject in state {self._state}")
        if code == ReplyCode.SUCCEEDED:
            raise Socks5StateError("reject() needs a failure code")
        self._out += _reply(code, None)
        self._state = "error"
