"""The receiver's write-behind (jet_trio._transfer.driver._Store, one writing thread per
receive loop): whatever was received is in the partial file after a failure or a
cancellation, in order, unless writing itself failed; a failed write stops the loop with the
write error; the loop waits while the writing thread is behind."""

from __future__ import annotations

import errno
import io

import pytest
import trio
import trio.testing

from jet_trio._transfer.driver import _STORE_PENDING, _open_store
from tests._streams import SlowFile


async def test_cancelled_while_a_write_runs_everything_received_is_kept() -> None:
    f = SlowFile()
    with trio.CancelScope() as scope:
        async with _open_store(f) as store:
            await store.put(b"one-")
            await store.put(b"two-")
            await trio.to_thread.run_sync(f.started.wait, 5)  # the first write runs
            store.unsent(b"three")  # received, never handed over
            scope.cancel()
            f.go.set()  # the write in progress finishes after the cancellation
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert f.getvalue() == b"one-two-three"
    assert store._ended.is_set()


class FullFile(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: object) -> int:
        self.writes += 1
        raise OSError(errno.ENOSPC, "No space left on device")


async def test_a_failed_write_stops_the_loop_and_is_not_retried() -> None:
    """The loop handing pieces over is waiting for the network (here: forever) when the
    disk fills up: it is stopped at once with the write error, and neither the pieces still
    queued nor the one it was filling are written after the failure."""
    f = FullFile()
    with trio.fail_after(5), pytest.raises(OSError) as caught:
        async with _open_store(f) as store:
            await store.put(b"data")
            await store.put(b"more")
            store.unsent(b"kept back")
            await trio.sleep_forever()
    assert caught.value.errno == errno.ENOSPC
    assert f.writes == 1
    assert f.getvalue() == b""


async def test_an_error_of_the_loop_is_raised_after_what_came_is_written() -> None:
    f = SlowFile()
    f.go.set()
    with pytest.raises(ValueError, match="the peer's fault"):
        async with _open_store(f) as store:
            await store.put(b"one-")
            store.unsent(b"two")
            raise ValueError("the peer's fault")
    assert f.getvalue() == b"one-two"


async def test_the_loop_waits_while_the_thread_is_behind_and_order_is_kept() -> None:
    """Up to _STORE_PENDING pieces may wait for the writing thread; the next put waits until
    one is written (a slow disk holds back the receive loop instead of filling memory)."""
    f = SlowFile()
    returned: list[int] = []

    async def put_all(store: object) -> None:
        assert hasattr(store, "put")
        for i in range(_STORE_PENDING + 1):
            await store.put(b"%d," % i)
            returned.append(i)

    async with _open_store(f) as store, trio.open_nursery() as n:
        n.start_soon(put_all, store)
        await trio.to_thread.run_sync(f.started.wait, 5)  # the first write is held
        await trio.testing.wait_all_tasks_blocked()
        assert returned == list(range(_STORE_PENDING))  # the last put waits for room
        f.go.set()
    assert returned == list(range(_STORE_PENDING + 1))
    assert f.getvalue() == b"".join(b"%d," % i for i in range(_STORE_PENDING + 1))
    assert store._ended.is_set()  # the writing thread ended before the store's block did


async def test_every_put_is_a_schedule_point() -> None:
    """The receive loop reads a queued batch without a schedule point of its own
    (stream.py, eager reads): handing the batch over is where it can be cancelled."""
    f = SlowFile()
    f.go.set()
    async with _open_store(f) as store:
        with trio.CancelScope() as scope:
            scope.cancel()
            await store.put(b"x")
        assert scope.cancelled_caught
    assert f.getvalue() == b"x"  # handed over before the cancellation was delivered


async def test_an_error_in_the_thread_after_a_write_stops_the_loop_too() -> None:
    """The ``written`` callback runs in the writing thread: if it fails, the loop must not
    wait for room or for the network forever."""

    def written(piece: object) -> None:
        raise RuntimeError("the callback broke")

    f = SlowFile()
    f.go.set()
    with trio.fail_after(5), pytest.raises(RuntimeError, match="the callback broke"):
        async with _open_store(f, written) as store:
            await store.put(b"one")
            await trio.sleep_forever()
    assert f.getvalue() == b"one"
