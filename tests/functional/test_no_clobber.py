"""A received file never replaces anything that took its name during the transfer.

The verified file gets its name with an operation that fails if the name exists (renameat2
RENAME_NOREPLACE, or a hard link); a concurrent transfer, a file saved meanwhile, a directory,
a fifo or a symlink under the name are left alone: the file is kept as ``name (1).ext`` and
:class:`NameTaken` says so (or, with ``rename=True``, the result names the free path used).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

import jet_trio
from jet_trio import IncomingOffer, NameTaken
from jet_trio._xmpp.ns import JET_STUB

from .conftest import Net, Outcome, leftovers, make_file, run_transfer

SIZE = 1_500_000  # several progress callbacks: room to act during the transfer


def _during(action: Any) -> Any:
    """An ``on_recv_progress`` running ``action()`` once, at the first received data."""
    done: list[bool] = []

    def hook(out: Outcome, received: int) -> None:
        if not done:
            done.append(True)
            action()

    return hook


async def test_file_created_during_the_transfer_is_kept(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    src = make_file(tmp_path, SIZE, "same.bin")
    dest = dest_dir / "same.bin"
    async with net.pair() as (fa, fb):
        out = await run_transfer(
            fa,
            fb,
            src,
            dest_dir,
            encrypt=JET_STUB,
            on_recv_progress=_during(lambda: dest.write_bytes(b"saved by the user meanwhile")),
        )
    taken = out.recv.raised(NameTaken)
    assert taken.path == dest and taken.kept == dest_dir / "same (1).bin"
    assert taken.result is not None and taken.result.path == taken.kept
    assert taken.result.hash_verified
    assert dest.read_bytes() == b"saved by the user meanwhile"
    assert taken.kept.read_bytes() == src.read_bytes()
    # The data arrived and was verified: the sender is told the transfer succeeded.
    assert out.send.error is None and out.send.result is not None
    assert not leftovers(dest_dir)


async def test_rename_uses_a_free_name_when_taken_during_the_transfer(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    src = make_file(tmp_path, SIZE, "report.tar.gz")
    (dest_dir / "report (1).tar.gz").write_bytes(b"older copy")

    async def accept(offer: IncomingOffer) -> jet_trio.TransferResult:
        assert offer.safe_name == "report.tar.gz"
        assert offer.target(dest_dir, rename=True) == dest_dir / "report.tar.gz"
        return await offer.accept(
            dest_dir,
            rename=True,
            progress=lambda done, total: (dest_dir / "report.tar.gz").touch(),
        )

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir, accept=accept, encrypt=JET_STUB)
    assert out.recv.error is None and out.recv.result is not None, out.recv.error
    assert out.recv.result.path == dest_dir / "report (2).tar.gz"
    assert out.recv.result.path.read_bytes() == src.read_bytes()
    assert (dest_dir / "report.tar.gz").read_bytes() == b""
    assert (dest_dir / "report (1).tar.gz").read_bytes() == b"older copy"


async def test_rename_when_taken_before_accepting(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    src = make_file(tmp_path, 10_000, "notes.txt")
    (dest_dir / "notes.txt").write_bytes(b"mine")

    async def accept(offer: IncomingOffer) -> jet_trio.TransferResult:
        assert offer.target(dest_dir) == dest_dir / "notes.txt"
        assert offer.target(dest_dir, rename=True) == dest_dir / "notes (1).txt"
        return await offer.accept(dest_dir, rename=True)

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir, accept=accept, encrypt=JET_STUB)
    assert out.recv.result is not None and out.recv.result.path == dest_dir / "notes (1).txt"
    assert (dest_dir / "notes.txt").read_bytes() == b"mine"
    assert (dest_dir / "notes (1).txt").read_bytes() == src.read_bytes()


def _make_dir(p: Path) -> None:
    p.mkdir()
    (p / "inside").write_bytes(b"x")


def _make_fifo(p: Path) -> None:
    os.mkfifo(p)


def _make_symlink(p: Path) -> None:
    p.symlink_to(p.parent.parent / "elsewhere.bin")


@pytest.mark.parametrize("make", [_make_dir, _make_fifo, _make_symlink], ids=lambda f: f.__name__)
async def test_name_that_becomes_something_else(
    net: Net, tmp_path: Path, dest_dir: Path, make: Any
) -> None:
    src = make_file(tmp_path, SIZE, "x.bin")
    dest = dest_dir / "x.bin"
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(b"not yours")
    async with net.pair() as (fa, fb):
        out = await run_transfer(
            fa, fb, src, dest_dir, encrypt=JET_STUB, on_recv_progress=_during(lambda: make(dest))
        )
    taken = out.recv.raised(NameTaken)
    assert taken.kept == dest_dir / "x (1).bin"
    assert taken.kept.read_bytes() == src.read_bytes()
    assert elsewhere.read_bytes() == b"not yours"
    if make is _make_dir:
        assert (dest / "inside").read_bytes() == b"x"
    elif make is _make_symlink:
        assert dest.is_symlink()
    else:
        assert dest.is_fifo()


async def test_overwrite_does_not_replace_a_directory(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    """``overwrite=True`` replaces files atomically, never a directory made meanwhile."""
    src = make_file(tmp_path, SIZE, "d.bin")
    dest = dest_dir / "d.bin"

    def make_dir_once(done: int, total: int) -> None:
        if not dest.exists():
            _make_dir(dest)

    async def accept(offer: IncomingOffer) -> jet_trio.TransferResult:
        return await offer.accept(dest, overwrite=True, progress=make_dir_once)

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, accept=accept, encrypt=JET_STUB)
    assert isinstance(out.recv.error, OSError), out.recv.error
    assert out.send.raised(jet_trio.TransferError).reason == "failed-application"
    assert (dest / "inside").read_bytes() == b"x"


async def test_directory_swapped_for_a_symlink(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """The inbox is moved away and replaced by a symlink to another directory while the file
    arrives: nothing is written through the symlink, the error is typed, the sender told."""
    src = make_file(tmp_path, SIZE, "s.bin")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = tmp_path / "moved-inbox"

    def swap() -> None:
        dest_dir.rename(moved)
        dest_dir.symlink_to(elsewhere, target_is_directory=True)

    async with net.pair() as (fa, fb):
        out = await run_transfer(
            fa, fb, src, dest_dir, encrypt=JET_STUB, on_recv_progress=_during(swap)
        )
    err = out.recv.raised(jet_trio.TransferError)
    assert "no longer in" in str(err) and err.reason == "failed-application"
    assert out.send.raised(jet_trio.TransferError).reason == "failed-application"
    assert list(elsewhere.iterdir()) == []
    assert not (moved / "s.bin").exists()


async def test_overwrite_replaces_atomically(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    src = make_file(tmp_path, SIZE, "o.bin")
    dest = dest_dir / "o.bin"

    def write_old(done: int, total: int) -> None:
        dest.write_bytes(b"old")

    async def accept(offer: IncomingOffer) -> jet_trio.TransferResult:
        return await offer.accept(dest, overwrite=True, progress=write_old)

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, accept=accept, encrypt=JET_STUB)
    assert out.recv.result is not None and out.recv.result.path == dest
    assert dest.read_bytes() == src.read_bytes()


async def test_concurrent_offers_of_one_name(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """alice and carol send different ``same.bin`` at once (overwrite=False): both files
    survive; the one that finished second is kept as ``same (1).bin`` (NameTaken)."""
    a_src = make_file(tmp_path / "a", SIZE, "same.bin")
    c_src = make_file(tmp_path / "c", SIZE, "same.bin")
    results: dict[str, jet_trio.TransferResult | BaseException] = {}
    async with (
        net.client("alice", "send") as a,
        net.client("carol", "send") as c,
        net.client("bob", "recv") as b,
        jet_trio.open_file_transfer(a, allow_stub_envelope=True) as fa,
        jet_trio.open_file_transfer(c, allow_stub_envelope=True) as fc,
        jet_trio.open_file_transfer(b, allow_stub_envelope=True) as fb,
    ):
        with trio.fail_after(20):
            await a.wait_available(b.jid)
            await c.wait_available(b.jid)
            both_offered = trio.Event()
            offers: list[IncomingOffer] = []

            async def receive(offer: IncomingOffer) -> None:
                # Both are accepted (the name still free for each) before either finishes.
                offers.append(offer)
                if len(offers) == 2:
                    both_offered.set()
                await both_offered.wait()
                try:
                    results[str(offer.peer.bare)] = await offer.accept(dest_dir)
                except NameTaken as exc:
                    results[str(offer.peer.bare)] = exc

            async with trio.open_nursery() as n:
                n.start_soon(fa.send_file, a_src, b.jid)
                n.start_soon(fc.send_file, c_src, b.jid)
                n.start_soon(receive, await fb.next_offer())
                n.start_soon(receive, await fb.next_offer())
    got = {
        k: (v.kept if isinstance(v, NameTaken) else v.path)  # type: ignore[union-attr]
        for k, v in results.items()
    }
    assert sorted(got.values()) == [dest_dir / "same (1).bin", dest_dir / "same.bin"]
    assert sum(isinstance(v, NameTaken) for v in results.values()) == 1
    assert got["alice@localhost"].read_bytes() == a_src.read_bytes()
    assert got["carol@localhost"].read_bytes() == c_src.read_bytes()
    assert not leftovers(dest_dir)


@pytest.mark.usefixtures("offers_with_hash")
async def test_resume_never_replaces_a_name_taken_meanwhile(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    """A download is cut and resumed; while the rest arrives, the user saves another file
    under its name: the user's file stays, the completed download is kept as ``name (1).ext``.
    (A name taken before the resume starts is refused up front, as for an offer:
    ``test_hostile_contacts.py::test_resume_never_replaces_an_existing_file``.)"""
    src = make_file(tmp_path, SIZE, "big.iso")
    dest = dest_dir / "big.iso"
    net.relay.cut_after = SIZE // 2

    def take(done: int, total: int) -> None:
        if not dest.exists():
            dest.write_bytes(b"the user's own big.iso")

    async with net.pair(direct_addresses=None) as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir, encrypt=JET_STUB)
        assert isinstance(out.recv.error, jet_trio.TransferError), out.recv.error
        (partial,) = jet_trio.find_partials(dest_dir)
        net.relay.cut_after = None
        await fa.share(src)
        with trio.fail_after(10), pytest.raises(NameTaken) as info:
            await fb.resume(partial, encrypt=JET_STUB, progress=take)
    assert dest.read_bytes() == b"the user's own big.iso"
    assert info.value.kept == dest_dir / "big (1).iso"
    assert info.value.kept.read_bytes() == src.read_bytes()
    assert info.value.result is not None and info.value.result.path == info.value.kept
    assert not leftovers(dest_dir)


async def test_request_never_replaces_a_name_taken_during_the_transfer(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    src = make_file(tmp_path, SIZE, "shared.bin")
    dest = dest_dir / "shared.bin"

    def take(done: int, total: int) -> None:
        if not dest.exists():
            dest.write_bytes(b"mine")

    async with net.pair() as (fa, fb):
        sha = await fa.share(src)
        with trio.fail_after(10), pytest.raises(NameTaken) as info:
            await fb.request_file(fa.client.jid, sha, dest_dir, encrypt=JET_STUB, progress=take)
    assert dest.read_bytes() == b"mine"
    assert info.value.kept.read_bytes() == src.read_bytes()


async def test_request_with_rename_stores_beside_a_taken_name(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    src = make_file(tmp_path, SIZE, "shared.bin")
    (dest_dir / "shared.bin").write_bytes(b"mine")
    async with net.pair() as (fa, fb):
        sha = await fa.share(src)
        with pytest.raises(FileExistsError):
            await fb.request_file(fa.client.jid, sha, dest_dir, encrypt=JET_STUB)
        with trio.fail_after(10):
            result = await fb.request_file(
                fa.client.jid, sha, dest_dir, encrypt=JET_STUB, rename=True
            )
    assert (dest_dir / "shared.bin").read_bytes() == b"mine"
    assert result.path == dest_dir / "shared (1).bin"
    assert result.path.read_bytes() == src.read_bytes()
    assert not leftovers(dest_dir)


async def test_unwritable_directory_found_at_the_end(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory refuses the final name (EACCES; simulated: the tests may run as root):
    the sender is told (failed-application), nothing appears under the name, and the verified
    data is kept for resuming."""
    import errno

    from jet_trio._transfer import files as _transfer_files

    def refuse(*args: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(_transfer_files, "_no_clobber", refuse)
    src = make_file(tmp_path, SIZE, "u.bin")
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir, encrypt=JET_STUB)
    assert isinstance(out.recv.error, PermissionError), out.recv.error
    err = out.send.raised(jet_trio.TransferError)
    assert err.reason == "failed-application" and "Permission denied" in str(err)
    assert not (dest_dir / "u.bin").exists()
    (partial,) = jet_trio.find_partials(dest_dir)
    assert partial.part.read_bytes() == src.read_bytes()


