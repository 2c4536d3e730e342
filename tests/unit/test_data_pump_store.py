"""The receiver's write-behind (jet_trio._transfer.driver._Store): whatever was received is
in the partial file after a failure or a cancellation, in order, unless writing itself
failed."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest
import trio

from jet_trio._transfer.driver import _Store
from jet_trio._transfer.files import open_part
from tests._streams import SlowFile


async def test_cancelled_while_a_write_runs_everything_received_is_kept() -> None:
    f = SlowFile()
    store = _Store(f)
    send, receive = trio.open_memory_channel[list[bytes | bytearray | memoryview]](2)
    with trio.CancelScope() as scope:
        try:
            async with trio.open_nursery() as n:
                n.start_soon(store.run, receive)
                await store.put(send, [b"one-"])
                await store.put(send, [b"two-"])
                await trio.to_thread.run_sync(f.started.wait, 5)  # the first write runs
                store.unsent([b"three"])  # received, never handed over
                scope.cancel()
                f.go.set()  # the write in progress finishes after the cancellation
                await trio.sleep_forever()
        except BaseException:
            await store.rescue()
            raise
    assert scope.cancelled_caught
    assert f.getvalue() == b"one-two-three"


class FullFile(io.BytesIO):
    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


async def test_a_failed_write_is_not_retried_by_the_rescue() -> None:
    f = FullFile()
    store = _Store(f)
    send, receive = trio.open_memory_channel[list[bytes | bytearray | memoryview]](2)
    with pytest.raises(BaseExceptionGroup) as caught:
        try:
            async with trio.open_nursery() as n:
                n.start_soon(store.run, receive)
                await store.put(send, [b"data"])
                await trio.sleep_forever()
        except BaseException:
            await store.rescue()
            raise
    assert caught.group_contains(OSError)
    assert f.getvalue() == b""


def test_a_batch_is_written_in_order_without_joining_and_short_writes_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several pieces go out in one gathered write (no joined copy); a write that the kernel
    cuts short (disk nearly full, a signal) continues where it stopped."""
    real = os.writev
    calls: list[int] = []

    def short_writev(fd: int, buffers: list[memoryview]) -> int:
        calls.append(len(buffers))
        first = buffers[0]
        return real(fd, [first[: max(1, len(first) // 2)]])  # half of the first piece only

    monkeypatch.setattr(os, "writev", short_writev)
    part = tmp_path / ".x.part"
    part.write_bytes(b"kept+old")
    batch: list[bytes | bytearray | memoryview] = [b"one-", bytearray(b"two-"), b"", b"three"]
    with open_part(part, 5) as f:
        store = _Store(f)
        store._unwritten.append(batch)
        store._store(batch)
        f.write(b"-four")
    assert part.read_bytes() == b"kept+one-two-three-four"
    assert calls and calls[0] == 3  # one gathered write of the three non-empty pieces
