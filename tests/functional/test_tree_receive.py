"""The receiver rebuilds folders from jet-trio's relative paths, safely (in-process server).

A hostile sender is simulated by writing the ``urn:jet-trio:tree:0`` ``<path/>`` element into
the offer's ``<file/>`` ourselves, with any text, under a harmless flat ``<name/>``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from lxml import etree

import jet_trio
import jet_trio._transfer.placing as placing
import jet_trio._transfer.service as transfer_service
from jet_trio import (
    FileTransfer,
    IncomingOffer,
    PathSet,
    TransferError,
    TransferResult,
    UnsafePath,
    flat_items,
    send_files,
    walk_tree,
)
from jet_trio._xmpp.ns import JET_STUB, JET_TRIO_TREE, JINGLE_FT

from .conftest import Net, leftovers
from .test_batch import Inbox, receive_files, settled, tree_names, write_files


def snapshot(root: Path) -> set[Path]:
    """Every path under ``root`` (links not followed)."""
    found: set[Path] = set()
    for d, dirs, files in os.walk(root):
        found.update(Path(d) / n for n in dirs + files)
    return found


def tree_of(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (``None`` for a directory) of everything under ``root``."""
    out: dict[str, bytes | None] = {}
    for p in snapshot(root):
        rel = p.relative_to(root).as_posix()
        out[rel] = None if p.is_dir() else p.read_bytes()
    return out


