"""The trio driver of file-transfer sessions: the shell of one session (its machine, the
wake-up of the tasks waiting for the peer, the I/O of its Jingle messages) and the data pump
(the file read and written in worker threads, hashing, encryption, the stall guards).

The protocol decisions are made by the sans-IO machine in :mod:`.session`; the facade in
:mod:`.service` routes messages and runs the commands that set up transports.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import queue
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, Literal

import trio

from .._errors import JetError, SecurityError
from .._jet.cipher import TransportSecret
from .._jet.stream import SLACK, DecryptingReceiveStream, EncryptingSendStream, IntoReader
from .._jingle.machine import JingleSession, SessionState
from .._jingle.message import JingleAction, JingleMessage, Reason, build_jingle, parse_error
from .._trio_util import unwrapped_errors
from .._xmpp.client import Client
from .._xmpp.jid import JID
from .._xmpp.stanza import StanzaError, make_iq
from .description import FileDescription
from .files import FileKey, Partial, open_part
from .hashes import Hash, Hasher, HashWorker
from .reasons import condition as reason_condition
from .reasons import error_for, leaves
from .session import FileSession, Step
from .types import (
    EncryptionFailed,
    IntegrityError,
    ProgressCallback,
    TagTimeout,
    TransferCancelled,
    TransferError,
    TransferTimeout,
    TransportFailed,
    TransportName,
)

if TYPE_CHECKING:
    from .._transports.webrtc import WebRTCSession

log = logging.getLogger("jet_trio.transfer")

CHUNK: Final = 256 * 1024
#: A receiver whose stream through a SOCKS5 proxy stalls this long with at most
#: ``_HELD_MAX`` bytes left ends the session, which makes a sender like Dino close its
#: connection and a relay like Prosody's pass on what it held back (``_release_held_tail``).
_TAIL_GRACE: Final = 2.0
_HELD_MAX: Final = 8192 + 16  # Prosody 0.12: its socket library's read buffer, and the tag
_THREAD_READ: Final = 4 << 20  # bytes the sender reads per worker-thread call
_STORE_BATCH: Final = 1 << 20  # received bytes handed to the writing thread at once
_STORE_PENDING: Final = 3  # batches handed over and not yet written before the loop waits
#: Unsent bytes the kernel may hold for the sender's S5B stream (``TCP_NOTSENT_LOWAT``): 16
#: chunks, 4 MiB (Linux's default ceiling of a socket's send buffer). trio sets 16 KiB on
#: every SocketStream, which suits a chat stream but makes a bulk sender write at most some
#: 16 KiB beyond what the peer's window takes and wake up whenever fewer than 8 KiB are left
#: unsent: through a SOCKS5 proxy that reads in 4-100 KiB pieces, about three writes and three
#: trips through the event loop per chunk, and a relay that runs dry whenever the sender is a
#: moment late. 1 MiB took most of the sender's gain; 4 MiB also kept Prosody's proxy fed
#: through the encrypting sender's pauses (bench/README.md).
_SEND_QUEUE: Final = 16 * CHUNK


class SessionShell:
    """The trio shell of one session: its :class:`FileSession` machine, the wake-up of the
    tasks waiting for the peer's next message, and the I/O of its Jingle messages."""

    def __init__(self, client: Client, timeout: float, machine: FileSession) -> None:
        self.client = client
        self.timeout = timeout
        self.machine = machine
        self.listening: list[str] = []  # our direct candidates' DST.ADDRs
        #: What this session counts against its peer's quotas until it is forgotten.
        self.quota: Literal["offer", "transfer"] | None = None
        #: What closes the transports the session opens (set by the service's session scope).
        self.cleanup: contextlib.AsyncExitStack | None = None
        self.webrtc: WebRTCSession | None = None  # the data channel's peer connection
        self._arrivals = trio.lowlevel.ParkingLot()

    @property
    def jingle(self) -> JingleSession:
        return self.machine.jingle

    @property
    def peer(self) -> JID:
        return self.machine.peer

    def deliver(self, msg: JingleMessage | None) -> None:
        """A message of the peer for this session (``None``: no more will come)."""
        if msg is None:
            self.machine.close()
        else:
            self.machine.receive(msg)
        self._arrivals.unpark_all()

    async def expect(self, *actions: JingleAction) -> JingleMessage:
        """The next message with one of ``actions`` (see :meth:`FileSession.next_message`)."""
        while (msg := self.machine.next_message(*actions)) is None:
            await self._arrivals.park()
        return msg

    async def wait_arrival(self) -> None:
        """Until the next message of the peer for this session arrives (or none will)."""
        if self.machine.closed:
            raise TransferCancelled("the transfer service closed", "cancel")
        await self._arrivals.park()

    async def wait_checksum(self) -> None:
        """Until the peer's ``<checksum/>`` arrived (raises if the peer ends the session)."""
        while not self.machine.has_checksum:
            if self.jingle.state is SessionState.ENDED and self.machine.ended_by_peer() is None:
                return  # we ended it (a proxy held back the end of the stream): none can come
            if (end := self.machine.ended_by_peer()) is not None:
                if end.condition == "success":
                    return  # nothing comes after the end
                raise error_for(end, str(self.peer))
            if self.machine.closed:
                raise TransferCancelled("the transfer service closed", "cancel")
            await self._arrivals.park()

    async def send(self, msg: JingleMessage) -> None:
        iq = make_iq("set", build_jingle(msg), to=self.peer)
        try:
            with _within(self.timeout, f"{self.peer} did not answer our {msg.action}"):
                await self.client.iq(iq)
        except StanzaError as exc:
            if exc.element is not None:
                self.jingle.receive_error(msg, parse_error(exc.element))
            raise TransferError(
                f"{self.peer} refused our {msg.action}: {exc}", "general-error"
            ) from None

    def reporter(self, progress: ProgressCallback | None) -> ProgressCallback | None:
        """``progress``, called only as the machine's :class:`ReportProgress` commands say
        (:meth:`FileSession.data_moved`): the data pump counts, the machine decides."""
        if progress is None:
            return None
        machine = self.machine

        def report(done: int, total: int) -> None:
            command = machine.data_moved(done, total)
            if command is not None:
                progress(command.done, command.total)

        return report

    async def watch(self) -> None:
        """Run during data transfer: raises as soon as the peer terminates, unless with
        success (a receiver may finish while our end of the transport is still closing)."""
        self.machine.check_success(await self.expect(JingleAction.SESSION_TERMINATE))

    async def terminate(self, condition: str, text: str | None = None) -> None:
        """Send session-terminate (best effort, bounded, even when cancelled)."""
        await self.terminate_with(Reason(reason_condition(condition), text))

    async def terminate_with(self, reason: Reason) -> None:
        """Send session-terminate with ``reason`` (best effort, bounded, even when cancelled)."""
        try:
            msg = self.machine.terminate(reason)
        except JetError:
            return
        if msg is None:
            return
        with trio.move_on_after(min(3.0, self.timeout), shield=True):
            with contextlib.suppress(JetError):
                await self.client.iq(make_iq("set", build_jingle(msg), to=self.peer))


