"""Fault injection (issue "Robustness under faults"), each followed by a successful resume.

Every test breaks one transfer in a different way, checks that both sides end with a clear
error (a :class:`~jet_trio.TransferError` subclass, or the cancel scope that caught the
cancellation), that nothing exists under the target name and that no session is left open,
and then completes the file between the same accounts: :meth:`FileTransfer.resume` of the kept
partial from a sender that :meth:`~FileTransfer.share`\\ d the file, or a fresh transfer when
nothing was kept. The completed file is compared byte for byte with the source.

* **Connection reset** (``test_s5b_connection_reset``): a :class:`Middlebox` in front of the
  S5B streamhost (the peer's direct listener, or the proxy) aborts the data connection with a
  TCP RST (``SO_LINGER`` 0, then close) once data moves.
* **Proxy dying after activation** (``test_proxy_dies_after_activation``): every connection to
  the proxy is reset and its port closed; the resume falls back to in-band bytestreams.
* **Cancellation at every stage** (``test_cancel_at_stage``): the sender's or the receiver's
  cancel scope is cancelled when the offer arrives, after session-accept, during S5B candidate
  negotiation, after the proxy's activation, at the IBB fallback (transport-replace /
  transport-accept), during data and while the receiver verifies the hash.
* **Disk full** (``test_disk_full_on_receiver``): the receiver's partial file refuses writes
  with ``ENOSPC`` after some bytes.
* **Server killed** (``test_server_killed_then_resume``): the in-process server drops both
  clients abruptly and stops; it is started again on the same port and the clients log in again.

The stall of a peer that stops reading and a peer that stops answering IQs are tested with the
timeouts that detect them, elsewhere.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final, Literal

import pytest
import trio

import jet_trio
from jet_trio import TransferCancelled, TransferError, TransportFailed
from jet_trio._jingle.message import JingleAction, JingleMessage
from jet_trio._transfer.driver import Digests as _Digests
from jet_trio._transfer.driver import SessionShell as _Session
from jet_trio._transfer.files import Partial, find_partials
from jet_trio._transfer.files import open_part as real_open_part
from jet_trio._transfer.service import FileTransfer, IncomingOffer
from jet_trio._transports.s5b import Activated, CandidateError, CandidateUsed, S5BTransport
from jet_trio._transports.s5b import parse_transport as parse_s5b
from jet_trio._xmpp.jid import JID
from jet_trio._xmpp.ns import JET_STUB
from jet_trio.testing import serve
from jet_trio.testing._tls import TestTLS

from .conftest import (
    PASSWORDS,
    Net,
    Outcome,
    Side,
    assert_not_stored_maybe_resumable,
    leftovers,
    make_file,
    run_transfer,
)

SIZE: Final = 3_000_000
CUT: Final = 1_000_000  # a middlebox forwards at most this much per direction before the fault
PROXY_ONLY: Final = {"direct_addresses": None}
ENCRYPT = [pytest.param(JET_STUB, id="jet-stub"), pytest.param(None, id="plain")]

# These tests resume interrupted sends by requesting the rest, which needs the hash in the offer.
pytestmark = pytest.mark.usefixtures("offers_with_hash")


# -- a middlebox that can reset connections -----------------------------------------------------


@dataclass(eq=False)
class Leg:
    """One connection through a :class:`Middlebox`: the client's side and ours upstream."""

    client: trio.SocketStream
    upstream: trio.SocketStream
    up: int = 0  # bytes forwarded client -> upstream
    down: int = 0  # bytes forwarded upstream -> client
    reset: bool = False


