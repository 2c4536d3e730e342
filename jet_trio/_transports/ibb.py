"""In-band bytestreams (XEP-0047) for Jingle (XEP-0261).

:class:`IBBConnection` is the sans-IO core: it builds ``<open>``/``<data>``/``<close>`` payloads
and validates received ones, raising :class:`IBBError` carrying the stanza error to answer.
:func:`open_ibb_stream` wraps it as a trio stream over an :class:`IQSender` supplied by the client,
keeping up to ``window`` data iqs in flight and applying backpressure on receive by delaying the
acknowledgement of blocks the application has not read yet.
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeAlias

import trio
from lxml import etree

from .._errors import JetError, LocalProtocolError, RemoteProtocolError
from .._trio_util import unwrapped_errors
from .._xmpp import ns as ns

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "MAX_BLOCK_SIZE",
    "Closed",
    "DataReceived",
    "IBBConnection",
    "IBBError",
    "IBBStateError",
    "IBBStream",
    "IBBTransport",
    "IQSender",
    "Opened",
    "answer_block_size",
    "build_transport",
    "check_answered_block_size",
    "open_ibb_stream",
    "parse_transport",
]

DEFAULT_BLOCK_SIZE: Final = 4096
MAX_BLOCK_SIZE: Final = 65535
_SEQ_MOD: Final = 1 << 16
_Element: TypeAlias = etree._Element
ErrorType: TypeAlias = Literal["cancel", "modify", "wait", "auth", "continue"]


class IBBError(RemoteProtocolError):
    """The peer broke XEP-0047; answer its iq with ``condition``/``error_type``.

    The bytestream is dead afterwards (XEP-0047 requires considering it closed).
    """

    def __init__(self, message: str, condition: str, error_type: ErrorType = "cancel") -> None:
        super().__init__(message)
        self.condition = condition
        self.error_type = error_type


class IBBStateError(LocalProtocolError):
    """An :class:`IBBConnection` was used in a way its state does not allow."""


def _q(name: str) -> str:
    return f"{{{ns.IBB}}}{name}"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_block_size(value: str | None, what: str) -> int:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 6:
        raise IBBError(f"{what} has a missing or invalid block-size", "bad-request")
    size = int(value)
    if not 0 < size <= MAX_BLOCK_SIZE:
        raise IBBError(f"{what} block-size {size} is outside 1..65535", "bad-request")
    return size


# --- Jingle transport (XEP-0261) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IBBTransport:
    """``<transport xmlns='urn:xmpp:jingle:transports:ibb:1' block-size sid/>``."""

    sid: str
    block_size: int = DEFAULT_BLOCK_SIZE

    def __post_init__(self) -> None:
        if not self.sid:
            raise ValueError("IBB transport needs a sid")
        if not 0 < self.block_size <= MAX_BLOCK_SIZE:
            raise ValueError(f"block size must be in 1..65535, got {self.block_size}")


def build_transport(transport: IBBTransport) -> _Element:
    """Build the Jingle IBB ``<transport/>``."""
    return etree.Element(
        f"{{{ns.JINGLE_IBB}}}transport",
        nsmap={None: ns.JINGLE_IBB},  # type: ignore[dict-item]
        attrib={"block-size": str(transport.block_size), "sid": transport.sid},
    )


def parse_transport(el: _Element) -> IBBTransport:
    """Parse and validate a Jingle IBB ``<transport/>``; raises :class:`IBBError`."""
    if el.tag != f"{{{ns.JINGLE_IBB}}}transport":
        raise IBBError(f"not an IBB transport: {el.tag!r}", "bad-request")
    sid = el.get("sid")
    if not sid or len(sid) > 1023:
        raise IBBError("IBB transport has a missing or oversized sid", "bad-request")
    return IBBTransport(sid, _check_block_size(el.get("block-size"), "IBB transport"))


def answer_block_size(offered: int, local_max: int = MAX_BLOCK_SIZE) -> int:
    """The block size a responder answers: the offer, lowered to ``local_max`` if needed."""
    if not 0 < local_max <= MAX_BLOCK_SIZE:
        raise ValueError(f"local maximum must be in 1..65535, got {local_max}")
    return min(offered, local_max)


def check_answered_block_size(offered: int, answered: int) -> int:
    """Validate the responder's answer: it may lower the block size, never raise it."""
    if answered > offered:
        raise IBBError(f"raised the IBB block size from {offered} to {answered}", "not-acceptable")
    return answered