@dataclass(frozen=True, slots=True)
class Pace:
    """How long data may stall, and how slowly it may move, before a transfer ends."""

    stall_timeout: float | None
    min_throughput: float | None = None
    throughput_window: float = 60.0

    def guard(self, what: str) -> contextlib.AbstractContextManager[_StallWatch]:
        return _stall_guard(self.stall_timeout, what, self.min_throughput, self.throughput_window)


@dataclass(slots=True)
class Established:
    """A transport stream set up for a session, and what closes it."""

    stream: trio.abc.Stream
    transport: TransportName
    cleanup: contextlib.AsyncExitStack
    #: The sender ends with ``send_eof`` (the stream drains first), not ``aclose``.
    half_close: bool = False


async def send_data(
    session: SessionShell,
    established: Established,
    src: Path,
    offset: int,
    length: int,
    secret: TransportSecret | None,
    progress: ProgressCallback | None,
    pace: Pace,
    *,
    hasher: Hasher | None = None,
    unchanged: FileKey | None = None,
) -> int:
    """Send ``length`` bytes of ``src`` from ``offset`` (encrypted if ``secret``).

    ``hasher`` is fed the bytes sent, as they are read (hash while sending: the offer said
    ``<hash-used/>``). With ``unchanged``, the file must be the one described by this key
    (size, modification time, inode) when it is opened and still when its last byte was read,
    or :class:`IntegrityError` is raised before the end of the data (the receiver then
    never gets the tag, or the end of an unencrypted stream, and keeps nothing)."""
    progress = session.reporter(progress)
    sink: trio.abc.SendStream = established.stream
    session.machine.step(Step.DATA)
    enc = EncryptingSendStream(sink, secret, expected_size=length) if secret else None
    if isinstance(established.stream, trio.SocketStream):
        _queue_for_bulk(established.stream)
    done = 0
    stalled = f"{session.peer} accepted no data"
    with (
        _typed_errors(session.peer),
        unwrapped_errors(),
        pace.guard(stalled) as stall,
    ):
        async with trio.open_nursery() as n:
            n.start_soon(session.watch)
            f = await trio.to_thread.run_sync(_open_at, src, offset)
            try:
                _check_unchanged(f, src, unchanged)
                source = _FileSource(f, offset, offset + length)
                async with HashWorker(
                    hasher or Hasher(), threaded=None if hasher is not None else False
                ) as worker:
                    copy = worker.threaded  # the source reuses its buffer: a thread gets a copy
                    while done < length:
                        chunk = await source.read(min(CHUNK, length - done))
                        if not chunk:
                            break
                        if hasher is not None:
                            if copy:
                                await worker.update(bytes(chunk))
                            else:  # inline; send_all below is the schedule point
                                hasher.update(chunk)
                        await (enc or sink).send_all(chunk)
                        done += len(chunk)
                        stall.moved(len(chunk))
                        if progress:
                            progress(done, length)
                if done == length:
                    _check_unchanged(f, src, unchanged)
            finally:
                f.close()
            if done != length:
                raise IntegrityError(f"{src} changed size while it was sent", "media-error")
            if enc is not None:
                await enc.finish()
            if isinstance(established.stream, trio.SocketStream):
                await established.stream.send_eof()
            elif established.half_close:
                assert isinstance(established.stream, trio.abc.HalfCloseableStream)
                await established.stream.send_eof()
            else:
                await established.stream.aclose()
            session.machine.step(Step.DATA_DONE)
            n.cancel_scope.cancel()
    return length + (secret.cipher.tag_size if secret else 0)


