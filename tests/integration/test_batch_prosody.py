"""Batches (send_files, folders) between two jet-trio clients through a real Prosody."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from jet_trio import (
    IncomingOffer,
    TransferDeclined,
    TransferError,
    TransferResult,
    UnsafePath,
    flat_items,
    send_files,
    walk_tree,
)
from jet_trio._transfer.service import FileTransfer
from jet_trio._xmpp.ns import JET_STUB
from tests.functional.test_tree_receive import (
    HOSTILE,
    inject_paths,
    offer_hostile_paths,
    plant_hostile_targets,
    snapshot,
    tree_of,
)

from ._servers import ServerInfo
from .test_transfer_prosody import pair

pytestmark = pytest.mark.integration


async def receive_all(
    fb: FileTransfer, dest: Path, count: int, decline: frozenset[str] = frozenset()
) -> dict[str, TransferResult | Exception]:
    """Answer ``count`` offers (declining the names in ``decline``), receiving at once."""
    got: dict[str, TransferResult | Exception] = {}
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            offer = await fb.next_offer()
            if offer.name in decline:
                nursery.start_soon(offer.reject, "decline", "not this one")
                continue

            async def take(offer: IncomingOffer = offer) -> None:
                try:
                    got[offer.name] = await offer.accept(dest)
                except Exception as exc:
                    got[offer.name] = exc

            nursery.start_soon(take)
    return got


async def test_three_files_and_one_declined(prosody: ServerInfo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    names = ["a.jpg", "b.jpg", "notes.pdf", "declined.txt"]
    for i, name in enumerate(names):
        (src / name).write_bytes(os.urandom(100_000 * i + 7))
    dest = tmp_path / "inbox"
    dest.mkdir()
    async with pair(prosody) as (fa, fb):
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                received: dict[str, TransferResult | Exception] = {}

                async def receiver() -> None:
                    received.update(await receive_all(fb, dest, 4, frozenset({"declined.txt"})))

                n.start_soon(receiver)
                batch = await send_files(
                    fa, [src / m for m in names], fb.client.jid.bare, encrypt=JET_STUB
                )
    assert (batch.sent, batch.failed) == (3, 1)
    assert isinstance(batch.outcomes[3].error, TransferDeclined)
    for name in names[:3]:
        assert (dest / name).read_bytes() == (src / name).read_bytes()
        assert isinstance(received[name], TransferResult)
    assert not (dest / "declined.txt").exists()


async def test_tree_of_200_files(prosody: ServerInfo, tmp_path: Path) -> None:
    top = tmp_path / "src" / "Ordner mit Ümlauten"
    dirs = ["", "a b", "a b/çà", "日本/深い"]
    for i in range(200):
        path = top / dirs[i % 4] / f"файл {i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(i * 131 % 10_000))
    dest = tmp_path / "inbox"
    dest.mkdir()
    async with pair(prosody) as (fa, fb):
        with trio.fail_after(180):
            async with trio.open_nursery() as n:
                n.start_soon(receive_all, fb, dest, 200)
                batch = await send_files(
                    fa, flat_items(walk_tree(top)), fb.client.jid, encrypt=JET_STUB
                )
    assert batch.ok and batch.sent == 200, batch.errors[:3]
    # The receiver rebuilt the folder: the same directories and files, identical.
    assert tree_of(dest) == tree_of(top.parent)
    assert len([p for p in tree_of(dest).values() if p is not None]) == 200


async def test_hostile_paths_are_refused_one_by_one(
    prosody: ServerInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender that writes the relative paths itself: each bad one refuses its file (the
    sender hears why), the others arrive, and nothing appears outside the output directory
    (the whole temporary root is compared before and after)."""
    dest = tmp_path / "inbox"
    dest.mkdir()
    src, outside = plant_hostile_targets(tmp_path, dest)
    before = snapshot(tmp_path)
    inject_paths(monkeypatch, {name: path for name, path, _ in HOSTILE})
    async with pair(prosody) as (fa, fb):
        received, sent = await offer_hostile_paths(fa, fb, src, dest, seconds=120)
    for name, path, reason in HOSTILE:
        got, told = received[name], sent[name]
        if reason is None:
            assert isinstance(got, TransferResult) and isinstance(told, TransferResult), name
            assert got.path.read_bytes() == src.read_bytes()
            continue
        assert isinstance(got, UnsafePath) and got.reason == reason, (name, path, got)
        assert isinstance(told, TransferError) and "unsafe path" in str(told), (name, told)
    created = snapshot(tmp_path) - before
    assert all(p.is_relative_to(dest) for p in created), sorted(created)
    assert {p.relative_to(dest).as_posix() for p in created} == {
        "top",
        "top/ok.txt",
        "top/Case",
        "top/Case/File.txt",
        "top/f",
        "_.ssh",
        "_.ssh/authorized_keys",
    }
    assert not any(outside.iterdir())
    assert (dest / "planted-file").read_bytes() == b"mine"
