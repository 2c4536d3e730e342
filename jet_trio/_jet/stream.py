"""JET transport encryption: a sans-IO core and trio stream wrappers around it.

The bytes on the transport are ``ciphertext ‖ tag``: for AES-GCM exactly
``AESGCM(key).encrypt(iv, plaintext, None)``, as every deployed client sends them.

* :class:`StreamSealer` / :class:`EncryptingSendStream` encrypt; the tag is only produced by an
  explicit ``finish()``. Closing without ``finish()`` sends no tag, so a sender that stops
  half-way (an error, a cancellation) never makes a truncated file look complete.
* :class:`StreamOpener` / :class:`DecryptingReceiveStream` decrypt; the stream returns ``b""``
  (end of file) only once the tag has been verified. The plaintext returned before that is
  *unverified*: write it somewhere temporary and use it only after reading ``b""``.

The streams follow :class:`trio.SSLStream`: :class:`trio.BusyResourceError` on concurrent use,
:class:`trio.ClosedResourceError` after ``aclose()``, :class:`trio.BrokenResourceError` after a
failure left the stream unusable.
"""

from __future__ import annotations

import errno
import operator
import os
import socket
import sys
from collections.abc import Callable
from typing import Final, TypeVar

try:
    import fcntl
except ImportError:  # not on Windows: no batching there
    fcntl = None  # type: ignore[assignment]

import trio

from .._errors import LocalProtocolError, SecurityError
from .cipher import (
    PlaintextLimitExceeded,
    StreamDecryptor,
    StreamEncryptor,
    TagMismatch,
    TransportSecret,
    decrypt_into,
)

__all__ = [
    "DecryptingReceiveStream",
    "EncryptingSendStream",
    "SizeMismatch",
    "StreamOpener",
    "StreamSealer",
    "TruncatedStream",
    "UnexpectedTrailingData",
]

# Chunk handed to the cipher when a caller sends one huge buffer: bounds the extra memory.
_SEND_CHUNK = 1 << 20

# Receiving from a TCP socket (S5B): wait until this many bytes are queued (SO_RCVLOWAT) before
# waking up, at most _BATCH_WAIT seconds, then read all that is there at once. A proxy passes the
# stream on in pieces of 4-100 KiB; one wake-up, read and decryption per batch instead of per
# piece is what makes the receiver's cost per byte small. _RECEIVE_SIZE is the batch when the
# caller gives no max_bytes. A proxy relays at 100-600 MB/s here: 2 ms and 256 KiB batches
# cost the receiver 0.15-0.5 s/GiB more than 8 ms and 1 MiB (bench/README.md); 8 ms is still
# far below anything a person or a stall guard notices.
_BATCH_MIN = 16 * 1024
_BATCH_MAX = 1024 * 1024
_BATCH_WAIT = 0.008
_RECEIVE_SIZE = 256 * 1024
SLACK: Final = 15
"""Bytes of room a buffer needs after the data asked for (:class:`IntoReader`): what a
decryptor may write after the plaintext (``update_into``: a cipher block)."""
_BATCHING = (
    sys.platform == "linux"
    and hasattr(socket, "SO_RCVLOWAT")
    and hasattr(os, "readv")
    and fcntl is not None
)
_Wire = bytes | bytearray | memoryview  # what a transport gives
_T = TypeVar("_T", bytes, int)


class TruncatedStream(SecurityError, trio.BrokenResourceError):
    """The transport ended before the whole ciphertext and its tag arrived.

    Also a :class:`trio.BrokenResourceError`, like the unexpected EOF of :class:`trio.SSLStream`.
    """


class UnexpectedTrailingData(SecurityError):
    """More bytes arrived after the expected ciphertext and tag."""


class SizeMismatch(LocalProtocolError):
    """The sender was told a size and tried to send more, or to finish with less."""


def _check_size(expected_size: int | None, secret: TransportSecret) -> None:
    if expected_size is None:
        return
    if expected_size < 0:
        raise ValueError("expected_size must be >= 0")
    if expected_size > secret.cipher.max_plaintext_size:
        raise PlaintextLimitExceeded(
            f"{expected_size} bytes is over the limit of {secret.cipher.urn} "
            f"({secret.cipher.max_plaintext_size} bytes per key and IV)"
        )


# -- sans-IO core ---------------------------------------------------------------------------------