def _queue_for_bulk(stream: trio.SocketStream) -> None:
    """Let the kernel hold up to ``_SEND_QUEUE`` unsent bytes of ``stream`` (a file's data)
    instead of trio's 16 KiB: each write then takes a whole chunk, and the sender is woken
    only once half of that was sent. Nothing changes for what the peer receives, nor for
    how the stall guard sees progress (bytes handed to the kernel). With trio's 16 KiB a
    relay also ran dry whenever the sender was a moment late (Prosody's proxy: a few hundred
    times per 256 MiB, and its garbage collector then ran twice as often; bench/README.md).
    Where the option does not exist (not TCP, not Linux/macOS), the stream stays as it is."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if option is None:  # pragma: no cover - every platform CI runs on has it
        return
    with contextlib.suppress(OSError):  # e.g. a Unix socket: no TCP options
        stream.setsockopt(socket.IPPROTO_TCP, option, _SEND_QUEUE)


def _check_unchanged(f: BinaryIO, src: Path, key: FileKey | None) -> None:
    if key is not None and FileKey.of(os.fstat(f.fileno())) != key:
        raise IntegrityError(
            f"{src} changed while it was sent (its size, modification time or inode is not "
            "what it was when it was offered): the transfer is stopped before the end of the "
            "data, so the receiver keeps nothing",
            "media-error",
        )


async def send_checksum(session: SessionShell, hashes: tuple[Hash, ...]) -> None:
    """Send the ``<checksum/>`` session-info after the data (the offer said ``<hash-used/>``).

    Skipped if the receiver ended the session already (Dino does as soon as it has the data),
    and an error reply is only logged: a receiver that does not know ``<checksum/>`` may
    refuse it, and the data is through; whether the receiver is content is its
    session-terminate's to say."""
    if session.machine.ended_by_peer() is not None:
        return
    msg = session.machine.checksum_info(hashes)
    if msg is None:
        return
    try:
        await session.send(msg)
    except TransferTimeout:
        raise
    except TransferError as exc:
        log.info("%s did not take the checksum: %s", session.peer, exc)