def _rst(stream: trio.SocketStream) -> None:
    """Abort the connection with a TCP RST: linger on, timeout 0, then close."""
    sock = stream.socket
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Middlebox:
    """A TCP forwarder on 127.0.0.1 in front of an S5B streamhost (transparent to SOCKS5).

    While :attr:`cap` is set, each direction of each connection forwards at most that many
    bytes, then holds the rest (so a fault lands before the whole file got through, however
    large the socket buffers). :meth:`reset` aborts chosen connections with a TCP RST on both
    sides; :meth:`kill` resets every connection and closes the port (the streamhost died).
    Either lifts the cap.
    """

    def __init__(self, target_host: str, target_port: int, cap: int | None = CUT) -> None:
        self.target = (target_host, target_port)
        self.cap = cap
        self.legs: list[Leg] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._listener: trio.SocketListener | None = None
        self._released = trio.Event()
        self.dead = False

    async def start(self, nursery: trio.Nursery) -> Middlebox:
        (self._listener,) = await trio.open_tcp_listeners(0, host=self.host)
        self.port = self._listener.socket.getsockname()[1]
        nursery.start_soon(self._serve, nursery)
        return self

    async def _serve(self, nursery: trio.Nursery) -> None:
        assert self._listener is not None
        try:
            while True:
                client = await self._listener.accept()
                nursery.start_soon(self._handle, client)
        except (trio.ClosedResourceError, OSError):
            pass
        finally:
            self._listener.socket.close()

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(*self.target)
        except OSError:
            _rst(client)
            return
        leg = Leg(client, upstream)
        self.legs.append(leg)
        try:
            async with trio.open_nursery() as n:
                n.start_soon(self._pump, leg, client, upstream, False)
                n.start_soon(self._pump, leg, upstream, client, True)
        finally:
            client.socket.close()
            upstream.socket.close()

    async def _pump(
        self, leg: Leg, src: trio.SocketStream, dst: trio.SocketStream, down: bool
    ) -> None:
        try:
            while True:
                done = leg.down if down else leg.up
                if self.cap is not None and done >= self.cap:
                    await self._released.wait()
                    continue
                want = 65536 if self.cap is None else min(65536, self.cap - done)
                data = await src.receive_some(want)
                if not data:
                    await dst.send_eof()
                    return
                await dst.send_all(data)
                if down:
                    leg.down += len(data)
                else:
                    leg.up += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._abort(leg)  # a reset on one side becomes a reset on the other

    def _abort(self, leg: Leg) -> None:
        leg.reset = True
        _rst(leg.client)
        _rst(leg.upstream)

    def _release(self) -> None:
        self.cap = None
        self._released.set()

    def reset(self, which: Callable[[Leg], bool]) -> list[Leg]:
        """Reset the connections ``which`` selects; returns them."""
        chosen = [leg for leg in self.legs if not leg.reset and which(leg)]
        for leg in chosen:
            self._abort(leg)
        self._release()
        return chosen

    def kill(self) -> None:
        """The streamhost dies: every connection reset, nothing listens on its port any more."""
        self.dead = True
        if self._listener is not None:
            self._listener.socket.close()
        self.reset(lambda leg: True)


def carries_data(leg: Leg) -> bool:
    """More than a SOCKS5 handshake went through this connection."""
    return max(leg.up, leg.down) > 1000


def towards_client(leg: Leg) -> bool:
    """Data went from the streamhost to the client: on a proxy, the receiver's connection."""
    return leg.down > 1000


def route_s5b(monkeypatch: pytest.MonkeyPatch, ft: FileTransfer, boxes: list[Middlebox]) -> None:
    """Make ``ft`` announce, for each S5B candidate a middlebox stands in front of, the
    middlebox's address instead: both sides then reach that streamhost through it."""
    original = ft._transports._our_s5b
    by_target = {box.target: box for box in boxes}

    async def our_s5b(session: _Session, sid: str) -> S5BTransport:
        transport = await original(session, sid)
        candidates = tuple(
            replace(c, host=box.host, port=box.port)
            if (box := by_target.get((c.host, c.port))) is not None
            else c
            for c in transport.candidates
        )
        return replace(transport, candidates=candidates)

    monkeypatch.setattr(ft._transports, "_our_s5b", our_s5b)


def listener_target(ft: FileTransfer) -> tuple[str, int]:
    assert ft._listener is not None
    return ("127.0.0.1", ft._listener.port)


# -- helpers -------------------------------------------------------------------------------------


