"""Resuming by sending again: a new offer of a file the receiver kept part of continues it
with a XEP-0234 range in the session-accept (in-process server, through the proxy relay,
which counts the bytes on the wire)."""

from __future__ import annotations

import dataclasses
import hashlib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import jet_trio
from jet_trio import JID
from jet_trio._transfer import description, driver, service
from jet_trio._transfer.description import FileDescription
from jet_trio._transfer.files import Partial, find_partials
from jet_trio._transfer.hashes import Hash
from jet_trio._transfer.service import FileTransfer, open_file_transfer

from .conftest import (
    TEST_ENVELOPE_NS,
    Net,
    Outcome,
    TestEnvelope,
    TestEnvelopePlugin,
    leftovers,
    make_file,
    run_transfer,
)

SIZE = 4 * 1024 * 1024
TAG = 16
#: Proxy only (no direct candidates), so that the relay sees every byte on the wire.
PROXY_ONLY: dict[str, Any] = {"direct_addresses": None}


def _cancel_receiver_at(fraction: float) -> Any:
    def progress(out: Outcome, done: int) -> None:
        if done >= SIZE * fraction:
            out.recv.scope.cancel()

    return progress


async def interrupted(fa: FileTransfer, fb: FileTransfer, src: Path, dest: Path) -> Partial:
    """Send ``src``, cancelling the receiver past half of it: the partial it kept."""
    out = await run_transfer(
        fa, fb, src, dest, on_recv_progress=_cancel_receiver_at(0.5), encrypt=TEST_ENVELOPE_NS
    )
    assert out.recv.scope.cancelled_caught and out.recv.result is None
    assert out.send.error is not None
    assert not dest.exists()
    (partial,) = find_partials(dest.parent)
    assert SIZE // 2 <= partial.received < SIZE
    assert src.read_bytes().startswith(partial.part.read_bytes())
    return partial


async def wire_counted_from_now(net: Net) -> None:
    """Reset the relay's count once the interrupted session's connections are quiet (the
    sender may still push what was in flight when the receiver stopped)."""
    seen = -1
    with trio.fail_after(5):
        while net.relay.payload_forwarded != seen:
            seen = net.relay.payload_forwarded
            await trio.sleep(0.2)
    net.relay.payload_forwarded = 0


def envelope_plugins() -> tuple[TestEnvelope, dict[str, Any], dict[str, Any]]:
    sender_envelope = TestEnvelope()
    sender = {"extra_plugins": [TestEnvelopePlugin(sender_envelope)], **PROXY_ONLY}
    receiver = {"extra_plugins": [TestEnvelopePlugin(TestEnvelope())], **PROXY_ONLY}
    return sender_envelope, sender, receiver


