"""The sender's file reads (jet_trio._transfer.driver._FileSource): in a worker thread, blocks
go into one buffer kept for the whole file, filled again only after every chunk of the last
block was handed out; with a nursery, the next block is read while the last one is handed out
(read-ahead), into a second buffer."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import trio

from jet_trio._transfer import driver
from jet_trio._transfer.driver import _FileSource


@pytest.mark.parametrize("offset", [0, 12_345])
async def test_thread_reads_reuse_one_buffer_and_lose_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offset: int
) -> None:
    monkeypatch.setattr(driver, "_THREAD_READ", 100_000)
    data = os.urandom(1_000_003)
    path = tmp_path / "f"
    path.write_bytes(data)
    with path.open("rb") as f:
        source = _FileSource(f, offset)
        source._in_place = False  # as on tmpfs: every block is read in a thread
        got = bytearray()
        buffers = set()
        while chunk := await source.read(30_000):
            got += chunk  # consumed before the next read, as the sender does
            buffers.add(id(source._blocks[0]))
    assert bytes(got) == data[offset:]
    assert len(buffers) == 1


async def test_a_short_file_and_a_chunk_larger_than_a_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "_THREAD_READ", 1000)
    data = os.urandom(5000)
    path = tmp_path / "f"
    path.write_bytes(data)
    with path.open("rb") as f:
        source = _FileSource(f, 0)
        source._in_place = False
        assert bytes(await source.read(3000)) == data[:3000]
        assert bytes(await source.read(3000)) == data[3000:]
        assert await source.read(3000) == b""


async def test_a_small_file_gets_a_block_of_its_size(tmp_path: Path) -> None:
    """The block read in a thread ends where the bytes to send end: a 1 KiB send does not
    zero-fill a 4 MiB buffer."""
    data = os.urandom(1024)
    path = tmp_path / "f"
    path.write_bytes(data)
    with path.open("rb") as f:
        source = _FileSource(f, 0, len(data))
        source._in_place = False
        assert bytes(await source.read(256 * 1024)) == data
        assert len(source._blocks[0]) == len(data)
        assert len(source._blocks[1]) == 0


@pytest.mark.parametrize(("offset", "chunk"), [(0, 30_000), (12_345, 100_000), (7, 250_000)])
async def test_read_ahead_loses_nothing_and_uses_two_buffers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offset: int, chunk: int
) -> None:
    monkeypatch.setattr(driver, "_THREAD_READ", 100_000)
    data = os.urandom(1_000_003)
    path = tmp_path / "f"
    path.write_bytes(data)
    buffers = set()
    with path.open("rb") as f:
        async with trio.open_nursery() as n:
            async with _FileSource(f, offset, len(data), nursery=n) as source:
                source._in_place = False
                got = bytearray()
                while piece := await source.read(chunk):
                    assert isinstance(piece, memoryview)
                    buffers.add(id(piece.obj))
                    got += piece  # consumed before the next read, as the sender does
            assert source._next is None
    assert bytes(got) == data[offset:]
    assert len(buffers) == 2


async def test_the_next_block_is_read_while_this_one_is_handed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read of block 2 is held in its thread; every chunk of block 1 is still handed out
    (no wait for block 2), and block 2 arrives once its read is let go."""
    monkeypatch.setattr(driver, "_THREAD_READ", 1000)
    data = os.urandom(2500)
    path = tmp_path / "f"
    path.write_bytes(data)
    asked, release = threading.Event(), threading.Event()
    reads: list[int] = []
    real = driver._pread_into

    def pread_into(fd: int, view: memoryview, offset: int) -> int:
        reads.append(offset)
        if offset == 1000:
            asked.set()
            release.wait(10)
        return real(fd, view, offset)

    monkeypatch.setattr(driver, "_pread_into", pread_into)
    with path.open("rb") as f:
        async with trio.open_nursery() as n, _FileSource(f, 0, len(data), nursery=n) as source:
            source._in_place = False
            assert bytes(await source.read(400)) == data[:400]
            # block 2 is asked for before anyone needs it
            assert await trio.to_thread.run_sync(asked.wait, 5)
            assert bytes(await source.read(400)) == data[400:800]
            assert bytes(await source.read(400)) == data[800:1000]
            assert not release.is_set()  # block 1 was served while block 2 was held
            release.set()
            with trio.fail_after(5):
                assert bytes(await source.read(1000)) == data[1000:2000]
                assert bytes(await source.read(1000)) == data[2000:]
                assert await source.read(1000) == b""
    assert reads == [0, 1000, 2000]


async def test_a_failed_read_ahead_is_raised_by_the_read_that_needs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "_THREAD_READ", 1000)
    data = os.urandom(3000)
    path = tmp_path / "f"
    path.write_bytes(data)
    real = driver._pread_into

    def pread_into(fd: int, view: memoryview, offset: int) -> int:
        if offset == 1000:
            raise OSError(5, "Input/output error")
        return real(fd, view, offset)

    monkeypatch.setattr(driver, "_pread_into", pread_into)
    with path.open("rb") as f:
        async with trio.open_nursery() as n, _FileSource(f, 0, len(data), nursery=n) as source:
            source._in_place = False
            assert bytes(await source.read(1000)) == data[:1000]
            with pytest.raises(OSError, match="Input/output error"):
                await source.read(1000)


async def test_leaving_the_source_waits_for_the_read_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender closes the file after leaving the source: no thread may still read it (its
    descriptor could already belong to another file). Leaving waits, even when cancelled."""
    monkeypatch.setattr(driver, "_THREAD_READ", 1000)
    data = os.urandom(3000)
    path = tmp_path / "f"
    path.write_bytes(data)
    started, release = threading.Event(), threading.Event()
    finished: list[int] = []
    real = driver._pread_into

    def pread_into(fd: int, view: memoryview, offset: int) -> int:
        if offset == 1000:
            started.set()
            release.wait(10)
        got = real(fd, view, offset)
        finished.append(offset)
        return got

    monkeypatch.setattr(driver, "_pread_into", pread_into)
    with path.open("rb") as f:
        async with trio.open_nursery() as n:
            with trio.CancelScope() as scope:
                async with _FileSource(f, 0, len(data), nursery=n) as source:
                    source._in_place = False
                    await source.read(1000)
                    await trio.to_thread.run_sync(started.wait, 10)
                    threading.Timer(0.2, release.set).start()
                    scope.cancel()
                    await trio.sleep(10)  # cancelled here: the source is left while cancelled
            assert scope.cancelled_caught
            assert 1000 in finished  # left only once the read of block 2 was done
            n.cancel_scope.cancel()