class StreamSealer:
    """Sans-IO encryption of one transfer: :meth:`encrypt` the data, then :meth:`finish`.

    ``expected_size`` is the plaintext size announced to the peer, if any: encrypting more, or
    finishing with less, raises :class:`SizeMismatch`. Any error leaves the sealer unusable.
    """

    def __init__(self, secret: TransportSecret, *, expected_size: int | None = None) -> None:
        _check_size(expected_size, secret)
        self._enc: StreamEncryptor = secret.encryptor()
        self._expected = expected_size
        self.plaintext_size = 0
        """Plaintext bytes encrypted so far."""
        self.finished = False
        self._failed = False

    def _usable(self) -> None:
        if self._failed:
            raise LocalProtocolError("the sealer failed earlier")
        if self.finished:
            raise LocalProtocolError("the sealer is finished")

    def check_fits(self, n: int) -> None:
        """Raise :class:`SizeMismatch` (and fail) if ``n`` more bytes exceed ``expected_size``."""
        if self._expected is not None and self.plaintext_size + n > self._expected:
            self._failed = True
            raise SizeMismatch(
                f"sending {self.plaintext_size + n} bytes, but {self._expected} were announced"
            )

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Ciphertext for ``data`` (same length)."""
        self._usable()
        n = len(data)
        self.check_fits(n)
        try:
            out = self._enc.update(data)
        except BaseException:
            self._failed = True
            raise
        self.plaintext_size += n
        return out

    def finish(self) -> bytes:
        """The authentication tag, to send after all the ciphertext."""
        self._usable()
        if self._expected is not None and self.plaintext_size != self._expected:
            self._failed = True
            raise SizeMismatch(
                f"finishing after {self.plaintext_size} bytes, but {self._expected} were announced"
            )
        self.finished = True
        return self._enc.finalize()


class StreamOpener:
    """Sans-IO decryption of one transfer: feed :meth:`receive_data`, then :meth:`receive_eof`.

    With ``expected_size`` exactly ``expected_size + tag`` bytes are expected and the tag is
    verified as soon as its last byte arrives (:attr:`verified`); more data raises
    :class:`UnexpectedTrailingData`. Without it, the last ``tag`` bytes are held back until
    :meth:`receive_eof`. Errors: :class:`~jet_trio._jet.cipher.TagMismatch`,
    :class:`TruncatedStream`,
    :class:`UnexpectedTrailingData`; afterwards the opener is unusable.
    """

    def __init__(self, secret: TransportSecret, *, expected_size: int | None = None) -> None:
        _check_size(expected_size, secret)
        self._dec: StreamDecryptor = secret.decryptor()
        self._tag_size = secret.cipher.tag_size
        self.expected_size = expected_size
        self._received = 0  # ciphertext bytes decrypted (known size)
        self._tag = bytearray()  # known size: the tag so far; unknown: the held-back tail
        self.verified = False
        """Whether the tag was verified: all plaintext returned so far is authentic."""
        self._failed = False

    def _fail(self, exc: SecurityError) -> SecurityError:
        self._failed = True
        return exc

    @property
    def bytes_left(self) -> int | None:
        """Transport bytes (ciphertext and tag) still expected, or ``None`` without a known size."""
        if self.expected_size is None:
            return None
        return self.expected_size + self._tag_size - self._received - len(self._tag)

    def receive_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """Plaintext (not yet authenticated) for the bytes received; may be empty."""
        if self._failed:
            raise LocalProtocolError("the opener failed earlier")
        if not data:
            return b""
        if self.expected_size is None:
            return self._feed_unknown(data)
        return self._feed_known(data, self.expected_size)

    def receive_data_into(self, data: bytes | bytearray | memoryview, out: memoryview) -> int:
        """Like :meth:`receive_data`, with the plaintext written into ``out`` (its length is
        returned). ``out`` holds at least ``len(data) + 15`` bytes and does not overlap ``data``
        (cryptography 51 and later refuse to decrypt in place)."""
        if self._failed:
            raise LocalProtocolError("the opener failed earlier")
        if not data:
            return 0
        if self.expected_size is None:
            plain = self._feed_unknown(data)  # (held-back bytes shift it: not in place)
            out[: len(plain)] = plain
            return len(plain)
        return self._feed_known_into(data, self.expected_size, out)

    def receive_eof(self) -> None:
        """The transport ended: verify the tag if not yet done, or report the truncation."""
        if self._failed:
            raise LocalProtocolError("the opener failed earlier")
        if self.verified:
            return
        if self.expected_size is not None:
            got = self._received + len(self._tag)
            total = self.expected_size + self._tag_size
            raise self._fail(
                TruncatedStream(
                    f"the transport ended {total - got} bytes early (got {got} of {total})"
                )
            )
        if len(self._tag) < self._tag_size:
            raise self._fail(
                TruncatedStream(
                    f"the transport ended after {len(self._tag)} bytes, "
                    f"before a complete {self._tag_size}-byte tag"
                )
            )
        self._verify()

    def _take_known(self, data: bytes | bytearray | memoryview, size: int) -> memoryview:
        """The ciphertext in ``data``; the tag bytes after it are kept (checked, not verified)."""
        if self.verified:
            raise self._fail(
                UnexpectedTrailingData(f"more than {size + self._tag_size} bytes arrived")
            )
        view = memoryview(data)
        n_ct = min(len(view), size - self._received)
        rest = view[n_ct:]
        if rest:
            # The tag bytes are taken (and the length checked) before anything is decrypted.
            if len(rest) > self._tag_size - len(self._tag):
                raise self._fail(
                    UnexpectedTrailingData(f"more than {size + self._tag_size} bytes arrived")
                )
            self._tag += rest
        return view[:n_ct]

    def _feed_known(self, data: bytes | bytearray | memoryview, size: int) -> bytes:
        ct = self._take_known(data, size)
        out = self._dec.update(ct) if ct else b""
        self._received += len(ct)
        if len(self._tag) == self._tag_size:
            self._verify()
        return out

    def _feed_known_into(
        self, data: bytes | bytearray | memoryview, size: int, out: memoryview
    ) -> int:
        ct = self._take_known(data, size)
        n = decrypt_into(self._dec, ct, out) if ct else 0
        self._received += len(ct)
        if len(self._tag) == self._tag_size:
            self._verify()
        return n

    def _feed_unknown(self, data: bytes | bytearray | memoryview) -> bytes:
        tag_size = self._tag_size
        held = self._tag
        if len(held) + len(data) <= tag_size:
            held += data
            return b""
        view = memoryview(data)
        if len(view) >= tag_size:
            # Release everything held, keep the new tail.
            out = self._dec.update(held) if held else b""
            out += self._dec.update(view[: len(view) - tag_size])
            self._tag = bytearray(view[len(view) - tag_size :])
            return out
        # Fewer new bytes than a tag: release the oldest held bytes only.
        release = len(held) + len(view) - tag_size
        out = self._dec.update(held[:release])
        del held[:release]
        held += view
        return out

    def _verify(self) -> None:
        try:
            self._dec.finalize(bytes(self._tag))
        except TagMismatch as exc:
            raise self._fail(exc) from None
        self.verified = True


# -- trio shells ----------------------------------------------------------------------------------


def _as_cause(exc: BaseException) -> BaseException:
    if isinstance(exc, Exception):
        return exc
    # Cancelled part-way: some of the ciphertext may be on the wire, the rest is lost.
    return trio.BrokenResourceError("an earlier send was cancelled part-way")


class _Busy:
    """Conflict detection like trio's own: a second concurrent call raises BusyResourceError."""

    __slots__ = ("_held", "_msg")

    def __init__(self, msg: str) -> None:
        self._msg = msg
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(self._msg)
        self._held = True

    def __exit__(self, *exc: object) -> None:
        self._held = False