async def test_tree_is_rebuilt(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    rng = random.Random(19)
    top = tmp_path / "src" / "Fotos und Dokumente"
    write_files(top, tree_names(60), rng, 20_000)
    inbox = Inbox()
    async with net.pair() as (fa, fb), trio.open_nursery() as n:
        assert await fa.rebuilds_folders(fb.client.jid)
        n.start_soon(receive_files, fb, dest_dir, inbox)
        with trio.fail_after(60):
            batch = await send_files(
                fa, flat_items(walk_tree(top)), fb.client.jid, encrypt=JET_STUB
            )
        await settled(inbox, 60)
        n.cancel_scope.cancel()
    assert batch.ok and batch.sent == 60, batch.errors[:3]
    assert tree_of(dest_dir) == tree_of(top.parent)
    for result in inbox.results.values():
        assert result.path.is_relative_to(dest_dir) and result.path.is_file()
        assert "/proc/" not in str(result.path)


async def test_flat_names_towards_a_peer_without_the_feature(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver that does not advertise urn:jet-trio:tree:0 gets no path: flat names."""
    monkeypatch.setattr(transfer_service, "folders_supported", lambda: False)
    rng = random.Random(20)
    top = tmp_path / "src" / "top"
    write_files(top, ["a/x.bin", "b/y.bin"], rng, 2000)
    offers: list[IncomingOffer] = []
    async with net.pair() as (fa, fb), trio.open_nursery() as n:

        async def receive() -> None:
            for _ in range(2):
                offer = await fb.next_offer()
                offers.append(offer)
                await offer.accept(dest_dir)

        n.start_soon(receive)
        assert not await fa.rebuilds_folders(fb.client.jid)
        with trio.fail_after(20):
            batch = await send_files(
                fa, flat_items(walk_tree(top)), fb.client.jid, encrypt=JET_STUB
            )
    assert batch.ok
    assert [o.path for o in offers] == [None, None]
    assert sorted(p.name for p in dest_dir.iterdir()) == ["a__x.bin", "b__y.bin"]


# -- a hostile sender ---------------------------------------------------------------------------


def inject_paths(monkeypatch: pytest.MonkeyPatch, paths: dict[str, str]) -> None:
    """Offers of a file named in ``paths`` carry that text as their relative path."""
    real = transfer_service.build_description  # type: ignore[attr-defined]

    def build(file: Any, *, request: bool = False) -> etree._Element:
        el = real(file, request=request)
        if file.name in paths:
            f = el.find(f"{{{JINGLE_FT}}}file")
            assert f is not None
            etree.SubElement(f, f"{{{JET_TRIO_TREE}}}path").text = paths[file.name]
        return el

    monkeypatch.setattr(transfer_service, "build_description", build)


# name offered -> (relative path, the reason it is refused, or None if it is stored).
# NUL and most C0 controls cannot be written in XML 1.0 at all (the stanza would be refused
# by the XML parser before Jingle sees it; the unit tests of check_relative_path cover them):
# the controls XML can carry (tab, C1 such as NEL) are offered here. A contact cannot make
# jet-trio create a symbolic link, so the links and the file and fifo in the way are planted
# in the output directory beforehand (as another program could), and a file of the batch is
# used as a directory by a later path of the same batch.
HOSTILE: list[tuple[str, str, str | None]] = [
    ("ok.txt", "top/ok.txt", None),
    ("dotdot.txt", "../escape.txt", "dot"),
    ("deep-dotdot.txt", "top/../../escape.txt", "dot"),
    ("absolute.txt", "/tmp/escape.txt", "absolute"),
    ("drive.txt", "C:/escape.txt", "drive"),
    ("drive-relative.txt", "C:escape.txt", "drive"),
    ("backslash.txt", "top\\..\\..\\escape.txt", "backslash"),
    ("tab.txt", "top/a\tb.txt", "character"),
    ("c1.txt", "top/a\x85b.txt", "character"),
    ("bidi.txt", "top/invoice\u202egpj.exe", "character"),
    ("linesep.txt", "top/a\u2028b.txt", "character"),
    ("con.txt", "top/CON", "reserved"),
    ("nul.txt", "top/nul.tar.gz", "reserved"),
    ("trailing.txt", "top/name. ", "reserved"),
    ("record.txt", "top/x.jet-partial.json", "reserved"),
    ("case1.txt", "top/Case/File.txt", None),
    ("case2.txt", "top/case/FILE.txt", "collision"),
    ("long.txt", "top/" + "a" * 256, "component-length"),
    ("deep.txt", "d/" * 70 + "x", "depth"),
    ("total.txt", "/".join(["b" * 250] * 20), "total-length"),
    ("empty.txt", "top//x", "empty"),
    ("file-then-dir1.txt", "top/f", None),
    ("file-then-dir2.txt", "top/f/x.txt", "collision"),
    ("via-link.txt", "planted-link/escape.txt", "blocked"),
    ("via-file.txt", "planted-file/x.txt", "blocked"),
    ("via-fifo.txt", "planted-fifo/x.txt", "blocked"),
    ("hidden.txt", ".ssh/authorized_keys", None),
]


def plant_hostile_targets(root: Path, dest: Path) -> tuple[Path, Path]:
    """What an attacker left in ``dest`` before the hostile offers: a symbolic link to an
    ``outside`` directory, a file and a fifo, each where a hostile path needs a directory.
    Returns the file to offer and ``outside`` (both under ``root``)."""
    outside = root / "outside"
    outside.mkdir()
    (dest / "planted-link").symlink_to(outside)
    (dest / "planted-file").write_bytes(b"mine")
    os.mkfifo(dest / "planted-fifo")
    src = root / "src" / "payload.bin"
    src.parent.mkdir()
    src.write_bytes(b"attack " * 100)
    return src, outside


async def offer_hostile_paths(
    fa: FileTransfer, fb: FileTransfer, src: Path, dest: Path, *, seconds: float
) -> tuple[dict[str, TransferResult | Exception], dict[str, TransferResult | Exception]]:
    """``fa`` offers ``src`` once per entry of :data:`HOSTILE` (its path injected with
    :func:`inject_paths`), ``fb`` accepts each into ``dest`` with one :class:`PathSet`: what
    each offer gave the receiver and the sender (a result or the error)."""
    received: dict[str, TransferResult | Exception] = {}
    sent: dict[str, TransferResult | Exception] = {}
    async with trio.open_nursery() as n:
        paths = PathSet()
        all_answered = trio.Event()

        async def receive() -> None:
            while len(received) < len(HOSTILE):
                offer = await fb.next_offer()
                try:
                    received[offer.name] = await offer.accept(dest, paths=paths)
                except Exception as exc:
                    received[offer.name] = exc
            all_answered.set()

        n.start_soon(receive)
        with trio.fail_after(seconds):
            for name, _, _ in HOSTILE:
                try:
                    sent[name] = await fa.send_file(src, fb.client.jid, name=name, encrypt=JET_STUB)
                except TransferError as exc:
                    sent[name] = exc
            await all_answered.wait()
    return received, sent


async def test_hostile_paths_are_refused_one_by_one(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, outside = plant_hostile_targets(tmp_path, dest_dir)
    before = snapshot(tmp_path)
    inject_paths(monkeypatch, {name: path for name, path, _ in HOSTILE})
    async with net.pair() as (fa, fb):
        received, sent = await offer_hostile_paths(fa, fb, src, dest_dir, seconds=60)
    for name, path, reason in HOSTILE:
        got, told = received[name], sent[name]
        if reason is None:
            assert isinstance(got, TransferResult), (name, got)
            assert isinstance(told, TransferResult), (name, told)
            continue
        assert isinstance(got, UnsafePath), (name, path, got)
        assert got.reason == reason, (name, path, got)
        assert isinstance(told, TransferError) and told.reason == "failed-application", told
        assert "unsafe path" in str(told) and "refused" in str(told), told
    # The accepted ones are where their paths say (a hidden top directory shown, as for files).
    assert (dest_dir / "top" / "ok.txt").read_bytes() == src.read_bytes()
    assert (dest_dir / "top" / "Case" / "File.txt").is_file()
    assert (dest_dir / "top" / "f").is_file()
    assert (dest_dir / "_.ssh" / "authorized_keys").is_file()
    assert not (dest_dir / ".ssh").exists()
    # Nothing anywhere else: every new path is under the output directory, and the planted
    # link, file and fifo are untouched.
    created = snapshot(tmp_path) - before
    assert all(p.is_relative_to(dest_dir) for p in created), sorted(created)
    assert not any(outside.iterdir())
    assert (dest_dir / "planted-file").read_bytes() == b"mine"
    assert (dest_dir / "planted-link").is_symlink()
    expected = {
        "top",
        "top/ok.txt",
        "top/Case",
        "top/Case/File.txt",
        "top/f",
        "_.ssh",
        "_.ssh/authorized_keys",
    }
    assert {p.relative_to(dest_dir).as_posix() for p in created} == expected
    assert not leftovers(dest_dir)


async def test_a_directory_swapped_for_a_link_during_the_transfer_redirects_nothing(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the check and the use: once the receiver created top/inner and started
    writing, someone moves top/inner away and puts a symbolic link to another directory in
    its place. The file still lands in the directory the receiver created (now moved), never
    behind the link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    src = tmp_path / "src" / "payload.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(300_000))
    inject_paths(monkeypatch, {"swap.bin": "top/inner/swap.bin"})
    swapped = False

    def progress(done: int, total: int) -> None:
        nonlocal swapped
        if done and not swapped:
            swapped = True
            (dest_dir / "top" / "inner").rename(dest_dir / "top" / "moved")
            (dest_dir / "top" / "inner").symlink_to(outside)

    got: list[TransferResult] = []
    async with net.pair() as (fa, fb), trio.open_nursery() as n:

        async def receive() -> None:
            offer = await fb.next_offer()
            got.append(await offer.accept(dest_dir, progress=progress))

        n.start_soon(receive)
        with trio.fail_after(30):
            await fa.send_file(src, fb.client.jid, name="swap.bin", encrypt=JET_STUB)
    assert swapped
    assert not any(outside.iterdir()), list(outside.iterdir())
    assert (dest_dir / "top" / "moved" / "swap.bin").read_bytes() == src.read_bytes()
    assert not leftovers(dest_dir / "top" / "moved")


def test_open_beneath_never_follows_a_link(tmp_path: Path) -> None:
    """The directories of a path are created and opened one by one without following a
    link: a link planted in the middle is refused, also one pointing inside the root."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "link").symlink_to(root / "a")
    with pytest.raises(jet_trio.PathBlocked, match=r"link is not a directory here \(a sym"):
        placing.open_beneath(root, ["link", "x"])
    with placing.open_beneath(root, ["a", "b", "c"]) as where:
        assert where.shown == root / "a" / "b" / "c"
        (root / "a").rename(root / "a2")
        (root / "a").symlink_to(tmp_path)
        (where.via / "file").write_bytes(b"x")
        assert where.real(where.via / "file") == root / "a" / "b" / "c" / "file"
    assert (root / "a2" / "b" / "c" / "file").read_bytes() == b"x"
    assert not (tmp_path / "b").exists()


@pytest.fixture
def no_proc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(transfer_service, "folders_supported", lambda: False)
    yield


async def test_receiver_keeps_flat_names_without_folder_support(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch, no_proc: None
) -> None:
    """A receiver that cannot hold directories open (no /proc) stores a file of a folder
    under its flat name, even when the offer carries a path."""
    inject_paths(monkeypatch, {"a__b.txt": "top/a/b.txt"})
    src = tmp_path / "src.txt"
    src.write_bytes(b"hello")
    async with net.pair() as (fa, fb), trio.open_nursery() as n:

        async def receive() -> None:
            offer = await fb.next_offer()
            assert offer.path == "top/a/b.txt"
            await offer.accept(dest_dir)

        n.start_soon(receive)
        with trio.fail_after(20):
            await fa.send_file(src, fb.client.jid, name="a__b.txt", encrypt=JET_STUB)
    assert [p.name for p in dest_dir.iterdir()] == ["a__b.txt"]


async def test_collision_with_an_existing_file_follows_the_no_clobber_rules(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (dest_dir / "top").mkdir()
    (dest_dir / "top" / "x.txt").write_bytes(b"precious")
    inject_paths(monkeypatch, {"x1.txt": "top/x.txt", "x2.txt": "top/x.txt"})
    src = tmp_path / "src.txt"
    src.write_bytes(b"new")
    outcomes: dict[str, Any] = {}
    async with net.pair() as (fa, fb), trio.open_nursery() as n:

        async def receive() -> None:
            for rename in (False, True):
                offer = await fb.next_offer()
                try:
                    outcomes[offer.name] = await offer.accept(dest_dir, rename=rename)
                except Exception as exc:
                    outcomes[offer.name] = exc

        n.start_soon(receive)
        with trio.fail_after(20):
            with pytest.raises(TransferError, match="already exists"):
                await fa.send_file(src, fb.client.jid, name="x1.txt", encrypt=JET_STUB)
            await fa.send_file(src, fb.client.jid, name="x2.txt", encrypt=JET_STUB)
    assert isinstance(outcomes["x1.txt"], FileExistsError)
    assert str(dest_dir / "top" / "x.txt") in str(outcomes["x1.txt"])
    assert outcomes["x2.txt"].path == dest_dir / "top" / "x (1).txt"
    assert (dest_dir / "top" / "x.txt").read_bytes() == b"precious"
    assert (dest_dir / "top" / "x (1).txt").read_bytes() == b"new"


async def test_accept_without_folders_uses_the_flat_name(
    net: Net, tmp_path: Path, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inject_paths(monkeypatch, {"a__b.txt": "top/a/b.txt"})
    src = tmp_path / "src.txt"
    src.write_bytes(b"hello")
    async with net.pair() as (fa, fb), trio.open_nursery() as n:

        async def receive() -> None:
            offer = await fb.next_offer()
            assert offer.target(dest_dir) == dest_dir / "top" / "a" / "b.txt"
            assert offer.target(dest_dir, folders=False) == dest_dir / "a__b.txt"
            result = await offer.accept(dest_dir, folders=False)
            assert result.path == dest_dir / "a__b.txt"

        n.start_soon(receive)
        with trio.fail_after(20):
            await fa.send_file(src, fb.client.jid, name="a__b.txt", encrypt=JET_STUB)
    assert [p.name for p in dest_dir.iterdir()] == ["a__b.txt"]
