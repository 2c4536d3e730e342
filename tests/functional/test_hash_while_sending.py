"""Hash while sending (XEP-0234 ``<hash-used/>`` in the offer, ``<checksum/>`` after the data).

The sender reads the file once: the data pump feeds the hash, which follows the data in a
``<checksum/>`` session-info; the receiver keeps the file under its temporary name until that
checksum came and matched. The hash cache still puts the hash into the offer of a file it knows
(a repeated send, a shared file)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import jet_trio
from jet_trio import IntegrityError, TransferError, find_partials
from jet_trio._transfer import driver as driver_module
from jet_trio._transfer import files as files_module
from jet_trio._transfer import service as service_module
from jet_trio._transfer.hashes import Hash
from jet_trio._xmpp import ns

from .conftest import (
    Net,
    assert_not_stored_maybe_resumable,
    make_file,
    run_transfer,
)

JET_STUB = ns.JET_STUB
SIZE = 2 << 20


def no_hash_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any sequential hash pass over a file fails the test."""

    def refuse(path: Path, length: int | None = None) -> bytes:
        raise AssertionError(f"{path} was hashed before it was sent")

    monkeypatch.setattr(files_module, "sha256_file", refuse)


@pytest.mark.parametrize("encrypt", [JET_STUB, None])
async def test_first_send_hashes_while_sending_and_a_repeated_send_offers_the_hash(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch, encrypt: str | None
) -> None:
    src = make_file(tmp_path, SIZE)
    want = hashlib.sha256(src.read_bytes()).digest()
    no_hash_pass(monkeypatch)
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir / "first.bin", encrypt=encrypt)
        assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
        assert out.recv.offer is not None and out.send.result and out.recv.result
        offered = out.recv.offer._offer.file
        assert offered.hashes == () and offered.hash_used == ("sha-256",)
        assert out.send.result.sha256 == out.recv.result.sha256 == want.hex()
        assert out.recv.result.hash_verified
        assert (dest_dir / "first.bin").read_bytes() == src.read_bytes()

        # The pump's hash went into the cache: the next offer carries it up front, and
        # share() needs no pass of its own either.
        out = await run_transfer(fa, fb, src, dest_dir / "second.bin", encrypt=encrypt)
        assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
        assert out.recv.offer is not None and out.recv.result
        offered = out.recv.offer._offer.file
        assert offered.hashes == (Hash("sha-256", want),) and offered.hash_used == ()
        assert out.recv.result.hash_verified
        assert await fa.share(src) == want.hex()


async def test_a_wrong_checksum_leaves_nothing_under_the_target_name(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "payload.bin"
    real = driver_module.send_checksum

    async def wrong_checksum(session: Any, hashes: tuple[Hash, ...]) -> None:
        await real(session, (Hash("sha-256", b"\x01" * 32),))

    monkeypatch.setattr(service_module, "send_checksum", wrong_checksum)
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB)
        err = out.recv.raised(IntegrityError)
        assert "hash" in str(err)
        assert isinstance(out.send.error, TransferError), out.send.error
        assert not dest.exists()
        assert_not_stored_maybe_resumable(dest, src)


async def test_a_file_changed_while_sending_fails_clearly(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    src = make_file(tmp_path, SIZE)
    old = time.time() - 60  # written a while ago, as a file being sent usually is
    os.utime(src, (old, old))
    dest = dest_dir / "payload.bin"

    def edit(out: Any, done: int) -> None:
        if done <= 256 * 1024:  # after the first piece: change a part not sent yet
            with src.open("r+b") as f:
                f.seek(SIZE - 4096)
                f.write(b"\x00" * 4096)

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB, on_send_progress=edit)
        err = out.send.raised(IntegrityError)
        assert "changed while it was sent" in str(err)
        assert isinstance(out.recv.error, TransferError), out.recv.error
        assert not dest.exists()


async def test_an_interrupted_download_without_a_hash_is_kept_with_the_hash_unknown(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    """Kept for resuming (by the sender's next offer), but cannot be requested by hash:
    resume() says so instead of sending a request with no hash."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "payload.bin"
    net.relay.cut_after = SIZE // 2
    async with net.pair(direct_addresses=None) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=JET_STUB)
        assert isinstance(out.recv.error, TransferError), out.recv.error
        (partial,) = find_partials(dest_dir)
        assert not partial.hash_known and partial.sha256 == ""
        assert 0 < partial.received <= SIZE // 2
        with trio.fail_after(5), pytest.raises(TransferError, match="offers it again"):
            await fb.resume(partial, encrypt=JET_STUB)
    assert not dest.exists()


async def test_nothing_is_stored_when_the_sender_cancels_before_the_checksum(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All data came, but the checksum did not: the file does not get its name."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "payload.bin"

    async def never(session: Any, hashes: tuple[Hash, ...]) -> None:
        raise jet_trio.TransferCancelled("cancelled before the checksum", "cancel")

    monkeypatch.setattr(service_module, "send_checksum", never)
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=None)
        assert isinstance(out.recv.error, TransferError), out.recv.error
        assert not dest.exists()
        assert_not_stored_maybe_resumable(dest, src)