def _queued(sock: trio.socket.SocketType) -> int:
    """Bytes waiting in a socket's receive queue (Linux: FIONREAD, i.e. SIOCINQ)."""
    global _FIONREAD
    if _FIONREAD is None:
        import termios  # once data flows, not at start-up

        _FIONREAD = termios.FIONREAD
    return int.from_bytes(fcntl.ioctl(sock.fileno(), _FIONREAD, _FOUR_BYTES), sys.byteorder)


_FOUR_BYTES = bytes(4)
_FIONREAD: int | None = None


class _BatchReader:
    """Reads a :class:`trio.SocketStream` in batches, straight into the caller's buffer.

    ``SO_RCVLOWAT`` makes the kernel wake the task only once ``lowat`` bytes are queued (or the
    peer closed, or an error); a wait bounded by ``_BATCH_WAIT`` keeps a slow or pausing sender,
    and the end of a stream, from waiting for a batch that does not come: after it, whatever is
    there is read, and with nothing there the wait goes on for a single byte. The batch follows
    the stream's rate: it doubles (up to ``_BATCH_MAX``) while the kernel wakes the task before
    the bound, and becomes about what one bounded wait brought when it does not, so the task is
    woken by data rather than by the clock. ``lowat`` stays at or below a quarter of the
    socket's receive buffer, so the kernel never has to clamp the window to make room for it
    (a clamped window would stall the sender at every batch).
    """

    __slots__ = ("_lowat", "_rcvbuf", "_rcvbuf_check", "_sock", "_target")

    def __init__(self, stream: trio.SocketStream) -> None:
        self._sock = stream.socket
        self._lowat = 1
        self._target = _BATCH_MIN
        self._rcvbuf = 0
        self._rcvbuf_check = 0

    def _set_lowat(self, n: int) -> None:
        if n != self._lowat:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, n)
            self._lowat = n

    def _batch_size(self, space: int, left: int | None) -> int:
        if self._rcvbuf_check <= 0:
            # The kernel grows the buffer as the connection speeds up: look again now and then.
            self._rcvbuf_check = 32
            self._rcvbuf = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self._rcvbuf_check -= 1
        n = min(space, self._target, self._rcvbuf // 4)
        if left is not None:
            n = min(n, left)
        return max(n, 1)

    def _read(self, view: memoryview) -> int | None:
        try:
            return os.readv(self._sock.fileno(), [view])
        except BlockingIOError:
            return None

    async def receive_into(self, view: memoryview, left: int | None, *, eager: bool = False) -> int:
        """Read at least one byte into ``view`` (0: end of file), waiting for a batch.

        With ``eager``, a batch already queued is read at once and returned without a
        schedule point (the caller's loop has its own): no wake-up, no wait, no trip through
        the event loop when the stream is faster than its reader."""
        sock = self._sock
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            if sock.fileno() == -1:
                raise trio.ClosedResourceError("the socket was closed")
            lowat = self._batch_size(len(view), left)
            if eager and _queued(sock) >= lowat:
                n = self._read(view)
                if n:
                    if lowat == self._target:
                        self._target = min(2 * lowat, _BATCH_MAX)
                    return n
            self._set_lowat(lowat)
            with trio.move_on_after(_BATCH_WAIT) as waited:
                await trio.lowlevel.wait_readable(sock)
            n = self._read(view)
            if n is None:
                self._rcvbuf_check = 0
                self._set_lowat(1)
                while n is None:
                    await trio.lowlevel.wait_readable(sock)
                    n = self._read(view)
            elif not eager:
                await trio.lowlevel.cancel_shielded_checkpoint()
            # (eager: the wait above was the schedule point)
            if not waited.cancelled_caught:
                if lowat == self._target:
                    self._target = min(2 * lowat, _BATCH_MAX)
            elif n:
                self._target = max(_BATCH_MIN, n * 3 // 4)
            return n
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise trio.ClosedResourceError("the socket was closed") from None
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc


class EncryptingSendStream(trio.abc.SendStream):
    """Encrypts everything sent through it onto ``transport``; call :meth:`finish` to send the tag.

    ``expected_size``, if given, is the plaintext size announced to the peer: sending more raises
    :class:`SizeMismatch`, and so does :meth:`finish` after sending less. The GCM limit per
    (key, IV) raises :class:`~jet_trio._jet.cipher.PlaintextLimitExceeded`. After any error (or a
    cancelled :meth:`send_all`, which may have sent part of the data) the stream is broken.
    """

    def __init__(
        self,
        transport: trio.abc.SendStream,
        secret: TransportSecret,
        *,
        expected_size: int | None = None,
    ) -> None:
        self.transport = transport
        self._sealer = StreamSealer(secret, expected_size=expected_size)
        self._busy = _Busy("another task is using this EncryptingSendStream")
        self._closed = False
        self._finished = False
        self._broken: BaseException | None = None

    @property
    def plaintext_sent(self) -> int:
        """Plaintext bytes encrypted and handed to the transport so far."""
        return self._sealer.plaintext_size

    @property
    def finished(self) -> bool:
        """Whether :meth:`finish` completed (the tag was sent)."""
        return self._finished

    def _check_usable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the EncryptingSendStream is closed")
        if self._broken is not None:
            raise trio.BrokenResourceError("an earlier error broke this stream") from self._broken
        if self._sealer.finished:
            raise trio.ClosedResourceError("finish() was called: nothing more can be sent")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it."""
        with self._busy:
            self._check_usable()
            view = memoryview(data).cast("B")
            try:
                self._sealer.check_fits(len(view))  # before sending any part of it
                if not view:
                    await self.transport.send_all(b"")
                for start in range(0, len(view), _SEND_CHUNK):
                    await self.transport.send_all(
                        self._sealer.encrypt(view[start : start + _SEND_CHUNK])
                    )
            except BaseException as exc:
                self._broken = _as_cause(exc)
                raise

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the transport might accept data without blocking."""
        with self._busy:
            self._check_usable()
            await self.transport.wait_send_all_might_not_block()

    async def finish(self) -> None:
        """Send the authentication tag: the peer can now verify everything that was sent.

        Does not close the transport. Raises :class:`SizeMismatch` if fewer bytes than
        ``expected_size`` were sent (nothing is sent then and the stream is broken).
        """
        with self._busy:
            self._check_usable()
            try:
                await self.transport.send_all(self._sealer.finish())
            except BaseException as exc:
                self._broken = _as_cause(exc)
                raise
            self._finished = True

    async def aclose(self) -> None:
        """Close the transport. Without a completed :meth:`finish` no tag is sent."""
        self._closed = True
        await self.transport.aclose()


class DecryptingReceiveStream(trio.abc.ReceiveStream):
    """Decrypts ``transport``; returns ``b""`` only after the tag was verified.

    With ``expected_size`` (the announced plaintext size) the stream reads exactly
    ``expected_size + tag`` bytes. Without it, the transport's end of file marks the end and the
    last ``tag`` bytes are held back. Errors: :class:`~jet_trio._jet.cipher.TagMismatch`,
    :class:`TruncatedStream`, :class:`UnexpectedTrailingData`, then the stream is broken.

    ``require_eof`` (with ``expected_size`` only): after the tag, also wait for the transport's
    end of file and refuse any extra byte. With ``require_eof=False`` extra bytes are detected
    only when they arrive together with the tag; use it for peers that keep the transport open.

    ``on_wire``, if given, is called with every piece of transport bytes (ciphertext and tag) as
    it is received, before it is decrypted: for a hash of the bytes on the wire, as some peers
    announce it. It is called synchronously and must not keep the object it gets (a view of a
    buffer that is reused). Unlike a wrapper around ``transport``, it keeps the batched reads
    of a socket transport.
    """

    def __init__(
        self,
        transport: trio.abc.ReceiveStream,
        secret: TransportSecret,
        *,
        expected_size: int | None = None,
        require_eof: bool = True,
        on_wire: Callable[[bytes | bytearray | memoryview], object] | None = None,
    ) -> None:
        self.transport = transport
        self._opener = StreamOpener(secret, expected_size=expected_size)
        self._require_eof = require_eof
        self._on_wire = on_wire
        self._busy = _Busy("another task is using this DecryptingReceiveStream")
        self._closed = False
        self._eof_seen = False
        self._broken: BaseException | None = None
        self._batch = (
            _BatchReader(transport)
            if _BATCHING and isinstance(transport, trio.SocketStream)
            else None
        )
        self._buffer = bytearray()

    @property
    def verified(self) -> bool:
        """Whether the tag was verified: all returned plaintext is authentic."""
        return self._opener.verified

    def _done(self) -> bool:
        return self._opener.verified and (self._eof_seen or not self._require_eof)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Up to ``max_bytes`` bytes of (not yet verified) plaintext; ``b""`` once verified."""
        with self._busy:
            if max_bytes is not None:
                max_bytes = operator.index(max_bytes)
                if max_bytes < 1:
                    raise ValueError("max_bytes must be >= 1")
            self._check_open()
            if self._done():
                await trio.lowlevel.checkpoint()
                return b""
            while True:
                data: bytes | bytearray | memoryview
                if self._batch is None:
                    data = await self.transport.receive_some(max_bytes)
                else:
                    data = await self._receive_batch(max_bytes or _RECEIVE_SIZE)
                out = self._open(data, self._opener.receive_data, b"")
                if out or self._done():
                    return out

    async def receive_into(self, buffer: memoryview, max_bytes: int | None = None) -> int:
        """Like :meth:`receive_some`, but the (not yet verified) plaintext is written into
        ``buffer`` and its length returned (0 once verified, as ``b""``). At most
        ``max_bytes`` are read (default: ``len(buffer) - 15``); ``buffer`` has at least
        ``max_bytes + 15`` bytes. Over a socket the ciphertext is read into one buffer kept
        for the stream and decrypted from there into ``buffer``: no new buffer per read, and a
        batch already waiting there is returned without a schedule point (cancellation is
        still checked first): call it in a loop that has schedule points of its own, such as
        the file-transfer driver's."""
        with self._busy:
            view = memoryview(buffer).cast("B")
            if view.readonly:
                raise TypeError("receive_into needs a writable buffer")
            limit = len(view) - SLACK if max_bytes is None else operator.index(max_bytes)
            if limit < 1 or limit + SLACK > len(view):
                raise ValueError(
                    f"max_bytes must be >= 1, with {SLACK} bytes of room after it in the buffer"
                )
            self._check_open()
            if self._done():
                await trio.lowlevel.checkpoint()
                return 0
            while True:
                data: bytes | bytearray | memoryview
                if self._batch is None:
                    data = await self.transport.receive_some(limit)
                else:
                    # Into the stream's own buffer, decrypted from there into the caller's:
                    # cryptography (51 and later) refuses to decrypt in place.
                    data = await self._receive_batch(limit, eager=True)
                got = self._open(data, lambda d: self._opener.receive_data_into(d, view), 0)
                if got or self._done():
                    return got

    def _open(self, data: _Wire, feed: Callable[[_Wire], _T], at_eof: _T) -> _T:
        """Hand ``data`` read from the transport to the opener through ``feed`` (its plaintext),
        or the end of the stream if ``data`` is empty (``at_eof``); any error breaks the
        stream for good."""
        try:
            if data:
                if self._on_wire is not None:
                    self._on_wire(data)
                return feed(data)
            self._eof_seen = True
            self._opener.receive_eof()
            return at_eof
        except Exception as exc:  # a security error, or one from on_wire
            self._broken = exc
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the DecryptingReceiveStream is closed")
        if self._broken is not None:
            raise trio.BrokenResourceError("an earlier error broke this stream") from (self._broken)

    async def _receive_batch(self, size: int, *, eager: bool = False) -> memoryview:
        # One buffer for the life of the stream: the ciphertext is read into it and decrypted
        # out of it, so nothing returned to the caller refers to it.
        assert self._batch is not None
        if len(self._buffer) < size:
            self._buffer = bytearray(size)
        view = memoryview(self._buffer)[:size]
        n = await self._batch.receive_into(view, self._opener.bytes_left, eager=eager)
        return view[:n]

    async def aclose(self) -> None:
        """Close the transport. Does not verify anything: check :attr:`verified` or read ``b""``."""
        self._closed = True
        await self.transport.aclose()


class IntoReader:
    """Reads a receive stream into the caller's buffers (the receiving file-transfer loop).

    A :class:`DecryptingReceiveStream` decrypts into them (:meth:`~DecryptingReceiveStream.
    receive_into`); a plain :class:`trio.SocketStream` is read in batches straight into the
    buffer, as the decrypting stream reads its socket; any other stream is read with
    ``receive_some`` and copied. Every buffer given must have :data:`SLACK` bytes of room after
    the ``max_bytes`` asked for.
    """

    __slots__ = ("_batch", "_decrypting", "_stream")

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._decrypting = stream if isinstance(stream, DecryptingReceiveStream) else None
        self._batch = (
            _BatchReader(stream)
            if self._decrypting is None and _BATCHING and isinstance(stream, trio.SocketStream)
            else None
        )

    async def receive_into(self, view: memoryview, max_bytes: int) -> int:
        """Read at least one byte, at most ``max_bytes``, into ``view`` (0: end of stream)."""
        if self._decrypting is not None:
            return await self._decrypting.receive_into(view, max_bytes)
        if self._batch is not None:
            return await self._batch.receive_into(view[:max_bytes], None, eager=True)
        data = await self._stream.receive_some(max_bytes)
        view[: len(data)] = data
        return len(data)
