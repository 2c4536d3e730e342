"""Batches of files (send_files) and folders (walk_tree, flat names) on the in-process server."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

import jet_trio
from jet_trio import (
    BatchItem,
    BatchProgress,
    FileOutcome,
    IncomingOffer,
    TransferCancelled,
    TransferDeclined,
    TransferResult,
    find_partials,
    flat_items,
    send_files,
    walk_tree,
)
from jet_trio._transfer.batch import READ_AHEAD
from jet_trio._transfer.service import FileTransfer
from jet_trio._xmpp.ns import JET_STUB

from .conftest import Net, leftovers


@dataclass
class Inbox:
    """What the receiving side got: results and errors by offered name."""

    results: dict[str, TransferResult] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)  # name -> bytes so far
    offers: int = 0
    watch: Callable[[], None] | None = None  # called after every progress update
    changed: trio.Event = field(default_factory=trio.Event)  # set when a file ended

    def ended(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


async def receive_files(
    fb: FileTransfer,
    dest: Path,
    inbox: Inbox,
    decline: Callable[[IncomingOffer], bool] = lambda offer: False,
    slow: float = 0.0,
) -> None:
    """Answer every offer (until cancelled): decline those ``decline`` picks, accept the
    others into ``dest`` concurrently. ``slow``: seconds to sleep in each progress callback
    (blocking: slows the whole process down so that a transfer can be caught in flight)."""
    async with trio.open_nursery() as nursery:
        while True:
            offer = await fb.next_offer()
            inbox.offers += 1
            if decline(offer):
                nursery.start_soon(offer.reject, "decline", "not this one")
                continue

            async def take(offer: IncomingOffer = offer) -> None:
                def progress(done: int, total: int) -> None:
                    inbox.received[offer.name] = done
                    if inbox.watch is not None:
                        inbox.watch()
                    if slow:
                        time.sleep(slow)

                try:
                    inbox.results[offer.name] = await offer.accept(dest, progress=progress)
                except Exception as exc:
                    inbox.errors[offer.name] = exc
                inbox.ended()

            nursery.start_soon(take)


async def settled(inbox: Inbox, accepted: int) -> None:
    """Wait until the receiver saw ``accepted`` accepted files end (the sender may finish
    first: it returns once the receiver said the file arrived)."""
    with trio.fail_after(10):
        while len(inbox.results) + len(inbox.errors) < accepted:
            await inbox.changed.wait()


def write_files(directory: Path, names: list[str], rng: random.Random, max_size: int) -> None:
    for name in names:
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(0, max_size)))


def tree_names(count: int) -> list[str]:
    """Nested names with spaces and non-ASCII characters (NFC), a few per directory."""
    dirs = ["", "2023", "2023/Été à Zürich", "docs", "docs/日本語", "docs/日本語/深い/もっと"]
    names = []
    for i in range(count):
        d = dirs[i % len(dirs)]
        base = ["photo", "Übersicht", "notes final", "файл", "ångström"][i % 5]
        names.append(f"{d}/{base} {i}.bin" if d else f"{base} {i}.bin")
    return names


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_three_files_arrive(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    rng = random.Random(3)
    src = tmp_path / "src"
    write_files(src, ["a.jpg", "b.jpg", "notes.pdf"], rng, 300_000)
    (src / "empty.txt").write_bytes(b"")
    files = [src / "a.jpg", src / "b.jpg", src / "notes.pdf", src / "empty.txt"]
    total = sum(f.stat().st_size for f in files)
    inbox = Inbox()
    seen: list[BatchProgress] = []
    per_file: dict[str, list[tuple[int, int]]] = {}
    ended: list[FileOutcome] = []

    def file_progress(item: BatchItem) -> Callable[[int, int], None]:
        log = per_file.setdefault(item.offered_name, [])
        return lambda done, size: log.append((done, size))

    async with net.pair() as (fa, fb), trio.open_nursery() as n:
        n.start_soon(receive_files, fb, dest_dir, inbox)
        with trio.fail_after(20):
            batch = await send_files(
                fa,
                files,
                fb.client.jid.bare,
                encrypt=JET_STUB,
                max_concurrent=2,
                file_progress=file_progress,
                progress=seen.append,
                on_outcome=ended.append,
            )
        await settled(inbox, 4)
        n.cancel_scope.cancel()
    assert batch.ok and batch.files == batch.sent == 4 and batch.failed == 0
    assert batch.bytes_sent == total
    assert [o.item.path for o in batch.outcomes] == files  # batch order
    assert sorted(o.index for o in ended) == [0, 1, 2, 3]
    for f in files:
        assert (dest_dir / f.name).read_bytes() == f.read_bytes()
        got = inbox.results[f.name]
        assert got.sha256 == sha(f) and got.envelope == JET_STUB
    assert not leftovers(dest_dir) and not inbox.errors
    # Per-file progress for the files with data, ending at their sizes.
    for f in files[:3]:
        assert per_file[f.name][-1] == (f.stat().st_size, f.stat().st_size)
    # The overall progress: never more than two in flight, never going back, ending complete.
    assert max(p.files_in_flight for p in seen) <= 2
    done = [p.bytes_done for p in seen]
    assert done == sorted(done)
    last = seen[-1]
    assert (last.files_done, last.files_total, last.bytes_done, last.bytes_total) == (
        4,
        4,
        total,
        total,
    )


async def test_tree_of_200_files_arrives_flat(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    rng = random.Random(200)
    top = tmp_path / "src" / "Fotos und Dokumente"
    write_files(top, tree_names(200), rng, 20_000)
    (top / "empty dir").mkdir()
    inbox = Inbox()
    skipped = []

    def files() -> Iterator[jet_trio.TreeEntry]:
        for entry in walk_tree(top):
            if entry.kind != "file":
                skipped.append(entry)
            yield entry

    async with net.pair() as (fa, fb), trio.open_nursery() as n:
        n.start_soon(receive_files, fb, dest_dir, inbox)
        with trio.fail_after(120):
            batch = await send_files(
                fa, flat_items(files()), fb.client.jid, encrypt=JET_STUB, folders=False
            )
        await settled(inbox, 200)
        n.cancel_scope.cancel()
    assert batch.ok and batch.sent == 200, batch.errors[:3]
    assert [(e.kind, e.relative_path) for e in skipped] == [
        ("empty-dir", "Fotos und Dokumente/empty dir")
    ]
    # Every file arrived under its flat name, identical; nothing else arrived.
    names = {o.item.offered_name for o in batch.outcomes}
    assert len(names) == 200
    assert {p.name for p in dest_dir.iterdir()} == names
    for o in batch.outcomes:
        assert o.item.relative is not None and o.item.relative.startswith("Fotos und Dokumente/")
        source = top.parent / o.item.relative
        assert source == o.item.path
        assert (dest_dir / o.item.offered_name).read_bytes() == source.read_bytes()
        flat = o.item.relative.split("/", 1)[1].replace("/", "__")
        assert o.item.offered_name == flat


async def test_one_failing_file_does_not_abort_the_others(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    rng = random.Random(7)
    src = tmp_path / "src"
    names = [f"f{i}.bin" for i in range(6)]
    write_files(src, names, rng, 100_000)
    files: list[Path | BatchItem] = [src / n for n in names]
    files.insert(2, src / "missing.bin")  # cannot be read
    files.append(BatchItem(src / "f0.bin", name="refused.bin"))  # the receiver declines it
    inbox = Inbox()
    async with net.pair() as (fa, fb), trio.open_nursery() as n:
        n.start_soon(receive_files, fb, dest_dir, inbox, lambda offer: offer.name == "refused.bin")
        with trio.fail_after(30):
            batch = await send_files(fa, files, fb.client.jid, encrypt=JET_STUB)
        await settled(inbox, 6)
        n.cancel_scope.cancel()
    assert (batch.files, batch.sent, batch.failed) == (8, 6, 2) and not batch.ok
    by_index = {o.index: o for o in batch.outcomes}
    assert isinstance(by_index[2].error, FileNotFoundError) and by_index[2].result is None
    assert isinstance(by_index[7].error, TransferDeclined) and by_index[7].result is None
    for name in names:
        assert (dest_dir / name).read_bytes() == (src / name).read_bytes()
    assert not (dest_dir / "refused.bin").exists()


async def test_busy_receiver_is_offered_again(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """A receiver that takes one file at a time from a contact answers the others ``busy``;
    the batch offers them again instead of failing them."""
    rng = random.Random(9)
    src = tmp_path / "src"
    names = [f"f{i}.bin" for i in range(4)]
    write_files(src, names, rng, 2_000_000)
    inbox = Inbox()
    async with (
        net.pair(receiver={"max_transfers_per_peer": 1}) as (fa, fb),
        trio.open_nursery() as n,
    ):
        n.start_soon(receive_files, fb, dest_dir, inbox)
        with trio.fail_after(60):
            batch = await send_files(
                fa, [src / m for m in names], fb.client.jid, encrypt=JET_STUB, busy_delay=0.05
            )
        await settled(inbox, 4)
        n.cancel_scope.cancel()
    assert batch.ok, batch.errors
    assert sum(o.busy_retries for o in batch.outcomes) > 0
    for name in names:
        assert (dest_dir / name).read_bytes() == (src / name).read_bytes()


async def test_cancelling_the_batch_keeps_partials(
    net: Net, tmp_path: Path, dest_dir: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    names = [f"big{i}.bin" for i in range(3)]
    for name in names:
        (src / name).write_bytes(os.urandom(8 * 1024 * 1024))
    names.append("later.bin")
    (src / "later.bin").write_bytes(b"never sent")
    inbox = Inbox()
    scope = trio.CancelScope()
    ended: list[FileOutcome] = []

    def watch() -> None:
        # Cancel once every file in flight has reached the receiver, none complete.
        if len(inbox.received) == 3 and all(v > 0 for v in inbox.received.values()):
            scope.cancel()

    inbox.watch = watch

    async with net.pair() as (fa, fb), trio.open_nursery() as n:
        n.start_soon(receive_files, fb, dest_dir, inbox, lambda o: False, 0.002)
        with trio.fail_after(60):
            with scope:
                await send_files(
                    fa,
                    [src / m for m in names],
                    fb.client.jid,
                    encrypt=JET_STUB,
                    max_concurrent=3,
                    on_outcome=ended.append,
                )
            assert scope.cancelled_caught
            await settled(inbox, 3)  # the receiver hears of the cancel
        n.cancel_scope.cancel()
    assert not ended and not inbox.results
    assert inbox.offers == 3  # the fourth file was never offered
    for name in names[:3]:
        assert isinstance(inbox.errors[name], TransferCancelled), inbox.errors[name]
        assert not (dest_dir / name).exists()
    kept = {p.dest.name: p for p in find_partials(dest_dir)}
    assert sorted(kept) == names[:3]
    for name, partial in kept.items():
        data = partial.part.read_bytes()
        assert 0 < len(data) < 8 * 1024 * 1024
        assert (src / name).read_bytes().startswith(data)


async def test_files_are_taken_lazily(net: Net, tmp_path: Path, dest_dir: Path) -> None:
    """A generator is advanced only as slots free: never more than ``READ_AHEAD`` items
    (taken at once, in a worker thread) plus ``max_concurrent`` ahead of the files that
    ended."""
    count = READ_AHEAD * 3
    src = tmp_path / "src"
    src.mkdir()
    for i in range(count):
        (src / f"f{i}").write_bytes(os.urandom(100))
    finished: list[int] = []
    ahead: list[int] = []
    threads: set[bool] = set()
    trio_thread = threading.get_ident()

    def items() -> Iterator[Path]:
        for i in range(count):
            ahead.append(i - len(finished))
            threads.add(threading.get_ident() == trio_thread)
            yield src / f"f{i}"

    inbox = Inbox()
    async with net.pair() as (fa, fb), trio.open_nursery() as n:
        n.start_soon(receive_files, fb, dest_dir, inbox)
        with trio.fail_after(60):
            batch = await send_files(
                fa,
                items(),
                fb.client.jid,
                encrypt=JET_STUB,
                max_concurrent=3,
                on_outcome=lambda o: finished.append(o.index),
                keep_outcomes=False,
            )
        await settled(inbox, count)
        n.cancel_scope.cancel()
    assert batch.sent == count and batch.outcomes == ()
    assert max(ahead) <= READ_AHEAD + 3
    assert threads == {False}  # never in trio's own thread: a walk may block


async def test_bad_concurrency(net: Net) -> None:
    async with net.pair() as (fa, fb):
        with pytest.raises(ValueError, match="max_concurrent"):
            await send_files(fa, [], fb.client.jid, max_concurrent=0)
