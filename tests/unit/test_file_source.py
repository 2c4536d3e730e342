"""The sender's file reads (jet_trio._transfer.driver._FileSource): in a worker thread, blocks
go into one buffer kept for the whole file, filled again only after every chunk of the last
block was handed out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jet_trio._transfer import driver
from jet_trio._transfer.driver import _FileSource


def _file(directory: Path, size: int) -> tuple[Path, bytes]:
    """A file of ``size`` random bytes, and its contents."""
    data = os.urandom(size)
    path = directory / "f"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("offset", [0, 12_345])
async def test_thread_reads_reuse_one_buffer_and_lose_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offset: int
) -> None:
    monkeypatch.setattr(driver, "_THREAD_READ", 100_000)
    path, data = _file(tmp_path, 1_000_003)
    with path.open("rb") as f:
        source = _FileSource(f, offset)
        source._in_place = False  # as on tmpfs: every block is read in a thread
        got = bytearray()
        buffers = set()
        while chunk := await source.read(30_000):
            got += chunk  # consumed before the next read, as the sender does
            buffers.add(id(source._block))
    assert bytes(got) == data[offset:]
    assert len(buffers) == 1


async def test_a_short_file_and_a_chunk_larger_than_a_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "_THREAD_READ", 1000)
    path, data = _file(tmp_path, 5000)
    with path.open("rb") as f:
        source = _FileSource(f, 0)
        source._in_place = False
        assert bytes(await source.read(3000)) == data[:3000]
        assert bytes(await source.read(3000)) == data[3000:]
        assert await source.read(3000) == b""


async def test_a_small_file_gets_a_block_of_its_size(tmp_path: Path) -> None:
    """The block read in a thread ends where the bytes to send end: a 1 KiB send does not
    zero-fill a 4 MiB buffer."""
    path, data = _file(tmp_path, 1024)
    with path.open("rb") as f:
        source = _FileSource(f, 0, len(data))
        source._in_place = False
        assert bytes(await source.read(256 * 1024)) == data
        assert len(source._block) == len(data)