async def receive_into(
    session: SessionShell,
    established: Established,
    partial: Partial,
    offset: int,
    length: int,
    secret: TransportSecret | None,
    progress: ProgressCallback | None,
    file: FileDescription,
    pace: Pace,
    proxy: str | None,
) -> Digests:
    """Receive ``length`` bytes into the partial file at ``offset``; return the hashes of
    the whole file (the kept prefix included)."""
    progress = session.reporter(progress)
    algos = tuple(dict.fromkeys(["sha-256", *(h.algo for h in file.hashes), *file.hash_used]))
    hasher = await trio.to_thread.run_sync(_hash_prefix, partial.part, offset, algos)
    source: trio.abc.ReceiveStream = established.stream
    wire: _HashingReceiveStream | None = None
    if secret is not None and not file.hashes and not file.hash_used and offset == 0:
        # A <checksum> may come without any hash announced: Conversations hashes the bytes on
        # the wire (ciphertext and tag), others the plaintext; we accept either (INTEROP.md).
        # A sender announcing <hash-used/> follows XEP-0234: the hash of the file.
        source = wire = _HashingReceiveStream(source, Hasher(algos))
    if secret is not None:
        source = DecryptingReceiveStream(source, secret, expected_size=length, require_eof=False)
    done = 0
    total = offset + length
    session.machine.step(Step.DATA)
    stalled = f"no data came from {session.peer}"
    tail = _Tail(length, secret.cipher.tag_size if secret else 0)
    with (
        _typed_errors(session.peer),
        unwrapped_errors(),
        _stall_reported(tail, session.peer, proxy, total, pace.stall_timeout),
        pace.guard(stalled) as stall,
    ):
        async with trio.open_nursery() as n:
            n.start_soon(session.watch)
            if proxy is not None:
                n.start_soon(release_held_tail, session, tail, proxy, pace.stall_timeout)
            tail.update(0)
            reader = IntoReader(source)
            hashing = HashWorker(hasher)
            inline = not hashing.threaded
            # A small file gets buffers of its size (with room for the tag and one byte more,
            # to notice a peer sending too much), not of a whole batch.
            batch = min(_STORE_BATCH, length + tail.trailer + 1)
            pool = _BufferPool(batch + SLACK) if inline else None
            with open_part(partial.part, offset) as f:
                # Each batch of up to _STORE_BATCH bytes is read (and decrypted) into one
                # buffer, hashed piece by piece as it comes, and written by the store's thread
                # (file I/O releases the GIL) while the next batch comes. Hashing runs inline
                # on each piece while it is hot in the cache where cores are few, else in the
                # HashWorker's thread per batch (bench/bench_hashing.py). Inline, a written
                # buffer goes back to the pool for a later batch; threaded, the hash thread
                # may still read it, so every batch gets a new one. Whatever happens, the
                # store writes what came before it closes: it is kept for resuming.
                written = None if pool is None else pool.give_back
                async with hashing, _open_store(f, written) as store:
                    buf = _new_buffer(pool, batch)
                    filled = 0
                    try:
                        while secret is not None or done < length:
                            room = batch - filled
                            # Plain: one byte more than left, to notice a peer sending too
                            # much.
                            want = room if secret else min(room, length - done + 1)
                            got = await reader.receive_into(buf[filled:], want)
                            if not got:
                                break
                            if secret is None and done + got > length:
                                raise IntegrityError(
                                    f"more than the {total} bytes announced arrived",
                                    "media-error",
                                )
                            if inline:
                                hasher.update(buf[filled : filled + got])
                            filled += got
                            if filled == batch:
                                full = buf[:filled]
                                if not inline:
                                    await hashing.update(full)
                                buf, filled = _new_buffer(pool, batch), 0
                                await store.put(full)
                            done += got
                            stall.moved(got)
                            tail.update(done)
                            if progress:
                                progress(offset + done, total)
                        if filled:
                            last = buf[:filled]
                            if not inline:
                                await hashing.update(last)
                            filled = 0
                            await store.put(last)
                    except BaseException:
                        if filled:
                            store.unsent(buf[:filled])
                        raise
            n.cancel_scope.cancel()
    if done != length:
        raise TransportFailed(
            f"the stream ended after {offset + done} of {total} bytes", "connectivity-error"
        )
    session.machine.step(Step.DATA_DONE)
    return Digests(_as_dict(hasher), _as_dict(wire.hasher) if wire else {})


