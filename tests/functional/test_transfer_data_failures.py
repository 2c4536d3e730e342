"""Transfers that fail while data moves: cancellation by either side, a peer disconnecting,
and a man-in-the-middle that alters, cuts or extends the bytes in flight.

Each test checks both sides: the typed exception each API call raised (or the cancel scope
that caught the cancellation), the Jingle reason the session ended with (seen as the peer's
exception's ``reason``), and that nothing was stored under the target name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import jet_trio
from jet_trio import (
    EncryptionFailed,
    IntegrityError,
    TransferCancelled,
    TransferError,
    TransportFailed,
    find_partials,
)
from jet_trio._xmpp.ns import JET_STUB
from jet_trio.plugin import TagMismatch

from .conftest import (
    TEST_CIPHER_URN,
    CipherPlugin,
    CorruptingCipher,
    Net,
    assert_not_stored_maybe_resumable,
    assert_nothing_stored,
    flip_at,
    make_file,
    run_transfer,
)

BIG = 4_000_000  # several chunks: cancellations land mid-stream
SIZE = 200_000
PROXY_ONLY = {"direct_addresses": None}  # every S5B transfer goes through net.relay


# -- cancellation -------------------------------------------------------------------------------

TRANSPORTS = [
    pytest.param({}, {}, id="direct"),
    pytest.param(PROXY_ONLY, {}, id="proxy"),
    pytest.param({}, {"transport": "ibb"}, id="ibb"),
]


@pytest.mark.parametrize(("ft_kwargs", "send_kwargs"), TRANSPORTS)
@pytest.mark.parametrize("encrypt", [JET_STUB, None], ids=["jet-stub", "plain"])
async def test_sender_cancels_during_data(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    ft_kwargs: dict[str, Any],
    send_kwargs: dict[str, Any],
    encrypt: str | None,
) -> None:
    src = make_file(tmp_path, BIG)
    dest = dest_dir / "cancelled.bin"
    async with net.pair(**ft_kwargs) as (fa, fb):
        out = await run_transfer(
            fa,
            fb,
            src,
            dest,
            on_send_progress=lambda out, done: out.send.scope.cancel(),
            encrypt=encrypt,
            **send_kwargs,
        )
    assert out.send.scope.cancelled_caught and out.send.result is None
    assert out.send.error is None, out.send.error
    assert 0 < out.send.progress[-1][0] < BIG
    err = out.recv.raised(TransferCancelled)
    assert err.reason == "cancel"
    assert str(fa.client.jid) in str(err) and "cancel" in str(err)
    assert_not_stored_maybe_resumable(dest, src)


@pytest.mark.parametrize(("ft_kwargs", "send_kwargs"), TRANSPORTS)
@pytest.mark.parametrize("encrypt", [JET_STUB, None], ids=["jet-stub", "plain"])
async def test_receiver_cancels_during_data(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    ft_kwargs: dict[str, Any],
    send_kwargs: dict[str, Any],
    encrypt: str | None,
) -> None:
    src = make_file(tmp_path, BIG)
    dest = dest_dir / "cancelled.bin"
    async with net.pair(**ft_kwargs) as (fa, fb):
        out = await run_transfer(
            fa,
            fb,
            src,
            dest,
            on_recv_progress=lambda out, done: out.recv.scope.cancel(),
            encrypt=encrypt,
            **send_kwargs,
        )
    assert out.recv.scope.cancelled_caught and out.recv.result is None
    assert out.recv.error is None, out.recv.error
    err = out.send.raised(TransferCancelled)
    assert err.reason == "cancel"
    assert str(fb.client.jid) in str(err)
    assert_not_stored_maybe_resumable(dest, src)


async def test_sender_withdraws_pending_offer(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """The sender cancels while its offer waits for an answer: a later accept() of the dead
    offer raises TransferCancelled (not a protocol error), nothing is stored."""
    src = make_file(tmp_path, 1000)
    async with net.pair() as (fa, fb):
        async with trio.open_nursery() as n:
            sending = trio.CancelScope()

            async def send() -> None:
                with sending:
                    await fa.send_file(src, fb.client.jid, encrypt=None)

            n.start_soon(send)
            with trio.fail_after(5):
                offer = await fb.next_offer()
            sending.cancel()
        # The sender cancelled: the offer is dead; accepting it fails clearly.
        with trio.fail_after(5), pytest.raises(TransferError) as info:
            await offer.accept(dest_dir / "late.bin")
    assert isinstance(info.value, TransferCancelled), info.value
    assert info.value.reason == "cancel"
    assert_nothing_stored(dest_dir / "late.bin")


# -- a peer disconnecting -----------------------------------------------------------------------


@pytest.mark.parametrize("kicked", ["receiver", "sender"])
@pytest.mark.parametrize(
    ("ft_kwargs", "send_kwargs"),
    [
        pytest.param({}, {}, id="direct"),
        pytest.param(PROXY_ONLY, {}, id="proxy"),
        pytest.param({}, {"transport": "ibb"}, id="ibb"),
    ],
)
async def test_peer_disconnects_during_data(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    kicked: str,
    ft_kwargs: dict[str, Any],
    send_kwargs: dict[str, Any],
) -> None:
    """The server drops one side's connection abruptly while data moves. The other side gets
    a TransferError (not a raw trio or socket error); the dropped side's client reports
    ConnectionLost; nothing is stored under the target name."""
    src = make_file(tmp_path, BIG)
    dest = dest_dir / "dropped.bin"
    opts = {"allow_stub_envelope": True, "negotiation_timeout": 3, **ft_kwargs}
    bob_ready = trio.Event()
    data_moving = trio.Event()
    bob_jid = net.server.jid("bob", "recv")
    results: dict[str, BaseException | jet_trio.TransferResult | None] = {}

    def moving(done: int, total: int) -> None:
        data_moving.set()

    async def alice() -> None:
        try:
            async with (
                net.client("alice", "send") as a,
                jet_trio.open_file_transfer(a, **opts) as fa,
            ):
                await bob_ready.wait()
                await a.wait_available(bob_jid)
                try:
                    results["send"] = await fa.send_file(
                        src, bob_jid, encrypt=JET_STUB, progress=moving, **send_kwargs
                    )
                except Exception as exc:
                    results["send"] = exc
        except Exception as exc:
            results["alice-client"] = exc

    async def bob() -> None:
        try:
            async with net.client("bob", "recv") as b, jet_trio.open_file_transfer(b, **opts) as fb:
                bob_ready.set()
                offer = await fb.next_offer()
                try:
                    results["recv"] = await offer.accept(dest, progress=moving)
                except Exception as exc:
                    results["recv"] = exc
        except Exception as exc:
            results["bob-client"] = exc

    with trio.fail_after(15):
        async with trio.open_nursery() as n:
            n.start_soon(alice)
            n.start_soon(bob)
            await data_moving.wait()
            assert net.server.kick(net.server.jid("bob" if kicked == "receiver" else "alice")) == 1

    gone, survivor = ("bob", "send") if kicked == "receiver" else ("alice", "recv")
    assert isinstance(results.get(f"{gone}-client"), jet_trio.ConnectionLost), results
    other = results.get(survivor)
    assert isinstance(other, TransferError), f"{survivor}: {other!r} ({results})"
    # Whichever the survivor notices first: the peer's unavailable presence (gone), the
    # transport breaking, or (receiving an encrypted S5B stream) its early end.
    if isinstance(other, TransferCancelled):
        assert other.reason == "gone" and "offline" in str(other), repr(other)
    elif isinstance(other, EncryptionFailed):
        assert survivor == "recv" and "ended" in str(other) and "early" in str(other)
    else:
        assert isinstance(other, TransportFailed), repr(other)
        assert other.reason == "connectivity-error"
    assert not dest.exists()
    assert_not_stored_maybe_resumable(dest, src)


# -- a man in the middle ------------------------------------------------------------------------


def check_refused(
    out: Any, dest: Path, kind: type[TransferError], reason: str, *words: str
) -> None:
    """The receiver raised ``kind`` with ``reason`` and ``words`` in its message; the sender
    got the same reason from the session-terminate; nothing was kept."""
    err = out.recv.raised(kind)
    assert err.reason == reason, err
    for w in words:
        assert w in str(err), f"{w!r} not in {err}"
    sent = out.send.raised(kind)
    assert sent.reason == reason, sent
    assert_nothing_stored(dest)


@pytest.mark.parametrize("position", [0, 1000, SIZE - 1], ids=["first-byte", "middle", "last-byte"])
async def test_flipped_ciphertext_byte(
    net: Net, tmp_path: Path, dest_dir: Path, position: int
) -> None:
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "tampered.bin"
    net.relay.mangle = flip_at(position)
    async with net.pair(**PROXY_ONLY) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB)
    assert net.relay.payload_seen == SIZE + 16
    check_refused(out, dest, EncryptionFailed, "security-error", "tag")
    assert isinstance(out.recv.error, EncryptionFailed)
    assert isinstance(out.recv.error.__cause__, TagMismatch), repr(out.recv.error.__cause__)


@pytest.mark.parametrize("tag_byte", [0, 15])
async def test_flipped_tag_byte(net: Net, tmp_path: Path, dest_dir: Path, tag_byte: int) -> None:
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "tampered.bin"
    net.relay.mangle = flip_at(SIZE + tag_byte)
    async with net.pair(**PROXY_ONLY) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB)
    check_refused(out, dest, EncryptionFailed, "security-error", "tag")


@pytest.mark.parametrize("what", ["ciphertext", "tag"])
async def test_corrupting_cipher_over_ibb(
    net: Net, tmp_path: Path, dest_dir: Path, what: str
) -> None:
    """The same through IBB: a sender-side cipher plugin corrupts its own output."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "tampered.bin"
    bad = CorruptingCipher()
    if what == "ciphertext":
        bad.flip_ct = SIZE // 2
    else:
        bad.flip_tag = 3
    async with net.pair(
        sender={"extra_plugins": [CipherPlugin(bad)]},
        receiver={"extra_plugins": [CipherPlugin(CorruptingCipher())]},
    ) as (fa, fb):
        out = await run_transfer(
            fa, fb, src, dest, encrypt=JET_STUB, cipher=TEST_CIPHER_URN, transport="ibb"
        )
    check_refused(out, dest, EncryptionFailed, "security-error", "tag")