def assert_no_open_sessions(*fts: FileTransfer) -> None:
    for ft in fts:
        assert ft._sessions == {}, f"{ft.client.jid}: sessions left open: {list(ft._sessions)}"
        assert ft._ibb == {}, f"{ft.client.jid}: in-band bytestreams left: {list(ft._ibb)}"
        if ft._listener is not None:
            assert ft._listener._queues == {}, f"{ft.client.jid}: DST.ADDRs still expected"


def kept_partial(dest: Path, src: Path) -> Partial:
    """The one partial download kept for ``dest``: a non-empty prefix of ``src``."""
    assert_not_stored_maybe_resumable(dest, src)
    partials = find_partials(dest.parent)
    assert len(partials) == 1, f"no partial kept: {leftovers(dest.parent)}"
    return partials[0]


async def resume_and_verify(
    holder: FileTransfer, fetcher: FileTransfer, partial: Partial, src: Path, encrypt: str | None
) -> jet_trio.TransferResult:
    """The holder shares ``src``; the fetcher resumes ``partial`` and gets all of ``src``."""
    kept = partial.received
    with trio.fail_after(5):
        await holder.share(src)
        result = await fetcher.resume(partial, encrypt=encrypt)
    size = src.stat().st_size
    assert partial.dest.read_bytes() == src.read_bytes()
    assert result.hash_verified and result.size == size and result.path == partial.dest
    assert result.wire_bytes == size - kept + (16 if encrypt else 0)
    assert not leftovers(partial.dest.parent)
    return result


async def complete(
    fa: FileTransfer, fb: FileTransfer, src: Path, dest: Path, encrypt: str | None
) -> None:
    """Finish the file after a failure: resume what was kept, else transfer it afresh."""
    if find_partials(dest.parent):
        await resume_and_verify(fa, fb, kept_partial(dest, src), src, encrypt)
    else:
        again = dest.with_name("again.bin")
        out = await run_transfer(fa, fb, src, again, deadline=5, encrypt=encrypt)
        assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
        assert again.read_bytes() == src.read_bytes()
    assert_no_open_sessions(fa, fb)


def on_delivery(
    monkeypatch: pytest.MonkeyPatch,
    ft: FileTransfer,
    wanted: Callable[[JingleMessage], bool],
    then: Callable[[], None],
) -> None:
    """Call ``then()`` right after ``ft`` delivered the first Jingle message ``wanted`` accepts
    to its session."""
    original = ft._switchboard.deliver
    fired = False

    def deliver(peer: JID, sid: str, msg: JingleMessage | None) -> None:
        nonlocal fired
        original(peer, sid, msg)
        if not fired and msg is not None and wanted(msg):
            fired = True
            then()

    monkeypatch.setattr(ft._switchboard, "deliver", deliver)


def is_action(action: JingleAction) -> Callable[[JingleMessage], bool]:
    return lambda msg: msg.action is action


def is_s5b_info(kind: type) -> Callable[[JingleMessage], bool]:
    def wanted(msg: JingleMessage) -> bool:
        if msg.action is not JingleAction.TRANSPORT_INFO:
            return False
        return any(
            c.transport is not None and isinstance(parse_s5b(c.transport).info, kind)
            for c in msg.contents
        )

    return wanted


# -- 1. the S5B connection reset ------------------------------------------------------------------