async def release_held_tail(
    session: SessionShell, tail: _Tail, proxy: str, stall_timeout: float | None
) -> None:
    """The stream through ``proxy`` stopped with at most ``_HELD_MAX`` bytes (the tag
    among them) left: end the session, so that a sender that keeps its connection open
    until then (Dino) closes it, which makes a proxy that holds back the end of a stream
    (Prosody 0.12) pass it on. The data is still checked (tag, hash) before the file gets
    its name, and read only up to its announced size; see docs/protocol.rst."""
    grace = _TAIL_GRACE
    if stall_timeout is not None:
        grace = min(grace, stall_timeout / 4)
    await tail.near_end.wait()
    seen = -1
    while tail.done != seen:
        seen = tail.done
        await trio.sleep(grace)
    log.info(
        "the stream from %s through the SOCKS5 proxy %s stopped %d bytes before its end "
        "for %g s: ending the session so the proxy passes on the rest",
        session.peer,
        proxy,
        tail.left,
        grace,
    )
    tail.released = True
    await session.terminate(
        "success", "all data sent; the end of the stream held back by the proxy is checked next"
    )


@dataclass(frozen=True, slots=True)
class Digests:
    plain: dict[str, bytes]
    wire: dict[str, bytes]


def _as_dict(hasher: Hasher) -> dict[str, bytes]:
    return {h.algo: h.digest for h in hasher.digests()}


class _HashingReceiveStream(trio.abc.ReceiveStream):
    """Hashes everything received through it."""

    def __init__(self, inner: trio.abc.ReceiveStream, hasher: Hasher) -> None:
        self.inner = inner
        self.hasher = hasher

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        self.hasher.update(data)
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


_Piece = bytes | bytearray | memoryview