async def test_corrupting_cipher_control(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """Control: the test cipher without corruption transfers fine (over IBB)."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "fine.bin"
    plugins = {"extra_plugins": [CipherPlugin(CorruptingCipher())]}
    async with net.pair(sender=plugins, receiver=plugins) as (fa, fb):
        out = await run_transfer(
            fa, fb, src, dest, encrypt=JET_STUB, cipher=TEST_CIPHER_URN, transport="ibb"
        )
    assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
    assert dest.read_bytes() == src.read_bytes()


@pytest.mark.usefixtures("offers_with_hash")
@pytest.mark.parametrize("keep", [SIZE + 15, SIZE + 1, SIZE, SIZE // 2, 0])
async def test_truncated_encrypted_stream(
    net: Net, tmp_path: Path, dest_dir: Path, keep: int
) -> None:
    """The relay forwards only ``keep`` of the SIZE + 16 bytes, then closes towards the
    receiver: refused (the tag cannot be verified), nothing under the target name. What
    arrived is kept for resuming, as after a broken connection (the whole file's hash is
    checked when the resume completes), and the resume completes, also when every byte but
    the tag had arrived."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "truncated.bin"
    net.relay.cut_after = keep
    async with net.pair(**PROXY_ONLY) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB)
        err = out.recv.raised(TransferError)
        assert isinstance(err, EncryptionFailed | TransportFailed), repr(err)
        assert "ended" in str(err) or "early" in str(err), err
        sent = out.send.raised(TransferError)
        assert sent.reason == err.reason
        assert_not_stored_maybe_resumable(dest, src)
        partials = find_partials(dest_dir)
        assert [p.received for p in partials] == ([min(keep, SIZE)] if keep else [])
        net.relay.cut_after = None
        if partials:
            await fa.share(src)
            with trio.fail_after(5):
                result = await fb.resume(partials[0], encrypt=JET_STUB)
            assert result.wire_bytes == SIZE - min(keep, SIZE) + 16
            assert result.hash_verified and dest.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("keep", [SIZE - 1, SIZE // 2, 0])
async def test_truncated_plain_stream(net: Net, tmp_path: Path, dest_dir: Path, keep: int) -> None:
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "truncated.bin"
    net.relay.cut_after = keep
    async with net.pair(**PROXY_ONLY) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=None)
    err = out.recv.raised(TransferError)
    assert f"after {keep} of {SIZE} bytes" in str(err), err
    sent = out.send.raised(TransferError)
    assert sent.reason == err.reason
    assert_not_stored_maybe_resumable(dest, src)


@pytest.mark.parametrize("position", [0, 1000, SIZE - 1])
async def test_plain_hash_mismatch(net: Net, tmp_path: Path, dest_dir: Path, position: int) -> None:
    """Plain transfer, one byte altered in flight: the SHA-256 from the offer catches it."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "corrupt.bin"
    net.relay.mangle = flip_at(position)
    async with net.pair(**PROXY_ONLY) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=None)
    check_refused(out, dest, IntegrityError, "media-error", "sha-256", "does not match")


def append_after(end: int, extra: bytes) -> Any:
    """A mangler adding ``extra`` right after payload byte ``end - 1`` (same write)."""

    def mangle(data: bytes, offset: int) -> bytes:
        if offset < end <= offset + len(data):
            i = end - offset
            return data[:i] + extra + data[i:]
        return data

    return mangle


async def test_encrypted_stream_longer_than_announced(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "long.bin"
    net.relay.mangle = append_after(SIZE + 16, b"EXTRA BYTES")
    async with net.pair(**PROXY_ONLY) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB)
    check_refused(out, dest, EncryptionFailed, "security-error", "more than")


async def test_plain_stream_longer_than_announced(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "long.bin"
    net.relay.mangle = append_after(SIZE, b"EXTRA BYTES")
    async with net.pair(**PROXY_ONLY) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=None)
    check_refused(out, dest, IntegrityError, "media-error", "more than")


async def test_plain_bytes_inserted(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """Bytes inserted mid-stream: the stream is longer than announced."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "shifted.bin"
    net.relay.mangle = append_after(1000, b"XX")
    async with net.pair(**PROXY_ONLY) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=None)
    check_refused(out, dest, IntegrityError, "media-error", "more than")