@pytest.mark.parametrize("encrypt", ENCRYPT)
@pytest.mark.parametrize("path", ["direct", "proxy"])
async def test_s5b_connection_reset(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    encrypt: str | None,
) -> None:
    """The bytestream is reset (TCP RST) while data moves: on the direct path the receiver
    and the sender see the reset; through the proxy, the receiver's connection to it is reset
    and the proxy tears down the sender's. Both sides get a TransferError, the receiver keeps
    what it got, and the resume completes."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "reset.bin"
    with trio.fail_after(5):
        async with (
            net.pair(**(PROXY_ONLY if path == "proxy" else {})) as (fa, fb),
            trio.open_nursery() as n,
        ):
            if path == "direct":
                boxes = [await Middlebox(*listener_target(ft)).start(n) for ft in (fa, fb)]
                which = carries_data
            else:
                boxes = [await Middlebox(net.relay.host, net.relay.port).start(n)]
                which = towards_client
            for ft in (fa, fb):
                route_s5b(monkeypatch, ft, boxes)
            reset: list[Leg] = []

            def progress(out: Outcome, done: int) -> None:
                if done >= CUT // 2 and not reset:
                    reset.extend(leg for box in boxes for leg in box.reset(which))

            out = await run_transfer(
                fa, fb, src, dest, on_recv_progress=progress, deadline=5, encrypt=encrypt
            )
            assert len(reset) == 1, reset  # exactly the data connection was reset
            recv = out.recv.raised(TransferError)
            assert isinstance(recv, TransportFailed), repr(recv)
            assert recv.reason == "connectivity-error", recv
            sent = out.send.raised(TransferError)
            assert isinstance(sent, TransportFailed), repr(sent)
            assert str(fb.client.jid) in str(sent) or "broke" in str(sent), sent
            partial = kept_partial(dest, src)
            assert CUT // 2 <= partial.received <= CUT
            assert_no_open_sessions(fa, fb)
            result = await resume_and_verify(fa, fb, partial, src, encrypt)
            assert result.transport == ("s5b-proxy" if path == "proxy" else "s5b-direct")
            n.cancel_scope.cancel()


# -- 2. the proxy dying after activation ----------------------------------------------------------


@pytest.mark.parametrize("encrypt", ENCRYPT)
async def test_proxy_dies_after_activation(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    encrypt: str | None,
) -> None:
    """The SOCKS5 proxy dies while it relays the activated bytestream: every connection to it
    is reset and its port closed. Both sides get a TransferError; the resume finds the proxy
    gone (candidate-error on both sides) and completes over IBB."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "proxied.bin"
    with trio.fail_after(5):
        async with net.pair(**PROXY_ONLY) as (fa, fb), trio.open_nursery() as n:
            box = await Middlebox(net.relay.host, net.relay.port).start(n)
            for ft in (fa, fb):
                route_s5b(monkeypatch, ft, [box])
            activations: list[int] = []

            def progress(out: Outcome, done: int) -> None:
                if done >= CUT // 2 and not box.dead:
                    activations.append(net.server.stats.activations)
                    box.kill()

            out = await run_transfer(
                fa, fb, src, dest, on_recv_progress=progress, deadline=5, encrypt=encrypt
            )
            assert activations == [1]  # the bytestream was activated before the proxy died
            # Each side connected to the proxy candidate it was offered, the nominated
            # candidate's owner once more to activate: all reset.
            assert len(box.legs) >= 2 and all(leg.reset for leg in box.legs)
            recv = out.recv.raised(TransportFailed)
            assert recv.reason == "connectivity-error", recv
            sent = out.send.raised(TransportFailed)
            assert sent.reason == "connectivity-error", sent
            partial = kept_partial(dest, src)
            assert_no_open_sessions(fa, fb)
            result = await resume_and_verify(fa, fb, partial, src, encrypt)
            assert result.transport == "ibb"
            n.cancel_scope.cancel()


# -- 3. cancellation at every stage ---------------------------------------------------------------


Who = Literal["sender", "receiver"]


@dataclass(frozen=True)
class Stage:
    """When to cancel: right after ``observer``'s service delivered a message ``wanted``
    accepts (``None``: a stage the test drives itself, see :func:`test_cancel_at_stage`)."""

    observer: Who | None = None
    wanted: Callable[[JingleMessage], bool] | None = None
    ft_kwargs: dict[str, Any] = field(default_factory=dict)


NO_S5B: Final = {"direct_addresses": None, "use_proxies": False}  # S5B fails: IBB fallback