async def test_sending_again_sends_only_the_rest(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """The second offer of the file is accepted with a range from the kept bytes: only the
    rest crosses the wire (counted by the relay), under a fresh transport secret, and the
    whole file is verified before it gets its name."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / src.name
    envelope, sender, receiver = envelope_plugins()
    async with net.pair(sender, receiver) as (fa, fb):
        kept = (await interrupted(fa, fb, src, dest)).received
        await wire_counted_from_now(net)
        out = await run_transfer(fa, fb, src, dest, encrypt=TEST_ENVELOPE_NS)
    assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
    assert out.send.result is not None and out.recv.result is not None
    assert dest.read_bytes() == src.read_bytes()
    assert leftovers(dest_dir) == []
    for result in (out.send.result, out.recv.result):
        assert result.reused_bytes == kept
        assert result.wire_bytes == SIZE - kept + TAG
        assert result.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert out.recv.result.hash_verified
    # Measured, not reported: the relay forwarded exactly the rest and the tag.
    assert net.relay.payload_forwarded == SIZE - kept + TAG
    # Each session had its own transport secret (XEP-0391 4.3).
    first, second = envelope.sent
    assert first.key != second.key and first.iv != second.iv
    # Progress counts the kept bytes as done, on both sides.
    assert out.send.progress[-1] == (SIZE, SIZE)
    assert out.recv.progress[0][0] > kept and out.recv.progress[-1] == (SIZE, SIZE)


async def test_a_different_sender_does_not_get_the_partial(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    """carol offers a file with the same name, size and hash as the one alice's partial
    holds: it is received whole, and alice's partial is left as it was."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / src.name
    async with net.pair(PROXY_ONLY, PROXY_ONLY) as (fa, fb):
        out = await run_transfer(
            fa, fb, src, dest, on_recv_progress=_cancel_receiver_at(0.5), encrypt=None
        )
        assert out.recv.scope.cancelled_caught
        (alices,) = find_partials(dest_dir)
        before = alices.part.read_bytes()
        async with (
            net.client("carol", "send") as c,
            open_file_transfer(c, allow_stub_envelope=True, **PROXY_ONLY) as fc,
        ):
            with trio.fail_after(5):
                await c.wait_available(fb.client.jid)
            await wire_counted_from_now(net)
            out = await run_transfer(fc, fb, src, dest, encrypt=None)
    assert out.recv.error is None and out.recv.result is not None, out.recv.error
    assert out.recv.result.reused_bytes == 0 and out.recv.result.peer.bare == JID("carol@localhost")
    assert net.relay.payload_forwarded == SIZE
    assert dest.read_bytes() == src.read_bytes()
    (still,) = find_partials(dest_dir)
    assert still.part == alices.part and still.part.read_bytes() == before


async def test_a_tampered_partial_is_caught(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """A byte of the kept part changed on disk: the whole-file hash fails after the rest
    arrived, nothing gets the name, and the bad partial is discarded."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / src.name
    _, sender, receiver = envelope_plugins()
    async with net.pair(sender, receiver) as (fa, fb):
        partial = await interrupted(fa, fb, src, dest)
        with partial.part.open("r+b") as f:
            f.seek(1000)
            byte = f.read(1)
            f.seek(1000)
            f.write(bytes([byte[0] ^ 1]))
        out = await run_transfer(fa, fb, src, dest, encrypt=TEST_ENVELOPE_NS)
    out.recv.raised(jet_trio.IntegrityError)
    out.send.raised(jet_trio.TransferError)
    assert not dest.exists()
    assert leftovers(dest_dir) == []


@asynccontextmanager
async def _offers_without_range(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Offers as Dino and Conversations make them: no ``<range/>`` in the ``<file/>``."""
    original = description.build_description

    def without_range(file: FileDescription, *, request: bool = False) -> Any:
        return original(dataclasses.replace(file, range=None), request=request)

    monkeypatch.setattr(service, "build_description", without_range)
    yield


@pytest.mark.parametrize("why", ["sender without ranges", "receiver with resume=False"])
async def test_without_ranges_the_whole_file_is_sent(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    """A sender that does not say it honours ranges (no ``<range/>`` in its offer, as Dino and
    Conversations), or a receiver told not to resume: the whole file is sent again, and once
    it got its name the partial of the interrupted try is discarded."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / src.name
    _, sender, receiver = envelope_plugins()
    async with net.pair(sender, receiver) as (fa, fb):
        await interrupted(fa, fb, src, dest)
        await wire_counted_from_now(net)
        if why == "sender without ranges":
            async with _offers_without_range(monkeypatch):
                out = await run_transfer(fa, fb, src, dest, encrypt=TEST_ENVELOPE_NS)
        else:

            async def accept(offer: service.IncomingOffer) -> Any:
                return await offer.accept(dest, resume=False)

            out = await run_transfer(fa, fb, src, dest, accept=accept, encrypt=TEST_ENVELOPE_NS)
    assert out.recv.error is None and out.recv.result is not None, out.recv.error
    assert out.send.result is not None
    assert out.recv.result.reused_bytes == 0 and out.send.result.reused_bytes == 0
    assert net.relay.payload_forwarded == SIZE + TAG
    assert dest.read_bytes() == src.read_bytes()
    assert leftovers(dest_dir) == []


def _hash_after_the_data(
    monkeypatch: pytest.MonkeyPatch, fa: FileTransfer, digest: bytes | None
) -> None:
    """The sender offers without a hash (``<hash-used/>``, as hash-while-sending does unless
    its hash cache knows the file) and sends ``digest`` in the ``<checksum/>`` after the data
    instead of the hash it computed, or no checksum at all if ``digest`` is ``None``.

    Its hash cache is kept from knowing the file: the interrupted first send may well have
    pushed all its data into socket buffers before the receiver stopped (and then remembered
    the hash), and a sender that knows the hash offers it and sends no checksum."""
    monkeypatch.setattr(fa._hashes, "cached", lambda path, key: None)
    original = description.build_description

    def hash_used(file: FileDescription, *, request: bool = False) -> Any:
        return original(
            dataclasses.replace(file, hashes=(), hash_used=("sha-256",)), request=request
        )

    monkeypatch.setattr(service, "build_description", hash_used)
    real = driver.send_checksum

    async def checksum(session: Any, hashes: tuple[Hash, ...]) -> None:
        if digest is not None:
            await real(session, (Hash("sha-256", digest),))

    monkeypatch.setattr(service, "send_checksum", checksum)


@pytest.mark.parametrize("checksum", ["right", "wrong", "none"])
async def test_an_offer_without_hash_is_verified_by_the_checksum(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    checksum: str,
) -> None:
    """Offers without a hash (the checksum comes after the data) are continued too; the
    whole file is verified against the checksum, and without one a continued file (whose
    kept part no tag of this session covers) never gets its name."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / src.name
    right = hashlib.sha256(src.read_bytes()).digest()
    digest = {"right": right, "wrong": bytes(32), "none": None}[checksum]
    _, sender, receiver = envelope_plugins()
    # The receiver waits for the checksum within its negotiation timeout; the sender waits
    # longer for the receiver's answer, so that the receiver's verdict is what ends it. (2 s
    # for the checksum was too short for a loaded machine: "right" failed once in a full run.)
    async with net.pair(
        {**sender, "negotiation_timeout": 30}, {**receiver, "negotiation_timeout": 6}
    ) as (fa, fb):
        _hash_after_the_data(monkeypatch, fa, digest)
        partial = await interrupted(fa, fb, src, dest)
        assert partial.sha256 == ""  # the record says so: only sending again completes it
        kept = partial.received
        out = await run_transfer(fa, fb, src, dest, encrypt=TEST_ENVELOPE_NS, deadline=40)
    if checksum == "right":
        assert out.recv.error is None and out.recv.result is not None, out.recv.error
        assert out.recv.result.reused_bytes == kept and out.recv.result.hash_verified
        assert dest.read_bytes() == src.read_bytes()
    else:
        out.recv.raised(jet_trio.IntegrityError)
        assert not dest.exists()
    assert leftovers(dest_dir) == []


async def test_resume_refuses_a_partial_without_hash(tmp_path: Path) -> None:
    """``FileTransfer.resume`` requests by hash: a partial kept from an offer without one
    is refused with a clear error before anything is sent."""
    dest = tmp_path / "f.bin"
    partial = Partial.create(dest, JID("alice@localhost/a"), "f.bin", 10, "", None)
    partial.part.write_bytes(b"12345")
    ft = FileTransfer.__new__(FileTransfer)
    with pytest.raises(jet_trio.TransferError, match="when the sender offers it again"):
        await ft.resume(partial)