async def test_accept_into_a_relative_directory(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``accept(".")``: the file lands in the current directory (the partial record used to
    refuse a relative destination beside its absolute temporary file)."""
    src = make_file(tmp_path, 50_000, "here.bin")
    monkeypatch.chdir(dest_dir)
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, Path("."), encrypt=JET_STUB)
    assert out.recv.result is not None, repr(out.recv.error)
    assert (dest_dir / "here.bin").read_bytes() == src.read_bytes()
    assert not leftovers(dest_dir)


async def test_rename_when_taken_while_accepting(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name was free when ``accept(rename=True)`` chose it and taken a moment later (a
    second ``receive`` in the same directory storing its file): the offer is not refused,
    the file goes under the next free name when it is stored."""
    src = make_file(tmp_path, 10_000, "notes.txt")
    chosen = IncomingOffer.target

    def taken_right_after(self: IncomingOffer, destination: Any, **options: Any) -> Path:
        path = chosen(self, destination, **options)
        path.write_bytes(b"the other receive's")
        return path

    monkeypatch.setattr(IncomingOffer, "target", taken_right_after)

    async def accept(offer: IncomingOffer) -> jet_trio.TransferResult:
        return await offer.accept(dest_dir, rename=True)

    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest_dir, accept=accept, encrypt=JET_STUB)
    assert out.recv.error is None, out.recv.error
    assert out.recv.result is not None and out.recv.result.path == dest_dir / "notes (1).txt"
    assert (dest_dir / "notes.txt").read_bytes() == b"the other receive's"
    assert (dest_dir / "notes (1).txt").read_bytes() == src.read_bytes()