STAGES: Final = {
    # The offer reached the receiver, not answered yet.
    "offer": Stage(),
    # The sender received session-accept (the receiver sent it).
    "accepted": Stage("sender", is_action(JingleAction.SESSION_ACCEPT)),
    # S5B negotiation: a candidate-used arrived (direct candidates on both sides).
    "candidate-used": Stage("receiver", is_s5b_info(CandidateUsed)),
    # Through the proxy: the receiver learns the bytestream was activated.
    "activated": Stage("receiver", is_s5b_info(Activated), PROXY_ONLY),
    # No candidate works: a candidate-error arrived, the IBB fallback follows.
    "candidate-error": Stage("sender", is_s5b_info(CandidateError), NO_S5B),
    # The receiver got transport-replace (IBB instead of S5B).
    "transport-replace": Stage("receiver", is_action(JingleAction.TRANSPORT_REPLACE), NO_S5B),
    # The sender got transport-accept.
    "transport-accept": Stage("sender", is_action(JingleAction.TRANSPORT_ACCEPT), NO_S5B),
    # Data moves (the receiver reported progress).
    "data": Stage(),
    # All data arrived; the receiver is checking the hash.
    "verify": Stage(),
}


#: Stages where the canceller's session-terminate crosses what the peer does next: that step of
#: the peer (its method named here) waits until the canceller is done, so the crossing is
#: certain (under load it happens without the wait too). Regression: the peer raised a raw
#: JingleLocalError ("cannot send <action> in state ENDED") or TransferError("... refused our
#: <action>: item-not-found") instead of the canceller's reason.
CROSSING: Final[dict[tuple[str, Who], tuple[Who, str]]] = {
    # The sender then sends transport-replace.
    ("candidate-error", "receiver"): ("sender", "_fallback_to_ibb"),
    # The receiver then sends transport-accept.
    ("transport-replace", "sender"): ("receiver", "_open_ibb"),
}

CASES: Final = [
    pytest.param(
        stage,
        who,
        id=f"{stage}-{who}",
    )
    for stage in STAGES
    for who in ("sender", "receiver")
]