async def test_source_changes_after_offer(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """The sender's file is modified (same size) between the offer and the data: the sender
    notices (modification time) and stops before the end of the data; refused, nothing kept."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "changed.bin"

    async def accept(offer: Any) -> Any:
        data = bytearray(src.read_bytes())
        data[5] ^= 1
        src.write_bytes(bytes(data))
        return await offer.accept(dest)

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, accept=accept, encrypt=None)
    check_refused(out, dest, IntegrityError, "media-error", "changed while it was sent")


async def test_receiver_goes_offline_before_answering(net: Net, tmp_path: Path) -> None:
    """The offer reached the receiver, which then disconnects without answering: the sender
    is told (gone) instead of waiting for an answer that cannot come."""
    src = make_file(tmp_path, 1000)
    got_offer = trio.Event()
    bob_jid = net.server.jid("bob", "recv")
    bob_ready = trio.Event()
    results: dict[str, Any] = {}

    async def bob() -> None:
        try:
            async with (
                net.client("bob", "recv") as b,
                jet_trio.open_file_transfer(b, allow_stub_envelope=True) as fb,
            ):
                bob_ready.set()
                await fb.next_offer()
                got_offer.set()
                await trio.sleep_forever()
        except jet_trio.ConnectionLost as exc:
            results["bob"] = exc

    with trio.fail_after(10):
        async with (
            net.client("alice", "send") as a,
            jet_trio.open_file_transfer(a, allow_stub_envelope=True) as fa,
            trio.open_nursery() as n,
        ):
            n.start_soon(bob)
            await bob_ready.wait()
            await a.wait_available(bob_jid)

            async def kick_when_offered() -> None:
                await got_offer.wait()
                net.server.kick(bob_jid)

            n.start_soon(kick_when_offered)
            with pytest.raises(TransferCancelled) as info:
                await fa.send_file(src, bob_jid, encrypt=JET_STUB)
    assert info.value.reason == "gone" and str(bob_jid) in str(info.value)
    assert isinstance(results.get("bob"), jet_trio.ConnectionLost)
