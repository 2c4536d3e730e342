"""The data pump never blocks the event loop on file I/O: the sender reads on the event loop
only what the page cache holds (``preadv`` with ``RWF_NOWAIT``, which fails rather than wait)
and everything else in worker threads; the receiver writes in a worker thread."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

import pytest

import jet_trio._transfer.driver as driver
from jet_trio._xmpp.ns import JET_STUB

from .conftest import Net, make_file, run_transfer

SIZE = 3_000_000  # several chunks, and more than one block read by a thread

pytestmark = pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="Linux preadv flags")


class _Recording:
    """A file that records which threads write it."""

    def __init__(self, f: BinaryIO, threads: list[threading.Thread]) -> None:
        self._f = f
        self._threads = threads

    def write(self, data: Any) -> int:
        self._threads.append(threading.current_thread())
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


@pytest.mark.parametrize("cache", ["cached", "not-cached", "no-nowait"])
@pytest.mark.parametrize("encrypt", [JET_STUB, None], ids=["jet-stub", "plain"])
async def test_file_io_never_blocks_the_event_loop(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    encrypt: str | None,
    cache: str,
) -> None:
    """``not-cached``: the page cache never has the data (every in-place read would block);
    ``no-nowait``: the file system does not support RWF_NOWAIT (tmpfs)."""
    src = make_file(tmp_path, SIZE)
    dest = dest_dir / "pumped.bin"
    loop_thread = threading.current_thread()
    blocking_reads: list[threading.Thread] = []
    in_place: list[int] = []
    writes: list[threading.Thread] = []
    real_preadv, real_pread = os.preadv, os.pread

    def preadv(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
        if threading.current_thread() is loop_thread:
            assert flags & os.RWF_NOWAIT, "a read on the event loop that may block"
            if cache == "not-cached":
                raise BlockingIOError(errno.EAGAIN, "not cached")
            if cache == "no-nowait":
                raise OSError(errno.EOPNOTSUPP, "not supported")
            in_place.append(fd)
        else:
            blocking_reads.append(threading.current_thread())
        return real_preadv(fd, buffers, offset, flags)

    def pread(fd: int, n: int, offset: int) -> bytes:
        blocking_reads.append(threading.current_thread())
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "preadv", preadv)
    monkeypatch.setattr(os, "pread", pread)
    real_open_part = driver.open_part  # type: ignore[attr-defined]
    monkeypatch.setattr(driver, "open_part", lambda p, o: _Recording(real_open_part(p, o), writes))
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=encrypt)
    assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    assert writes and loop_thread not in writes, "the receiver wrote the file on the event loop"
    assert loop_thread not in blocking_reads, "the sender read the file on the event loop"
    if cache == "cached":
        assert in_place and not blocking_reads
    else:
        assert blocking_reads and not in_place


@pytest.mark.parametrize("encrypt", [JET_STUB, None], ids=["jet-stub", "plain"])
@pytest.mark.parametrize("size", [0, 1024, SIZE])
async def test_receive_buffers_fit_a_small_file(
    net: Net,
    tmp_path: Path,
    dest_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    encrypt: str | None,
    size: int,
) -> None:
    """A small file is received into buffers of its size, not of a whole 1 MiB batch (a
    receiver's memory: the start-up goal of a 1 KiB transfer); a large one into batches."""
    src = make_file(tmp_path, size)
    dest = dest_dir / "small.bin"
    sizes: list[int] = []
    real_new_buffer = driver._new_buffer

    def new_buffer(pool: Any, batch: int) -> memoryview:
        buf: memoryview = real_new_buffer(pool, batch)
        sizes.append(len(buf))
        return buf

    monkeypatch.setattr(driver, "_new_buffer", new_buffer)
    async with net.pair() as (fa, fb):
        out = await run_transfer(fa, fb, src, dest, encrypt=encrypt)
    assert out.send.error is None and out.recv.error is None, (out.send.error, out.recv.error)
    assert dest.read_bytes() == src.read_bytes()
    assert sizes
    if size < 64 * 1024:
        assert max(sizes) <= size + 64, sizes
    else:
        assert max(sizes) >= 1 << 20, sizes