@pytest.mark.parametrize(("stage", "who"), CASES)
async def test_cancel_at_stage(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
    who: Who,
) -> None:
    """``who`` cancels its cancel scope at ``stage``: its scope catches the cancellation (no
    other error), the peer gets TransferCancelled("cancel"), nothing is stored under the
    target name, no session is left open on either side, and the file then completes between
    the same clients (resumed if a partial was kept).

    Regressions: when the sender cancelled as the bytestream came up (candidate-used, activated),
    the receiver could read the stream's EOF before the sender's session-terminate and report
    an EncryptionFailed ("transport ended ... early"), discarding the partial; when a terminate
    crossed the peer's next message (CROSSING), the peer raised a raw JingleLocalError or
    "refused our ...". Both now raise the canceller's reason (FileTransfer._end_after_error)."""
    spec = STAGES[stage]
    size = SIZE if stage == "data" else 300_000
    src = make_file(tmp_path, size)
    dest = dest_dir / "cancelled.bin"
    out = Outcome(Side(), Side())
    mine, peer = (out.send, out.recv) if who == "sender" else (out.recv, out.send)
    sender_done = trio.Event()
    receiver_done = trio.Event()
    verifying = trio.Event()
    release = trio.Event()

    with trio.fail_after(5):
        async with net.pair(**spec.ft_kwargs) as (fa, fb):
            if spec.wanted is not None:
                observer = fa if spec.observer == "sender" else fb
                on_delivery(monkeypatch, observer, spec.wanted, mine.scope.cancel)
            if stage == "verify":
                original = fb._verify_hash

                async def verify(
                    session: _Session, file: Any, got: _Digests, **kwargs: Any
                ) -> bool:
                    verifying.set()
                    await release.wait()
                    return await original(session, file, got, **kwargs)

                monkeypatch.setattr(fb, "_verify_hash", verify)
            if (stage, who) in CROSSING:
                gated_side, method = CROSSING[stage, who]
                gated_ft = (fa if gated_side == "sender" else fb)._transports
                canceller_done = sender_done if who == "sender" else receiver_done
                ungated = getattr(gated_ft, method)

                async def gated(*args: Any) -> Any:
                    await canceller_done.wait()
                    return await ungated(*args)

                monkeypatch.setattr(gated_ft, method, gated)

            def recv_progress(done: int, total: int) -> None:
                if stage == "data" and done > 0:
                    mine.scope.cancel()

            async def send() -> None:
                try:
                    with out.send.scope:
                        out.send.result = await fa.send_file(src, fb.client.jid, encrypt=JET_STUB)
                except Exception as exc:
                    out.send.error = exc
                finally:
                    sender_done.set()

            async def receive() -> None:
                offer: IncomingOffer = await fb.next_offer()
                out.recv.offer = offer
                if stage == "offer":
                    mine.scope.cancel()
                    if who == "sender":
                        await sender_done.wait()  # the offer is dead before we answer
                try:
                    with out.recv.scope:
                        out.recv.result = await offer.accept(dest, progress=recv_progress)
                except Exception as exc:
                    out.recv.error = exc
                finally:
                    receiver_done.set()

            async def cancel_while_verifying() -> None:
                await verifying.wait()
                mine.scope.cancel()
                if who == "sender":
                    await sender_done.wait()
                release.set()

            async with trio.open_nursery() as n:
                n.start_soon(receive)
                n.start_soon(send)
                if stage == "verify":
                    n.start_soon(cancel_while_verifying)

            assert mine.scope.cancelled_caught, f"{who} was not cancelled at {stage}"
            assert mine.error is None and mine.result is None, (mine.error, mine.result)
            if stage == "verify" and who == "sender":
                # The cancel came after the last byte: the receiver already had the whole
                # file, verifies it and keeps it (the sender's session-terminate is moot).
                assert peer.error is None and peer.result is not None, peer.error
                assert dest.read_bytes() == src.read_bytes()
                assert not leftovers(dest_dir)
                assert_no_open_sessions(fa, fb)
                return
            err = peer.raised(TransferCancelled)
            assert err.reason == "cancel", err
            other = fa if who == "sender" else fb
            assert str(other.client.jid) in str(err), err
            assert_not_stored_maybe_resumable(dest, src)
            if stage in ("data", "verify"):
                assert find_partials(dest_dir), "an interrupted download should be resumable"
            else:
                assert not leftovers(dest_dir), "nothing was received: nothing to keep"
            assert_no_open_sessions(fa, fb)
            await complete(fa, fb, src, dest, JET_STUB)


# -- 4. disk full on the receiver -----------------------------------------------------------------


class FullDisk:
    """A partial file on a disk with ``room`` bytes left: a write beyond it writes what fits,
    then raises ``ENOSPC`` (as a real short write followed by the error would)."""

    def __init__(self, f: BinaryIO, room: int) -> None:
        self.f = f
        self.room = room
        self.refused = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = min(len(data), self.room)
        self.f.write(data[:n])
        self.room -= n
        if n < len(data):
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return n

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.f.close()


@contextmanager
def disk_full_after(monkeypatch: pytest.MonkeyPatch, room: int) -> Iterator[list[FullDisk]]:
    """While active, partial files opened by transfers accept only ``room`` bytes."""
    opened: list[FullDisk] = []

    def open_part(part: Path, offset: int) -> FullDisk:
        disk = FullDisk(real_open_part(part, offset), room)
        opened.append(disk)
        return disk

    with monkeypatch.context() as m:
        m.setattr("jet_trio._transfer.driver.open_part", open_part)
        yield opened