# --- sans-IO core (XEP-0047) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """The peer opened the bytestream with this block size."""

    block_size: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """A data block arrived in sequence."""

    seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer closed the bytestream (both directions)."""


IBBEvent: TypeAlias = Opened | DataReceived | Closed


class State(enum.Enum):
    """Bytestream state: IDLE until an ``<open>`` is sent or received."""

    IDLE = "idle"
    OPEN = "open"
    CLOSED = "closed"


class IBBConnection:
    """One in-band bytestream ``sid``, both directions, iq stanzas only.

    Outgoing: :meth:`send_open`, :meth:`send_data`, :meth:`send_close` return the payload element
    to put in an iq set to the peer.  Incoming: :meth:`receive` takes the payload of an iq set from
    the peer and returns an event, or raises :class:`IBBError` (answer the iq with its condition;
    after a protocol violation in the stream the connection is CLOSED, as XEP-0047 requires).
    ``initial_seq`` exists for tests of the 16-bit wrap.
    """

    def __init__(self, sid: str, block_size: int = DEFAULT_BLOCK_SIZE, *, initial_seq: int = 0):
        if not sid:
            raise ValueError("IBB needs a sid")
        if not 0 < block_size <= MAX_BLOCK_SIZE:
            raise ValueError(f"block size must be in 1..65535, got {block_size}")
        self.sid = sid
        self.block_size = block_size
        self.state = State.IDLE
        self._send_seq = initial_seq % _SEQ_MOD
        self._recv_seq = initial_seq % _SEQ_MOD
        # Longest base64 text a block_size block can encode to.
        self._max_b64 = 4 * _ceil_div(block_size, 3)

    def _require(self, state: State, action: str) -> None:
        if self.state is not state:
            raise IBBStateError(f"cannot {action} an IBB bytestream in state {self.state.value}")

    def send_open(self) -> _Element:
        """The ``<open/>`` payload (IDLE -> OPEN)."""
        self._require(State.IDLE, "open")
        self.state = State.OPEN
        return etree.Element(
            _q("open"),
            nsmap={None: ns.IBB},  # type: ignore[dict-item]
            attrib={"block-size": str(self.block_size), "sid": self.sid, "stanza": "iq"},
        )

    def send_data(self, data: bytes | bytearray | memoryview) -> _Element:
        """The ``<data/>`` payload for one block of at most ``block_size`` bytes."""
        self._require(State.OPEN, "send data on")
        if len(data) > self.block_size:
            raise IBBStateError(f"block of {len(data)} bytes exceeds block-size {self.block_size}")
        el = etree.Element(
            _q("data"),
            nsmap={None: ns.IBB},  # type: ignore[dict-item]
            seq=str(self._send_seq),
            sid=self.sid,
        )
        el.text = base64.b64encode(data).decode("ascii")
        self._send_seq = (self._send_seq + 1) % _SEQ_MOD
        return el

    def send_close(self) -> _Element:
        """The ``<close/>`` payload (-> CLOSED)."""
        if self.state is State.CLOSED:
            raise IBBStateError("IBB bytestream already closed")
        self.state = State.CLOSED
        return etree.Element(_q("close"), nsmap={None: ns.IBB}, sid=self.sid)  # type: ignore[dict-item]

    def _fail(self, message: str, condition: str, error_type: ErrorType = "cancel") -> IBBError:
        self.state = State.CLOSED
        return IBBError(message, condition, error_type)

    def receive(self, payload: _Element) -> IBBEvent:
        """Process the payload of an incoming iq set addressed to this bytestream."""
        tag = payload.tag
        if payload.get("sid") != self.sid:
            # Not ours: the connection itself is unaffected.
            raise IBBError("unknown IBB session", "item-not-found")
        if self.state is State.CLOSED:
            raise IBBError("IBB bytestream is closed", "item-not-found")
        if tag == _q("open"):
            if self.state is not State.IDLE:
                raise self._fail("IBB bytestream opened twice", "unexpected-request")
            if payload.get("stanza", "iq") != "iq":
                raise IBBError("only iq-based IBB is supported", "not-acceptable")
            size = _check_block_size(payload.get("block-size"), "IBB open")
            if size > self.block_size:
                # XEP-0047: a too-large block size is refused with resource-constraint (modify).
                raise IBBError(
                    f"block-size {size} exceeds the negotiated {self.block_size}",
                    "resource-constraint",
                    "modify",
                )
            self.block_size = size
            self._max_b64 = 4 * _ceil_div(size, 3)
            self.state = State.OPEN
            return Opened(size)
        if self.state is not State.OPEN:
            raise self._fail("IBB data or close before open", "unexpected-request")
        if tag == _q("close"):
            self.state = State.CLOSED
            return Closed()
        if tag != _q("data"):
            raise self._fail(f"unexpected IBB element {tag!r}", "bad-request")
        seq_s = payload.get("seq")
        if seq_s is None or not seq_s.isascii() or not seq_s.isdigit() or len(seq_s) > 5:
            raise self._fail("IBB data has a missing or invalid seq", "bad-request")
        seq = int(seq_s)
        if seq >= _SEQ_MOD:
            raise self._fail(f"IBB seq {seq} exceeds 65535", "bad-request")
        if seq != self._recv_seq:
            raise self._fail(
                f"IBB seq {seq} out of sequence (expected {self._recv_seq})", "unexpected-request"
            )
        text = payload.text or ""
        if len(text) > self._max_b64:
            raise self._fail(f"IBB block exceeds block-size {self.block_size}", "bad-request")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self._fail(f"IBB data is not valid base64: {exc}", "bad-request") from exc
        if len(data) > self.block_size:
            raise self._fail(f"IBB block exceeds block-size {self.block_size}", "bad-request")
        self._recv_seq = (seq + 1) % _SEQ_MOD
        return DataReceived(seq, data)


# --- trio shell ---------------------------------------------------------------------------


class IQSender(Protocol):
    """What the client supplies to an :class:`IBBStream`.

    ``send_iq(payload)`` sends ``<iq type='set' to=peer>payload</iq>``, waits for the answer and
    returns it; an error answer raises (any :class:`~jet_trio.JetError`).  Stanzas must reach the
    wire in the order of the calls: the stanza's place in the write queue must be fixed before
    ``send_iq`` first yields (a FIFO ``trio.Lock`` or a memory channel towards the writer both do).
    """

    async def send_iq(self, payload: _Element) -> _Element: ...


class IBBStream(trio.abc.Stream):
    """An in-band bytestream as a :class:`trio.abc.Stream`; create with :func:`open_ibb_stream`.

    ``<close>`` ends both directions, so this is not half-closeable: :meth:`aclose` waits for the
    blocks in flight and then sends ``<close>``.  Incoming iq payloads for this sid are handed to
    :meth:`feed` by the client.
    """

    def __init__(
        self,
        conn: IBBConnection,
        sender: IQSender,
        nursery: trio.Nursery,
        *,
        window: int,
        receive_buffer: int,
        max_unacked: int,
        close_timeout: float = math.inf,
    ) -> None:
        self._close_timeout = close_timeout
        self._conn = conn
        self._sender = sender
        self._nursery = nursery
        self._window = window
        self._high_water = receive_buffer
        self._max_unacked = max_unacked
        self._send_busy = False
        self._recv_busy = False
        self._in_flight = 0
        self._space = trio.Event()  # set when in_flight drops or the stream closes/breaks
        self._last_started = trio.Event()
        self._last_started.set()
        self._drained = trio.Event()
        self._drained.set()
        self._closed = False  # by us
        self._peer_closed = False
        self._broken: BaseException | None = None
        self._buffer = bytearray()
        self._unacked: deque[tuple[int, trio.Event]] = deque()
        self._unacked_bytes = 0
        self._readable = trio.Event()
        self._close_done = trio.Event()
        self._close_started = False

    @property
    def sid(self) -> str:
        """The IBB session id."""
        return self._conn.sid

    @property
    def block_size(self) -> int:
        """The block size in use."""
        return self._conn.block_size

    # -- sending ---------------------------------------------------------------------------

    def _check_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("IBB stream was closed")
        if self._broken is not None:
            raise trio.BrokenResourceError("IBB stream is broken") from self._broken
        if self._peer_closed:
            raise trio.BrokenResourceError("peer closed the IBB stream")

    def _wake_senders(self) -> None:
        self._space.set()

    async def _send_payload(
        self, payload: _Element, previous: trio.Event, mine: trio.Event
    ) -> None:
        try:
            await previous.wait()
            if self._broken is None and not self._peer_closed:
                # The next block's task runs only once send_iq yields, by which time the
                # IQSender contract has fixed this stanza's place on the wire.
                mine.set()
                await self._sender.send_iq(payload)
        except (JetError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if self._broken is None:
                self._broken = exc
            self._readable.set()
        finally:
            mine.set()
            self._in_flight -= 1
            if self._in_flight == 0:
                self._drained.set()
            self._wake_senders()

    async def _wait_window(self) -> None:
        while True:
            self._check_send()
            # Before the peer's <open> arrives (responder side) there is nothing to send on.
            if self._conn.state is State.OPEN and self._in_flight < self._window:
                return
            self._space = trio.Event()
            await self._space.wait()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` as blocks, waiting while ``window`` blocks are unacknowledged.

        On the side that did not initiate, this also waits for the peer's ``<open>``.
        """
        if self._send_busy:
            raise trio.BusyResourceError("another task is already sending on this IBB stream")
        self._send_busy = True
        try:
            await trio.lowlevel.checkpoint()
            self._check_send()
            view = memoryview(data).cast("B")
            step = self._conn.block_size
            for start in range(0, len(view), step):
                await self._wait_window()
                payload = self._conn.send_data(view[start : start + step])
                if self._in_flight == 0:
                    self._drained = trio.Event()
                self._in_flight += 1
                previous, mine = self._last_started, trio.Event()
                self._last_started = mine
                self._nursery.start_soon(self._send_payload, payload, previous, mine)
        finally:
            self._send_busy = False

    async def wait_send_all_might_not_block(self) -> None:
        """Return when a block could be sent without waiting for the window."""
        if self._send_busy:
            raise trio.BusyResourceError("another task is already sending on this IBB stream")
        self._send_busy = True
        try:
            await trio.lowlevel.checkpoint()
            await self._wait_window()
        finally:
            self._send_busy = False

    # -- receiving -------------------------------------------------------------------------

    def feed(self, payload: _Element) -> trio.Event:
        """Process an incoming iq payload for this sid; call in stanza order, without awaiting.

        Raises :class:`IBBError`: answer the iq with its condition.  Otherwise returns an event:
        answer the iq with a result once it is set.  It is set at once unless the application is
        behind on reading; the delayed answer throttles the peer's window.
        """
        ack = trio.Event()
        was_closed = self._conn.state is State.CLOSED
        try:
            event = self._conn.receive(payload)
        except IBBError as exc:
            if not was_closed and self._conn.state is State.CLOSED:
                self._mark_broken(exc)
            raise
        if isinstance(event, DataReceived):
            if len(self._unacked) >= self._max_unacked:
                err = IBBError("peer ignores IBB flow control", "resource-constraint", "wait")
                self._conn.state = State.CLOSED
                self._mark_broken(err)
                raise err
            if self._closed:
                ack.set()  # we no longer read; discard
                return ack
            self._buffer += event.data
            self._unacked.append((len(event.data), ack))
            self._unacked_bytes += len(event.data)
            self._release_acks()
        elif isinstance(event, Closed):
            self._peer_closed = True
            self._wake_senders()
            ack.set()
        else:
            self._wake_senders()  # Opened: senders waiting for the <open> may go
            ack.set()
        self._readable.set()
        return ack

    def _release_acks(self) -> None:
        while self._unacked:
            acked_unread = len(self._buffer) - self._unacked_bytes
            size, ack = self._unacked[0]
            if acked_unread > 0 and acked_unread + size > self._high_water:
                return
            self._unacked.popleft()
            self._unacked_bytes -= size
            ack.set()

    def _mark_broken(self, exc: BaseException) -> None:
        if self._broken is None:
            self._broken = exc
        self._readable.set()
        self._wake_senders()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return buffered data, b"" after the peer's ``<close>``."""
        if max_bytes is not None:
            if not isinstance(max_bytes, int):
                raise TypeError("max_bytes must be an int")
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._recv_busy:
            raise trio.BusyResourceError("another task is already receiving on this IBB stream")
        self._recv_busy = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("IBB stream was closed")
                if self._buffer:
                    buf = self._buffer
                    if max_bytes is None or max_bytes >= len(buf):
                        out = bytes(buf)  # one copy (slicing first would make two)
                        buf.clear()
                    else:
                        with memoryview(buf) as view:
                            out = bytes(view[:max_bytes])
                        del buf[:max_bytes]
                    self._release_acks()
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return out
                if self._broken is not None:
                    raise trio.BrokenResourceError("IBB stream is broken") from self._broken
                if self._peer_closed:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return b""
                self._readable = trio.Event()
                await self._readable.wait()
        finally:
            self._recv_busy = False

    # -- closing ---------------------------------------------------------------------------

    async def _send_close(self) -> None:
        # Bounded: a peer that never acknowledges the last blocks or never answers <close>
        # must not hold the stream (and whoever closes it) for ever.
        with trio.move_on_after(self._close_timeout):
            try:
                if self._in_flight:
                    await self._drained.wait()
                if (
                    self._conn.state is State.OPEN
                    and not self._peer_closed
                    and self._broken is None
                ):
                    await self._sender.send_iq(self._conn.send_close())
            except (JetError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the peer may already have given up; we are closed either way
            finally:
                self._close_done.set()

    def _close_locally(self) -> None:
        self._closed = True
        self._readable.set()
        self._wake_senders()
        for _, ack in self._unacked:
            ack.set()
        self._unacked.clear()
        self._buffer.clear()

    async def aclose(self) -> None:
        """Close the bytestream: flush the window, send ``<close>``, wait for its answer (at
        most ``close_timeout`` seconds for both together).

        If cancelled, the stream is closed anyway and ``<close>`` still goes out from the
        stream's nursery.
        """
        if not self._closed:
            self._close_locally()
            if not self._close_started:
                self._close_started = True
                self._nursery.start_soon(self._send_close)
        await self._close_done.wait()
        # aclose must checkpoint even when already closed
        await trio.lowlevel.checkpoint()

    async def open(self) -> None:
        """Send ``<open>`` and wait for its answer (initiating side only).

        Raises :class:`IBBStateError` if already open, or what the :class:`IQSender` raises when
        the peer refuses (e.g. ``resource-constraint`` for a block size it finds too large).
        """
        if self._closed:
            raise trio.ClosedResourceError("IBB stream was closed")
        payload = self._conn.send_open()
        try:
            await self._sender.send_iq(payload)
        except BaseException as exc:
            self._mark_broken(exc)
            raise
        self._wake_senders()

    def abort(self) -> None:
        """Close locally without sending ``<close>`` (the Jingle session is being terminated)."""
        self._close_started = True
        self._close_done.set()
        self._close_locally()


@asynccontextmanager
async def open_ibb_stream(
    sender: IQSender,
    sid: str,
    block_size: int = DEFAULT_BLOCK_SIZE,
    *,
    window: int = 8,
    receive_buffer: int = 256 * 1024,
    max_unacked: int = 64,
    initial_seq: int = 0,
    close_timeout: float = math.inf,
) -> AsyncIterator[IBBStream]:
    """Create an IBB stream for ``sid`` within a nursery.

    Register the stream for incoming payloads first (the peer may send as soon as it has answered
    our ``<open>``), then the initiating side calls :meth:`IBBStream.open`; the other side
    gets the peer's ``<open>`` through :meth:`IBBStream.feed`.  At most
    ``window`` data iqs are in flight; received data beyond ``receive_buffer`` bytes delays
    acknowledgements; a peer with more than ``max_unacked`` unacknowledged blocks is cut off.
    On a normal exit the stream is closed gracefully (waiting at most ``close_timeout`` seconds
    for the peer to acknowledge the last blocks and the ``<close>``), on an exception it is
    aborted.
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    conn = IBBConnection(sid, block_size, initial_seq=initial_seq)
    with unwrapped_errors():
        async with trio.open_nursery() as nursery:
            stream = IBBStream(
                conn,
                sender,
                nursery,
                window=window,
                receive_buffer=receive_buffer,
                max_unacked=max_unacked,
                close_timeout=close_timeout,
            )
            try:
                yield stream
                await stream.aclose()
                # Blocks the peer never acknowledged within close_timeout: given up.
                nursery.cancel_scope.cancel()
            except BaseException:
                stream.abort()
                nursery.cancel_scope.cancel()
                raise
