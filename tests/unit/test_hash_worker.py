"""HashWorker: one long-lived hashing thread (or inline hashing) fed from a trio task."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest
import trio

from jet_trio._transfer import hashes as hashes_mod
from jet_trio._transfer.hashes import Hasher, HashWorker


class _GatedHasher(Hasher):
    """Blocks in update() until released, and remembers the threads it ran in."""

    def __init__(self) -> None:
        super().__init__(("sha-256",))
        self.gate = threading.Event()
        self.threads: set[int] = set()
        self.fail = False

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.threads.add(threading.get_ident())
        self.gate.wait(10)
        if self.fail:
            raise ValueError("boom")
        super().update(data)


@pytest.mark.parametrize("threaded", [True, False])
async def test_digests_match_hashlib(threaded: bool) -> None:
    data = [os.urandom(n) for n in (0, 1, 100_000, 1 << 20, 7)]
    hasher = Hasher(("sha-256", "blake2b-256"))
    async with HashWorker(hasher, threaded=threaded, max_pending=2) as worker:
        for chunk in data:
            await worker.update(chunk)
    joined = b"".join(data)
    assert hasher.digest("sha-256").digest == hashlib.sha256(joined).digest()
    assert hasher.length == len(joined)


async def test_threaded_uses_one_thread_for_all_batches() -> None:
    hasher = _GatedHasher()
    hasher.gate.set()
    async with HashWorker(hasher, threaded=True) as worker:
        for _ in range(20):
            await worker.update(b"x" * 1000)
    assert len(hasher.threads) == 1
    assert threading.get_ident() not in hasher.threads
    assert hasher.length == 20_000


async def test_inline_hashes_in_the_calling_thread() -> None:
    hasher = _GatedHasher()
    hasher.gate.set()
    async with HashWorker(hasher, threaded=False) as worker:
        await worker.update(b"abc")
    assert hasher.threads == {threading.get_ident()}


async def test_update_waits_when_max_pending_batches_are_queued() -> None:
    hasher = _GatedHasher()
    async with HashWorker(hasher, threaded=True, max_pending=2) as worker:
        await worker.update(b"1")
        await worker.update(b"2")
        with trio.move_on_after(0.2) as scope:
            await worker.update(b"3")
        assert scope.cancelled_caught  # the third batch waited for room
        hasher.gate.set()
        with trio.fail_after(10):
            await worker.update(b"3")
    assert hasher.length == 3


async def test_error_in_thread_is_raised_on_exit() -> None:
    hasher = _GatedHasher()
    hasher.fail = True
    hasher.gate.set()
    with pytest.raises(ValueError, match="boom"):
        async with HashWorker(hasher, threaded=True) as worker:
            await worker.update(b"data")


async def test_leaving_on_cancel_waits_for_the_thread() -> None:
    hasher = _GatedHasher()
    finished_before_exit: list[bool] = []

    async def release_later() -> None:
        await trio.sleep(0.1)
        hasher.gate.set()

    async with trio.open_nursery() as n:
        n.start_soon(release_later)
        with trio.move_on_after(0.01):
            async with HashWorker(hasher, threaded=True) as worker:
                await worker.update(b"queued")
                await trio.sleep_forever()
        # Leaving the block (cancelled) waited until the thread was done: nothing runs on.
        finished_before_exit.append(hasher.gate.is_set())
    assert finished_before_exit == [True]


async def test_used_once_and_only_inside_the_block() -> None:
    worker = HashWorker(Hasher(), threaded=True)
    with pytest.raises(RuntimeError):
        await worker.update(b"x")
    async with worker:
        pass
    with pytest.raises(RuntimeError):
        async with worker:
            pass
    with pytest.raises(ValueError):
        HashWorker(Hasher(), max_pending=0)


def test_default_follows_the_core_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashes_mod, "_usable_cores", lambda: 2)
    assert not HashWorker(Hasher()).threaded
    monkeypatch.setattr(hashes_mod, "_usable_cores", lambda: hashes_mod.THREAD_MIN_CORES)
    assert HashWorker(Hasher()).threaded