@pytest.mark.parametrize("encrypt", ENCRYPT)
async def test_disk_full_on_receiver(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    encrypt: str | None,
) -> None:
    """The receiver's disk fills up mid-file: the receiver's accept() raises the OSError
    (ENOSPC), the sender is told failed-application with the I/O error in the text, the bytes
    written so far are kept, and once there is room again the resume completes."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "full.bin"
    room = CUT + 12345  # not a multiple of the chunk size: the last write is short
    with trio.fail_after(5):
        async with net.pair() as (fa, fb):
            with disk_full_after(monkeypatch, room) as opened:
                out = await run_transfer(fa, fb, src, dest, deadline=5, encrypt=encrypt)
            assert len(opened) == 1 and opened[0].refused == 1
            err = out.recv.raised(OSError)
            assert err.errno == errno.ENOSPC, err
            sent = out.send.raised(TransferError)
            assert sent.reason == "failed-application", sent
            assert "local I/O error" in str(sent) and "No space left" in str(sent), sent
            assert str(fb.client.jid) in str(sent)
            partial = kept_partial(dest, src)
            assert partial.received == room
            assert_no_open_sessions(fa, fb)
            await resume_and_verify(fa, fb, partial, src, encrypt)


# -- 5. the server killed mid-transfer ------------------------------------------------------------


@asynccontextmanager
async def restartable_server(net: Net, tls: TestTLS, port: int = 0) -> AsyncIterator[Net]:
    """Another in-process server (same accounts, TLS and proxy as ``net``) on ``port``."""
    async with serve(
        tls=tls.server_context, accounts=PASSWORDS, proxy65=net.relay, port=port
    ) as server:
        yield Net(server, net.relay, net.client_tls)


@pytest.mark.parametrize(
    ("ft_kwargs", "send_kwargs"),
    [
        pytest.param({}, {}, id="direct"),
        pytest.param(PROXY_ONLY, {}, id="proxy"),
        pytest.param({}, {"transport": "ibb"}, id="ibb"),
    ],
)
async def test_server_killed_then_resume(
    net: Net,
    _tls: TestTLS,
    tmp_path: Path,
    dest_dir: Path,
    ft_kwargs: dict[str, Any],
    send_kwargs: dict[str, Any],
) -> None:
    """The XMPP server crashes while data moves (both connections dropped abruptly, the
    server gone): each client's ``open_client`` block ends with ConnectionLost, nothing is
    stored under the target name and the receiver keeps its partial. The server comes back
    on the same port, both log in again, and the resume completes."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "crashed.bin"
    opts = {"allow_stub_envelope": True, **ft_kwargs}
    results: dict[str, Any] = {}
    bob_ready = trio.Event()
    moving = trio.Event()

    async def alice(srv: Net, bob: JID) -> None:
        try:
            async with (
                srv.client("alice", "send") as a,
                jet_trio.open_file_transfer(a, **opts) as fa,
            ):
                await bob_ready.wait()
                await a.wait_available(bob)
                results["send"] = await fa.send_file(
                    src, bob, encrypt=JET_STUB, progress=lambda d, t: None, **send_kwargs
                )
        except Exception as exc:
            results["alice"] = exc

    async def bob(srv: Net) -> None:
        def progress(done: int, total: int) -> None:
            if done >= CUT // 2:
                moving.set()

        try:
            async with srv.client("bob", "recv") as b, jet_trio.open_file_transfer(b, **opts) as fb:
                bob_ready.set()
                offer = await fb.next_offer()
                results["recv"] = await offer.accept(dest, progress=progress)
        except Exception as exc:
            results["bob"] = exc

    with trio.fail_after(5):
        async with trio.open_nursery() as outer:
            scope = trio.CancelScope()

            async def run_server(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                with scope:
                    async with restartable_server(net, _tls) as srv:
                        task_status.started(srv)
                        await trio.sleep_forever()

            srv: Net = await outer.start(run_server)
            port = srv.server.port
            async with trio.open_nursery() as n:
                n.start_soon(alice, srv, srv.server.jid("bob", "recv"))
                n.start_soon(bob, srv)
                await moving.wait()
                srv.server.kick("alice")
                srv.server.kick("bob")
                scope.cancel()  # the server is gone: its port closes
        assert "send" not in results and "recv" not in results, results
        for who in ("alice", "bob"):
            assert isinstance(results.get(who), jet_trio.ConnectionLost), results
        partial = kept_partial(dest, src)

        async with (
            restartable_server(net, _tls, port) as again,
            again.pair(**ft_kwargs) as (
                fa,
                fb,
            ),
        ):
            assert fb.client.jid == again.server.jid("bob", "recv")
            assert partial.peer == fa.client.jid
            await resume_and_verify(fa, fb, partial, src, JET_STUB)