class _BufferPool:
    """Buffers of one size for the receive loop's batches, used again once written.

    A buffer comes back (:meth:`give_back`, from the writing thread) only after its batch was
    written, and only batches hashed inline use the pool: so no buffer is filled again while a
    write or a hash still reads it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: deque[bytearray] = deque()  # appended in a thread: deque ops are atomic

    def take(self) -> memoryview:
        try:
            return memoryview(self._free.pop())
        except IndexError:
            return memoryview(bytearray(self.size))

    def give_back(self, piece: _Piece) -> None:
        buffer = piece.obj if isinstance(piece, memoryview) else None
        if isinstance(buffer, bytearray) and len(buffer) == self.size:
            self._free.append(buffer)


def _new_buffer(pool: _BufferPool | None, batch: int) -> memoryview:
    return pool.take() if pool is not None else memoryview(bytearray(batch + SLACK))


class _Store:
    """The writing side of a receive loop: pieces of received bytes are written to the
    partial file, in order, by one thread of its own (file I/O never blocks the event loop),
    opened with :func:`_open_store`.

    Handing a piece over is a queue put, not a trip through :func:`trio.to_thread.run_sync`:
    the event loop is woken by the thread only when the loop waits for room (more than
    ``_STORE_PENDING`` pieces unwritten) and when the thread ends (bench/README.md, "The writing
    thread"). A failed write cancels the loop that is handing pieces over, and the write error
    is what the store raises. When the store closes, for whatever reason, the thread first
    writes everything handed over (and what :meth:`unsent` kept), unless a write failed: so
    everything received is kept for resuming. ``written``, if given, is called in the thread
    with each piece once it is written."""

    def __init__(self, f: BinaryIO, written: Callable[[_Piece], None] | None = None) -> None:
        self._f = f
        self._written = written
        self._queue: queue.SimpleQueue[_Piece | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0  # pieces put and not yet written (or dropped after a failure)
        self._room: trio.Event | None = None  # set (from the thread) once there is room
        self._unsent: _Piece | None = None
        self._error: BaseException | None = None
        self._failed = trio.CancelScope()  # around the loop that puts: cancelled on a failure
        self._ended = trio.Event()
        self._token = trio.lowlevel.current_trio_token()

    async def put(self, piece: _Piece) -> None:
        """Hand ``piece`` over (it must not change until written); a schedule point, and a
        wait while more than ``_STORE_PENDING`` pieces are unwritten."""
        with self._lock:
            self._pending += 1
            room = self._room = trio.Event() if self._pending > _STORE_PENDING else None
        self._queue.put(piece)
        if room is None:
            await trio.lowlevel.checkpoint()
        else:
            await room.wait()

    def unsent(self, piece: _Piece) -> None:
        """``piece`` was received but not put (the loop failed): written when the store closes."""
        if piece:
            self._unsent = piece

    def _run(self) -> None:
        # The thread: write each piece in order; after a failure, only count the rest off.
        try:
            while (piece := self._queue.get()) is not None:
                if self._error is None:
                    try:
                        self._f.write(piece)
                    except BaseException as exc:
                        self._fail(exc)
                    else:
                        if self._written is not None:
                            self._written(piece)
                with self._lock:
                    self._pending -= 1
                    room = self._room if self._pending <= _STORE_PENDING else None
                    if room is not None:
                        self._room = None
                if room is not None:
                    self._token.run_sync_soon(room.set)
        except BaseException as exc:  # not a write's (a ``written`` callback's): stop as well
            if self._error is None:
                self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        self._token.run_sync_soon(self._failed.cancel)

    def _end(self, result: object) -> None:
        # Called in the thread once _run returned.
        self._token.run_sync_soon(self._ended.set)

    async def _close(self) -> None:
        if self._unsent is not None:
            self._queue.put(self._unsent)
            self._unsent = None
        self._queue.put(None)
        with trio.CancelScope(shield=True):  # the thread writes what it holds, then ends
            await self._ended.wait()


@contextlib.asynccontextmanager
async def _open_store(
    f: BinaryIO, written: Callable[[_Piece], None] | None = None
) -> AsyncIterator[_Store]:
    """A :class:`_Store` writing to ``f``, its thread started and, on exit, ended (after
    writing what it was given). Raises the write error if a write failed; an error of the
    body is raised as it is."""
    store = _Store(f, written)
    trio.lowlevel.start_thread_soon(store._run, store._end)
    try:
        with store._failed:
            yield store
    finally:
        await store._close()
    if store._error is not None:
        raise store._error


class _FileSource:
    """The sender's file, read without ever blocking the event loop: what the page cache
    holds is read in place (``preadv`` with ``RWF_NOWAIT``, which fails instead of waiting
    for the disk), anything else in a worker thread. A read in place costs what a plain
    ``read`` costs; a hand-over to a thread costs much more CPU (measured: per 256 KiB chunk,
    twice the CPU of the reads themselves), so a thread reads ``_THREAD_READ`` bytes at once.
    The page cache answers every read of a recently written or read file; a file that is not
    in it is read in threads, 4 MiB at a time; a file system without ``RWF_NOWAIT`` (tmpfs) is
    read in threads only."""

    def __init__(self, f: BinaryIO, offset: int, end: int | None = None) -> None:
        self._fd = f.fileno()
        self._offset = offset
        self._end = end  # where the bytes to send end: no block read beyond it
        self._buffer = bytearray(0)
        self._in_place = hasattr(os, "RWF_NOWAIT") and hasattr(os, "preadv")
        self._read_ahead = memoryview(b"")  # the rest of the last block read in a thread
        self._block = bytearray(0)  # what the thread reads into

    async def read(self, n: int) -> bytes | memoryview:
        """Up to ``n`` bytes, empty at the end; a memoryview is valid until the next read."""
        if self._read_ahead:
            chunk, self._read_ahead = self._read_ahead[:n], self._read_ahead[n:]
            return chunk
        if self._in_place:
            if len(self._buffer) < n:
                self._buffer = bytearray(n)
            view = memoryview(self._buffer)[:n]
            try:
                got = os.preadv(self._fd, [view], self._offset, os.RWF_NOWAIT)
            except BlockingIOError:
                got = -1  # not in the page cache: read it in a thread
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self._in_place = False  # e.g. tmpfs: every read goes to a thread
                got = -1
            if got >= 0:
                self._offset += got
                return view[:got]
        # In a thread: a large block per hand-over, served in chunks of ``n``, into one buffer
        # kept for the whole file (a new 4 MiB bytes per block costs a page fault per 4 KiB).
        # It is filled again only once every chunk of the last block was handed out, and a
        # chunk is valid only until the next read.
        size = max(n, _THREAD_READ)
        if self._end is not None:
            size = max(1, min(size, self._end - self._offset))
        if len(self._block) < size:
            self._block = bytearray(size)
        view = memoryview(self._block)[:size]
        got = await trio.to_thread.run_sync(_pread_into, self._fd, view, self._offset)
        self._offset += got
        block = view[:got]
        chunk, self._read_ahead = block[:n], block[n:]
        return chunk


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset`` (less only at the end of the file)."""
    done = 0
    while done < len(view):
        if hasattr(os, "preadv"):
            got = os.preadv(fd, [view[done:]], offset + done)
        else:  # pragma: no cover - not on Linux
            data = os.pread(fd, len(view) - done, offset + done)
            got = len(data)
            view[done : done + got] = data
        if not got:
            break
        done += got
    return done


def _open_at(src: Path, offset: int) -> BinaryIO:
    f = src.open("rb")
    f.seek(offset)
    return f


@contextlib.contextmanager
def _stall_guard(
    seconds: float | None,
    what: str,
    min_rate: float | None = None,
    window: float = 60.0,
) -> Iterator[_StallWatch]:
    """Cancel the block when no data moved for ``seconds`` (``None``: never), or when less
    than ``min_rate`` bytes per second moved over ``window`` seconds (``None``: no minimum);
    call the yielded watch's :meth:`~_StallWatch.moved` whenever some did. Raises
    :class:`TransferTimeout` saying ``what``."""
    with trio.CancelScope() as scope:
        watch = _StallWatch(seconds, scope, min_rate, window)
        yield watch
    if scope.cancelled_caught:
        if watch.too_slow is not None:
            raise TransferTimeout(
                f"{what} fast enough: {watch.too_slow:.0f} bytes/s over {window:g} s, below "
                f"the minimum of {min_rate:g}",
                "timeout",
            )
        raise TransferTimeout(f"{what} for {seconds:g} s", "timeout")


class _StallWatch:
    def __init__(
        self,
        seconds: float | None,
        scope: trio.CancelScope,
        min_rate: float | None = None,
        window: float = 60.0,
    ) -> None:
        self._seconds = seconds
        self._scope = scope
        self._refreshed = -math.inf
        self._min_rate = min_rate
        self._window = window
        self._window_start = trio.current_time()
        self._window_bytes = 0
        self.too_slow: float | None = None  # the rate that ended the transfer
        self.moved()

    def moved(self, n: int = 0) -> None:
        now = trio.current_time()
        if self._min_rate is not None:
            # Throughput over the last window: a peer dripping a byte just before each
            # stall period would otherwise hold the transfer (and its resources) for ever.
            self._window_bytes += n
            elapsed = now - self._window_start
            if elapsed >= self._window:
                rate = self._window_bytes / elapsed
                if rate < self._min_rate:
                    self.too_slow = rate
                    self._scope.cancel()
                self._window_start, self._window_bytes = now, 0
        # Moving a cancel scope's deadline costs more than the rest of the receive loop's
        # bookkeeping, so it moves at most four times per period: it then fires between
        # 1 and 1.25 periods after the last progress.
        if self._seconds is None:
            return
        if now - self._refreshed >= self._seconds / 4:
            self._refreshed = now
            self._scope.deadline = now + self._seconds * 1.25


@contextlib.contextmanager
def _within_or_never(seconds: float | None, what: str) -> Iterator[None]:
    if seconds is None:
        yield
        return
    with _within(seconds, what):
        yield


class _Tail:
    """How far a receive loop got, for the task that watches the end of the stream."""

    def __init__(self, length: int, trailer: int) -> None:
        self.length = length  # the bytes the loop counts (plaintext)
        self.trailer = trailer  # the bytes after them (the tag)
        self.done = 0
        self.near_end = trio.Event()  # some bytes came, and at most _HELD_MAX are left
        self.released = False  # the session was ended to make the sender close

    def update(self, done: int) -> None:
        self.done = done
        # A relay passes on the first 4 KiB it reads: it can hold back only after some came.
        if done > 0 and self.left <= _HELD_MAX:
            self.near_end.set()

    @property
    def left(self) -> int:
        return self.length - self.done + self.trailer


@contextlib.contextmanager
def _stall_reported(
    tail: _Tail, peer: JID, proxy: str | None, total: int, seconds: float | None
) -> Iterator[None]:
    """Say what was missing when the stall guard fired: :class:`TagTimeout` when the whole
    ciphertext came but its tag did not, and the proxy the stream went through, if any."""
    try:
        yield
    except TransferTimeout as exc:
        if type(exc) is not TransferTimeout:
            raise
        via = ""
        if proxy is not None:
            via = f"; the stream came through the SOCKS5 proxy {proxy}"
            if tail.near_end.is_set():
                via += ", which did not pass on its end"
            if tail.released:
                via += " even after the session was ended"
        if tail.trailer and tail.done == tail.length:
            tag = f"the {tail.trailer}-byte authentication tag that follows them"
            message = f"all {total} bytes of the file came from {peer} but not {tag}"
            if seconds is not None:
                message += f", for {seconds:g} s"
            raise TagTimeout(message + via, proxy) from exc
        if via:
            message = f"{exc}, {tail.left} bytes before the end{via}"
            raise TransferTimeout(message, "timeout") from exc
        raise


@contextlib.contextmanager
def _within(seconds: float, what: str) -> Iterator[None]:
    """Like :func:`trio.fail_after`, raising :class:`TransferTimeout` that says ``what``."""
    with trio.move_on_after(seconds) as scope:
        yield
    if scope.cancelled_caught:
        raise TransferTimeout(f"{what} within {seconds:g} s", "timeout")


@contextlib.contextmanager
def _typed_errors(peer: JID) -> Iterator[None]:
    """Data-phase errors as the API's exceptions: a failed JET check (bad tag, truncated or
    overlong stream) becomes EncryptionFailed, a broken transport TransportFailed. When
    several tasks failed at once, the security failure wins, then a transfer error, then the
    broken transport."""
    try:
        yield
    except BaseException as exc:
        found = [e for e in leaves(exc) if not isinstance(e, trio.Cancelled)]
        security = [
            e for e in found if isinstance(e, SecurityError) and not isinstance(e, TransferError)
        ]
        if security:
            raise EncryptionFailed(
                f"encrypted transfer with {peer} refused: {security[0]}"
            ) from exc
        transfer = [e for e in found if isinstance(e, TransferError)]
        if transfer and transfer[0] is not exc:
            raise transfer[0] from exc
        broken = [
            e for e in found if isinstance(e, (trio.BrokenResourceError, trio.ClosedResourceError))
        ]
        if not transfer and broken:
            raise TransportFailed(
                f"the transport to {peer} broke: {broken[0]}", "connectivity-error"
            ) from exc
        raise


def _hash_prefix(part: Path, length: int, algos: tuple[str, ...]) -> Hasher:
    hasher = Hasher(algos)
    with part.open("rb") as f:
        left = length
        while left > 0:
            chunk = f.read(min(1 << 20, left))
            if not chunk:
                raise TransferError(f"{part} is shorter than the resume offset")
            hasher.update(chunk)
            left -= len(chunk)
    return hasher
